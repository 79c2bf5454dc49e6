"""Flow `rollout-group`: observe → plan → waves of members in parallel → decide → end state.

A group's rollout reuses the single-deployment flows: each edge of a wave is one subflow
run of `deploy-application` (a member not started yet) or `update-application` (health-gated,
with its own rollback), named for what it does where (``update hello 1.1.0 → lab-3``), at most
``max_parallel`` at a time. After each wave ``rollouts.decide`` looks at every result of this
rollout: halt before the next wave, roll back the edges this rollout already changed, or
record and go on. Offline edges are deferred by the plan, never attempted nor failed. The
group ends STARTED, PARTIAL or HALTED (``rollouts.summarize``), whatever happened: a run that
breaks halts its group with the reason rather than leaving it UPDATING.
"""

from __future__ import annotations

from typing import Annotated

from prefect import flow, get_run_logger, runtime, task
from prefect.cache_policies import NONE

from edgefleet.flows.deploy import deploy_application
from edgefleet.flows.stop import stop_application
from edgefleet.flows.update import update_application
from edgefleet.group_plan import EdgeAction
from edgefleet.models.forms import form
from edgefleet.models.groups import ROLLING, GroupMove, GroupState
from edgefleet.models.states import DeploymentState
from edgefleet.rollouts import Decision, EdgeResult, Outcome, Verdict, decide, plan_waves, summarize
from edgefleet.tasks.groups import (
    GroupView,
    add_group_member,
    end_group_rollout,
    load_group_plan,
    member_error,
    record_group_progress,
)
from edgefleet.tasks.records import set_version

NOT_STARTED = frozenset({DeploymentState.CREATED, DeploymentState.STOPPED})


@task(name="roll-out-edge", task_run_name="{action.action} {action.edge}", cache_policy=NONE)
def roll_out_edge(group: str, application: str, version: str, action: EdgeAction,
                  force: bool = False) -> EdgeResult:
    """Bring one edge's member to ``version`` by the single-deployment flows; a failure is
    a result (with the member's last error), not an exception."""
    dep_id = action.deployment_id
    try:
        if dep_id is None:  # add: a member of the group on this edge, then deploy it
            dep_id = add_group_member(group, action.edge)
            deploy_application.with_options(
                flow_run_name=f"deploy {application} {version} → {action.edge}")(dep_id)
        elif action.state_before in NOT_STARTED:
            if action.version_before != version:
                set_version(dep_id, version)
            deploy_application.with_options(
                flow_run_name=f"deploy {application} {version} → {action.edge}")(dep_id)
        else:
            update_application.with_options(
                flow_run_name=f"update {application} {version} → {action.edge}")(
                    dep_id, version, force or action.version_before == version)
    except Exception as exc:
        reason = (member_error(dep_id) if dep_id else None) or str(exc) or type(exc).__name__
        return EdgeResult(edge=action.edge, outcome=Outcome.FAILED, reason=reason)
    return EdgeResult(edge=action.edge, outcome=Outcome.SUCCEEDED)


@task(name="roll-back-edge", task_run_name="roll back {action.edge}", cache_policy=NONE)
def roll_back_edge(application: str, action: EdgeAction) -> None:
    """Undo this rollout on one edge that it changed: back to the version it ran, or
    stopped when it ran nothing before."""
    logger = get_run_logger()
    dep_id = action.deployment_id
    try:
        if action.version_before is not None and action.state_before not in NOT_STARTED \
                and dep_id is not None:
            update_application.with_options(
                flow_run_name=f"roll back {application} {action.version_before} → "
                              f"{action.edge}")(dep_id, action.version_before, False)
        elif dep_id is not None:
            stop_application.with_options(
                flow_run_name=f"stop {application} → {action.edge}")(dep_id)
    except Exception as exc:  # the member's record says what happened; go on with the others
        logger.error("rolling back %s failed: %s", action.edge, exc)


@flow(name="rollout-group", flow_run_name="rollout {group} {application} {version}")
def rollout_group(
    group: Annotated[str, form("Group", "the deployment group's name (`edgefleet group list`)")],
    application: Annotated[str, form("Application", "the group's application")],
    version: Annotated[str, form("Version", "the group's recorded target version")],
    force: Annotated[bool, form(
        "Force", "re-pull and restart members already on the version")] = False,
) -> str:
    """Roll group ``group`` out to ``version`` (its recorded target); returns its state."""
    logger = get_run_logger()
    view = load_group_plan(group)
    held = view.state
    if held not in ROLLING:
        raise RuntimeError(f"group {group!r} is {held.value}, not DEPLOYING or UPDATING: "
                           "a rollout starts from `group create` or `group update`")
    try:
        return _roll_out(view, application, force)
    except Exception as exc:
        reason = f"the rollout broke off: {str(exc) or type(exc).__name__}"
        logger.error(reason)
        end_group_rollout(group, GroupMove.HALT, GroupState.HALTED, held, reason)
        raise


def _roll_out(view: GroupView, application: str, force: bool) -> str:
    logger = get_run_logger()
    group, version, held, options = view.name, view.version, view.state, view.options
    logger.info("plan of group %s (%s %s; %s):\n%s", group, application, version,
                options.describe(), view.plan.render())
    by_edge = {a.edge: a for a in view.plan.actions if a.action in ("add", "update")}
    if force:  # a forced update re-pulls and restarts the members already on the target
        for a in view.plan.actions:
            if a.action == "keep" and a.matches and a.deployment_id is not None:
                by_edge[a.edge] = a.model_copy(update={"action": "update"})
    edges = {name: dict(a.labels) for name, a in by_edge.items()}
    waves = plan_waves(edges, options.waves) if edges else []
    run_id = str(runtime.flow_run.id) if runtime.flow_run.id else None
    record_group_progress(group, 0, len(waves), run_id)
    results: list[EdgeResult] = []
    decision: Decision | None = None
    for number, wave in enumerate(waves, start=1):
        record_group_progress(group, number, len(waves))
        logger.info("wave %d/%d: %s", number, len(waves), ", ".join(wave))
        for start in range(0, len(wave), options.max_parallel):
            batch = wave[start:start + options.max_parallel]
            futures = [roll_out_edge.submit(group, application, version, by_edge[name], force)
                       for name in batch]
            results.extend(f.result() for f in futures)
        decision = decide(options, results)
        logger.info("after wave %d/%d: %s (%s)", number, len(waves), decision.verdict.value,
                    decision.reason)
        if decision.verdict is Verdict.ROLL_BACK:
            back = [roll_back_edge.submit(application, by_edge[name])
                    for name in decision.rollback]
            for future in back:
                future.result()
        if decision.stops:
            break
    removes = [a.edge for a in view.plan.actions if a.action == "remove"]
    if removes:
        logger.warning("not removed (prune is not built yet): %s", ", ".join(removes))
    outcome = summarize(load_group_plan(group).plan, decision)
    logger.info("group %s: %s (%s)", group, outcome.state.value, outcome.cause)
    end_group_rollout(group, outcome.move, outcome.state, held, outcome.cause)
    return outcome.state.value
