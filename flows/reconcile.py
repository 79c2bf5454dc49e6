"""Flows that leave nothing transient and nothing behind after a fault.

- `reconcile-deployments` (on an interval, and once each time `edgefleet up` starts
  workers): a deployment held in STARTING, UPDATING or STOPPING by a flow run that is no
  longer alive (ended, gone, or RUNNING without heartbeats) is moved to a final state from
  what its edge really runs: STARTED on the version running and healthy, STOPPED when a
  stop left nothing; an update (compose, stack) that died half-applied is rolled back to
  the spec before it, from the records; else ERROR with what was found.
- `clean-up-edge` (on `edgefleet.edge.online`, and hourly over every ONLINE edge since
  event delivery is best effort): containers, swarm services and networks of
  deleted or STOPPED deployments, or of ERROR ones after a failed deploy or stop, are
  removed from the edge that came back (the run that failed could not reach it), each
  removal logged with its cause.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from prefect import flow, get_run_logger, runtime

from edgefleet.flows.update import reapply
from edgefleet.models.connections import EngineConnection
from edgefleet.models.forms import form
from edgefleet.models.inputs import AppKind
from edgefleet.models.plans import DeployPlan, ObservedContainer, RenderedSpec
from edgefleet.models.records import utcnow
from edgefleet.models.states import Action, DeploymentState
from edgefleet.reconcile_rules import Limits, Outcome, plan_clean_up, run_is_gone, settle
from edgefleet.settings import get_settings
from edgefleet.tasks.containers import observe_containers
from edgefleet.tasks.reconcile import (
    Held,
    find_edge,
    find_transient,
    list_managed,
    load_owners,
    load_shape,
    online_edges,
    read_runs,
    remove_container,
    remove_leftover,
    still_held,
    take_over,
)
from edgefleet.tasks.records import (
    load_plan,
    load_rollback_spec,
    move_state,
    notify_operator,
    record_containers,
    set_version,
)
from edgefleet.tasks.updates import confirm_replacement


def limits() -> Limits:
    """Three missed heartbeats; or deploy timeout + soak + margin without a sign of life."""
    settings = get_settings()
    return Limits(silent=timedelta(seconds=3 * settings.run_heartbeat_seconds + 10),
                  stale=timedelta(seconds=2 * settings.deploy_timeout + settings.soak_seconds
                                  + settings.stuck_margin))


@flow(name="reconcile-deployments", flow_run_name="reconcile deployments")
def reconcile_deployments() -> dict[str, str]:
    """Settle every deployment whose run died; returns deployment id → outcome."""
    logger = get_run_logger()
    held = find_transient()
    if not held:
        return {}
    runs = read_runs([h.flow_run_id for h in held if h.flow_run_id])
    now, rules = utcnow(), limits()
    outcomes = {}
    for item in held:
        why = run_is_gone(runs.get(item.flow_run_id) if item.flow_run_id else None,
                          item.updated_at, now, rules)
        if why is None:
            continue
        try:
            outcome = _settle(item, why)
        except Exception as exc:  # e.g. deleted meanwhile: the others are still settled
            logger.error("deployment %s could not be settled: %s", item.deployment_id[:12], exc)
            continue
        if outcome is not None:
            outcomes[item.deployment_id] = outcome.render()
            logger.warning("deployment %s was stuck %s: now %s", item.deployment_id[:12],
                           item.state, outcome.render())
    if not outcomes:
        logger.info("%d deployment(s) in a transient state, all with a live run", len(held))
    return outcomes


def _settle(held: Held, why: str) -> Outcome | None:
    logger = get_run_logger()
    plan = load_plan(held.deployment_id)
    shape = load_shape(held.deployment_id)
    observed: list[ObservedContainer] = []
    unreachable = None
    try:
        observed = observe_containers(plan.edge, held.deployment_id)
    except Exception as exc:
        unreachable = str(exc) or type(exc).__name__
    outcome = settle(held.state, why, observed=observed, expected=shape.expected,
                     container_name=shape.container_name, unreachable=unreachable)
    if not still_held(held):  # its run (or an operator) moved it after all
        logger.info("deployment %s moved on while it was looked at; left alone",
                    held.deployment_id[:12])
        return None
    holder = held.flow_run_id
    previous = (load_rollback_spec(held.deployment_id, held.flow_run_id)
                if outcome.action is Action.FAIL and unreachable is None
                and held.state == DeploymentState.UPDATING.value
                and plan.kind is not AppKind.IMAGE else None)
    if previous is not None:  # the dead update had begun to apply: go back to the spec before
        holder = str(runtime.flow_run.id)
        if not take_over(held, holder):
            logger.info("deployment %s was taken over by another run; left alone",
                        held.deployment_id[:12])
            return None
        outcome, observed = _roll_back(held, plan, previous, outcome, observed,
                                       len(shape.expected))
    for tidy in outcome.tidy:
        try:
            if tidy.operation == "confirm":
                confirm_replacement(plan.edge, tidy.container)
            else:
                remove_container(plan.edge, tidy.container)
        except Exception as exc:
            outcome = Outcome(Action.FAIL, f"{outcome.reason}; {tidy.describe()} failed: {exc}")
            break
    try:
        if outcome.tidy and outcome.action is not Action.FAIL:
            observed = observe_containers(plan.edge, held.deployment_id)
        record_containers(held.deployment_id, [] if outcome.action is Action.STOPPED
                          else observed)
        if outcome.version and outcome.version != plan.version:
            set_version(held.deployment_id, outcome.version)
        move_state(held.deployment_id, outcome.action, error=outcome.reason,
                   expect=DeploymentState(held.state), held_by=holder)  # compare-and-set
    except Exception as exc:
        logger.error("deployment %s could not be settled: %s", held.deployment_id[:12], exc)
        return None
    return outcome


def _roll_back(held: Held, plan: DeployPlan, previous: RenderedSpec, outcome: Outcome,
               observed: list[ObservedContainer], services: int
               ) -> tuple[Outcome, list[ObservedContainer]]:
    """An update whose run died half-way through applying its spec: ``previous``, the spec
    before it, is applied again (pinned digests, from the records), as the update itself
    would have done on a failure."""
    logger = get_run_logger()
    try:
        restored = reapply(plan, held.deployment_id, previous, expected=services)
    except Exception as exc:
        logger.error("deployment %s: the rollback to %s failed: %s", held.deployment_id[:12],
                     previous.version, exc)
        return Outcome(Action.FAIL, f"{outcome.reason}; the rollback to {previous.version} "
                                    f"failed too: {exc}"), observed
    reason = f"{outcome.reason}; rolled back to {previous.version}"
    notify_operator(held.deployment_id, reason="rollback", key=f"reconcile {held.flow_run_id}",
                    to_version=previous.version, message=reason,
                    command=f"edgefleet status {held.deployment_id}")
    return Outcome(Action.UPDATED, reason, version=previous.version), restored


@flow(name="clean-up-edge", flow_run_name=lambda: f"clean up {_edge_param() or 'edges'}")
def clean_up_edge(
    edge: Annotated[str | None, form(
        "Edge", "the edge to clean up, by name; empty: every ONLINE edge")] = None,
    docker_host: Annotated[str | None, form(
        "Docker host", "the edge's engine address, to tell apart another control plane's "
                       "edge of the same name; empty: any")] = None,
) -> list[str]:
    """Remove what failed or deleted deployments left on ``edge`` (None: every ONLINE edge,
    the served hourly pass that catches a lost online event); returns the removals.

    ``docker_host``: the engine the triggering event was about; an event about another
    engine of the same name (another control plane's records) is ignored.
    """
    logger = get_run_logger()
    if edge is None:
        done = []
        for conn in online_edges():
            try:
                done += _clean_up(conn)
            except Exception as exc:  # one edge that does not answer must not stop the rest
                logger.warning("edge %s: clean-up did not finish: %s", conn.name, exc)
        return done
    found = find_edge(edge)
    if found is None:
        logger.info("no edge named %s in the records; nothing to clean", edge)
        return []
    if docker_host and docker_host != found.docker_host:
        logger.info("the event was about %s at %s, not ours at %s; nothing to clean", edge,
                    docker_host, found.docker_host)
        return []
    return _clean_up(found)


def _edge_param() -> str | None:
    value = runtime.flow_run.parameters.get("edge")
    return str(value) if value else None


def _clean_up(conn: EngineConnection) -> list[str]:
    logger = get_run_logger()
    items = list_managed(conn)
    planned = plan_clean_up(items, load_owners())
    if not planned:
        logger.info("edge %s: nothing left behind (%d item(s) of ours, all in use)", conn.name,
                    len(items))
        return []
    # the records again, just before acting: a deployment started meanwhile keeps its things
    still = {r.render() for r in plan_clean_up(items, load_owners())}
    done = []
    for removal in planned:
        if removal.render() not in still:
            continue
        try:
            if remove_leftover(conn, removal.item, removal.cause):
                done.append(removal.render())
        except Exception as exc:  # one stubborn item must not keep the others
            logger.warning("edge %s: could not %s: %s", conn.name, removal.render(), exc)
    logger.info("edge %s: %d leftover(s) removed", conn.name, len(done))
    return done
