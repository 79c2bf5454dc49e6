"""Flow `deploy-application`: launch → pull → create and start → wait → STARTED (or ERROR).

The reference marks a deployment started when its command exits; we mark it STARTED only
once every container runs, and is healthy where a healthcheck exists.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from prefect import flow, get_run_logger, runtime

from edgefleet import labels as L
from edgefleet.models.forms import form
from edgefleet.models.inputs import AppKind
from edgefleet.models.plans import DeployPlan, ObservedContainer
from edgefleet.models.run_names import deploy_run_name
from edgefleet.models.states import Action, DeploymentState
from edgefleet.settings import get_settings
from edgefleet.tasks.compose import (
    compose_down,
    compose_logs_tail,
    compose_up,
    render_compose,
    render_stack,
    resolve_compose,
    service_images,
    stack_deploy,
    stack_remove,
)
from edgefleet.tasks.containers import (
    container_spec,
    create_network,
    remove_containers,
    start_container,
    wait_for_containers,
)
from edgefleet.tasks.images import load_registry_login, pull_image
from edgefleet.tasks.limits import ensure_limit, update_limit_name
from edgefleet.tasks.records import (
    load_applied_spec,
    load_plan,
    move_state,
    record_containers,
    record_spec,
)
from edgefleet.tasks.runs import name_run

# Seconds to confirm that compose's services really run once `up --wait` returned.
COMPOSE_RECHECK = 15.0
RUN_NAME = "deploy {deployment_id}"  # until the records say what and where


@flow(name="deploy-application", flow_run_name=RUN_NAME, log_prints=True)
def deploy_application(
    deployment_id: Annotated[str, form(
        "Deployment", "the deployment's id (`edgefleet deployments`)")],
) -> str:
    """Deploy one Deployment record to its edge; returns the final state."""
    logger = get_run_logger()
    plan = load_plan(deployment_id)
    name_run(deploy_run_name(plan.application, plan.version, plan.edge.name),
             placeholder=RUN_NAME.format(deployment_id=deployment_id))
    log_allowance(plan)
    fresh = move_state(deployment_id, Action.START, flow_run_id=_flow_run_id()) == "STARTING"
    ensure_limit(update_limit_name(deployment_id))  # two updates of it can never run at once
    timeout = get_settings().deploy_timeout
    try:
        observed = _start(plan, timeout)
    except Exception as exc:
        reason = str(exc) or type(exc).__name__
        logger.error("deploy of %s failed: %s", deployment_id, reason)
        _clean_up(plan, remove_volumes=fresh)
        record_containers(deployment_id, [])
        move_state(deployment_id, Action.FAIL, error=reason, expect=DeploymentState.STARTING)
        raise
    record_containers(deployment_id, observed)
    state = move_state(deployment_id, Action.STARTED)
    urls = [u for o in observed for u in o.urls]
    logger.info("%s %s is %s on %s %s", plan.application, plan.version, state, plan.edge.name,
                " ".join(urls))
    return state


def log_allowance(plan: DeployPlan) -> None:
    """The deploy log says when a version runs with host-level privileges, and which."""
    if plan.allow_privileged:
        get_run_logger().warning(
            "%s %s was created with --allow-privileged: its containers get host-level "
            "privileges on %s (%s)", plan.application, plan.version, plan.edge.name,
            "; ".join(plan.privileges) or "none used")


def _start(plan: DeployPlan, timeout: float) -> list[ObservedContainer]:
    conn = plan.edge
    login = load_registry_login(plan.registry_secret) if plan.registry_secret else None
    always = get_settings().pull_policy == "always"
    if plan.kind is AppKind.IMAGE:
        assert plan.image is not None
        digest = pull_image(conn, plan.image, always=always, credentials=login)
        spec = record_spec(plan.deployment_id, container_spec(plan, digest))
        network = create_network(conn, plan.project, {L.DEPLOYMENT: plan.deployment_id,
                                                      L.MANAGED: "true"})
        start_container(conn, network=network, **spec.container())
        return wait_for_containers(conn, plan.deployment_id, timeout, expected=1)

    model = resolve_compose(plan)
    images = sorted(set(service_images(model).values()))
    futures = {ref: pull_image.submit(conn, ref, always=always, credentials=login)
               for ref in images}
    digests = {ref: fut.result() for ref, fut in futures.items()}
    if plan.kind is AppKind.COMPOSE:
        spec = record_spec(plan.deployment_id, render_compose(plan, model, digests),
                           resolved=model)
        try:
            compose_up(conn, plan.project, spec, timeout)
        except Exception as exc:
            tail = compose_logs_tail(conn, plan.project, spec)
            raise type(exc)(f"{exc}\nlast log lines:\n{tail}" if tail else str(exc)) from exc
        # compose 2.40 `up --wait` can exit 0 for a container that never started: judge
        # what the engine runs (compose already waited: a short look is enough)
        return wait_for_containers(conn, plan.deployment_id, min(timeout, COMPOSE_RECHECK),
                                   expected=len(model["services"]))
    spec = record_spec(plan.deployment_id, render_stack(plan, model, digests), resolved=model)
    stack_deploy(conn, plan.project, spec)
    return wait_for_containers(conn, plan.deployment_id, timeout, expected=len(model["services"]))


def _clean_up(plan: DeployPlan, *, remove_volumes: bool) -> None:
    """Best effort: leave no stray containers or networks behind a failed deploy."""
    logger = get_run_logger()
    steps: list[Callable[[], object]] = []
    if plan.kind is AppKind.COMPOSE:
        steps.append(lambda: compose_down(plan.edge, plan.project,
                                          load_applied_spec(plan.deployment_id),
                                          remove_volumes=remove_volumes))
    elif plan.kind is AppKind.SWARM:
        steps.append(lambda: stack_remove(plan.edge, plan.project))
    steps.append(lambda: remove_containers(plan.edge, plan.deployment_id,
                                           remove_volumes=remove_volumes))
    for step in steps:
        try:
            step()
        except Exception as exc:  # the edge may be unreachable: report, keep the real reason
            logger.warning("clean-up after failed deploy did not finish: %s", exc)


def _flow_run_id() -> str | None:
    value = runtime.flow_run.id
    return str(value) if value else None
