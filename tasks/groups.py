"""Tasks over a deployment group's records: observe it as a plan, add a member, record the
progress and the end of a rollout (each a compare-and-set where the state moves); find the
work a reconcile nobody asked for runs, delete a member that left, plan a stop; show the
group as a table artifact, announce a halt, and claim and submit its auto-updates."""

from __future__ import annotations

from collections.abc import Callable

from prefect import task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NONE
from pydantic import BaseModel, ConfigDict
from sqlalchemy import update
from sqlmodel import col, select

from edgefleet.crud import (
    add_member,
    auto_updating_groups,
    claim_auto_update,
    delete_deployment_rows,
    get_edge,
    get_group,
    group_member_rows,
    group_members,
    move_group_record,
    observe_group,
)
from edgefleet.db import session_scope
from edgefleet.errors import InvalidTransition, NotFound, StateConflict
from edgefleet.events import emit_fields
from edgefleet.group_plan import (
    GroupPlan,
    MemberStop,
    automatic_actions,
    automatic_stops,
    plan_group,
    plan_stop,
)
from edgefleet.models.groups import (
    SELF_RECONCILING,
    AutoUpdateStep,
    GroupMove,
    GroupState,
    RolloutOptions,
)
from edgefleet.models.records import Application, Deployment, DeploymentGroup, utcnow
from edgefleet.models.states import DELETABLE
from edgefleet.notice_events import group_event_id, group_event_of
from edgefleet.rollouts import artifact_key, group_table, summarize
from edgefleet.tasks.retry import unless_final


class GroupView(BaseModel):
    """A group as one rollout sees it: its target, state, rollout options and plan."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    application: str
    version: str
    state: GroupState
    options: RolloutOptions
    plan: GroupPlan


@task(name="plan-group", task_run_name="plan group {name}", retries=2, retry_delay_seconds=1,
      cache_policy=NONE, retry_condition_fn=unless_final)
def load_group_plan(name: str) -> GroupView:
    """Observe the group's members and matching edges (availability from the records) and
    plan what each edge needs."""
    with session_scope() as session:
        group = get_group(session, name=name)
        target, edges, members, matched_by = observe_group(session, group=group)
        plan = plan_group(target, edges, members, prune=group.prune, matched_by=matched_by)
        return GroupView(name=group.name, application=target.application,
                         version=group.version, state=GroupState(group.state),
                         options=RolloutOptions.model_validate(group.options), plan=plan)


@task(name="add-group-member", task_run_name="add {edge} to group {name}", retries=2,
      retry_delay_seconds=1, cache_policy=NONE, retry_condition_fn=unless_final)
def add_group_member(name: str, edge: str) -> str:
    """A CREATED member deployment of the group on ``edge``; returns its id."""
    with session_scope() as session:
        group = get_group(session, name=name)
        return add_member(session, group=group, edge=get_edge(session, name=edge)).id


@task(name="member-error", cache_policy=NONE)
def member_error(deployment_id: str) -> str | None:
    """A member's last error as its run left it (why an update failed, or was rolled back)."""
    with session_scope() as session:
        dep = session.get(Deployment, deployment_id)
        return dep.last_error if dep is not None else "the deployment is gone"


@task(name="record-group-progress", task_run_name="group {name}: wave {wave}/{waves}",
      retries=2, retry_delay_seconds=1, cache_policy=NONE)
def record_group_progress(name: str, wave: int, waves: int, flow_run_id: str | None = None
                          ) -> None:
    """The wave the rollout has reached, for `group status` and `--wait`."""
    with session_scope() as session:
        group = get_group(session, name=name)
        group.wave, group.waves, group.updated_at = wave, waves, utcnow()
        if flow_run_id:
            group.flow_run_id = flow_run_id
        session.add(group)


@task(name="end-group-rollout", task_run_name="group {name}: {move.value}", retries=2,
      retry_delay_seconds=1, cache_policy=NONE, retry_condition_fn=unless_final)
def end_group_rollout(name: str, move: GroupMove, to: GroupState, expect: GroupState,
                      reason: str) -> GroupState:
    """The rollout is over: the group moves from the state this run held (``expect``) to
    STARTED, PARTIAL or HALTED, with the reason."""
    with session_scope() as session:
        return move_group_record(session, name=name, move=move,
                                 to=None if move is GroupMove.HALT else to, expect=expect,
                                 reason=reason)


@task(name="read-group-state", task_run_name="group {name}: state", retries=2,
      retry_delay_seconds=1, cache_policy=NONE, retry_condition_fn=unless_final)
def read_group_state(name: str) -> tuple[GroupState, str | None]:
    """The group's state and reason now: a rollout looks between its batches whether an
    operator paused it."""
    with session_scope() as session:
        group = get_group(session, name=name)
        return GroupState(group.state), group.reason


@task(name="move-group", task_run_name="group {name}: {move.value}", retries=2,
      retry_delay_seconds=1, cache_policy=NONE, retry_condition_fn=unless_final)
def move_group_state(name: str, move: GroupMove, expect: GroupState,
                     to: GroupState | None = None, reason: str | None = None) -> GroupState:
    """One move of the group by its rollout run (to the gate, through it, back from a
    pause), from the state this run left it in (``expect``); the reason replaces the old."""
    with session_scope() as session:
        return move_group_record(session, name=name, move=move, to=to, expect=expect,
                                 reason=reason)


# ------------------------------------------------------------------ reconcile, prune, stop


class GroupWork(BaseModel):
    """A group a reconcile nobody asked for acts on: a rollout over ``edges`` (a group at
    rest), or the stops of ``members`` (a STOPPED group whose members still run)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    application: str
    version: str
    state: GroupState
    edges: list[str] = []
    members: list[str] = []
    cause: str


@task(name="find-group-work", task_run_name="find group work", retries=2,
      retry_delay_seconds=1, cache_policy=NONE)
def find_group_work(edge: str | None = None) -> list[GroupWork]:
    """The groups STARTED, PARTIAL or STOPPED with work a reconcile nobody asked for runs
    now (``group_plan.automatic_actions`` / ``automatic_stops``): on ``edge`` when it just
    came back ONLINE, else anywhere (the served sweep); or whose state is not the one its
    members sum up to (a rollout of no edge moves it). HALTED groups wait for an operator."""
    found: list[GroupWork] = []
    states = sorted(s.value for s in SELF_RECONCILING | {GroupState.STOPPED})
    with session_scope() as session:
        groups = session.exec(select(DeploymentGroup).where(
            col(DeploymentGroup.state).in_(states)).order_by(col(DeploymentGroup.name))).all()
        for group in groups:
            target, edges, members, matched_by = observe_group(session, group=group)
            failed = {d.id for d in group_members(session, group=group) if d.last_error}
            base = {"name": group.name, "application": target.application,
                    "version": group.version, "state": GroupState(group.state)}
            if group.state == GroupState.STOPPED:
                stops = automatic_stops(plan_stop(edges, members), edge=edge, failed=failed)
                if stops:
                    found.append(GroupWork(**base, members=[s.deployment_id for s in stops],
                                           cause="\n".join(s.render() for s in stops)))
                continue
            plan = plan_group(target, edges, members, prune=group.prune, matched_by=matched_by)
            actions = automatic_actions(plan, edge=edge, failed=failed)
            if actions:
                found.append(GroupWork(
                    **base, edges=sorted({a.edge for a in actions}),
                    cause="\n".join(f"{a.action:<6} {a.edge}: {a.cause}" for a in actions)))
            elif (now := summarize(plan)).state != group.state:
                # e.g. PARTIAL while its deferred member was brought up by hand: a rollout
                # of no edge sums the group up again
                found.append(GroupWork(**base, cause=f"{group.state}, yet its members say "
                                       f"{now.state.value}: {now.cause}"))
    return found


@task(name="begin-group-reconcile", task_run_name="group {name}: reconcile", retries=2,
      retry_delay_seconds=1, cache_policy=NONE, retry_condition_fn=unless_final)
def begin_group_reconcile(name: str, expect: GroupState) -> bool:
    """UPDATING from the state the work was found in (compare-and-set); False when another
    run (a second trigger, an operator) moved the group first: that one has it."""
    try:
        with session_scope() as session:
            move_group_record(session, name=name, move=GroupMove.UPDATE, expect=expect,
                              reason=None, wave=0, waves=0, flow_run_id=None)
    except (StateConflict, InvalidTransition):
        return False
    return True


@task(name="delete-group-member", task_run_name="delete member {deployment_id}", retries=2,
      retry_delay_seconds=1, cache_policy=NONE, retry_condition_fn=unless_final)
def delete_group_member(deployment_id: str) -> None:
    """Forget a member that left the group (stopped first, or never started)."""
    with session_scope() as session:
        delete_deployment_rows(session, deployment_id=deployment_id,
                               states={s.value for s in DELETABLE})


class GroupStops(BaseModel):
    """A stopped group as its stop run sees it: the members that still run."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    application: str
    state: GroupState
    options: RolloutOptions
    stops: tuple[MemberStop, ...]


@task(name="plan-group-stop", task_run_name="plan stop of group {name}", retries=2,
      retry_delay_seconds=1, cache_policy=NONE, retry_condition_fn=unless_final)
def load_group_stops(name: str) -> GroupStops:
    with session_scope() as session:
        group = get_group(session, name=name)
        target, edges, members, _matched_by = observe_group(session, group=group)
        return GroupStops(name=group.name, application=target.application,
                          state=GroupState(group.state),
                          options=RolloutOptions.model_validate(group.options),
                          stops=plan_stop(edges, members))


@task(name="record-group-reason", task_run_name="group {name}: reason", retries=2,
      retry_delay_seconds=1, cache_policy=NONE)
def record_group_reason(name: str, reason: str, state: GroupState) -> bool:
    """The group's reason, only while it is still in ``state`` (a later move keeps its own)."""
    with session_scope() as session:
        result = session.exec(update(DeploymentGroup)  # type: ignore[call-overload]
                              .where(col(DeploymentGroup.name) == name,
                                     col(DeploymentGroup.state) == state.value)
                              .values(reason=reason, updated_at=utcnow())
                              .execution_options(synchronize_session=False))
        return bool(result.rowcount == 1)
# ------------------------------------------------------------------ the group's table


@task(name="publish-group-table", task_run_name="table of group {name}", retries=2,
      retry_delay_seconds=1, cache_policy=NONE)
def publish_group_table(name: str) -> str:
    """Update the group's table artifact (``rollouts.artifact_key``): what `group status`
    shows, one row per member edge, worst first. Returns its key."""
    with session_scope() as session:
        group = get_group(session, name=name)
        rows = group_member_rows(session, group=group)
        _target, edges, _members, _by = observe_group(session, group=group)
        availability = {e.name: e.availability.value if e.availability else None
                        for e in edges}
        state, version, reason = group.state, group.version, group.reason
        wave, waves = group.wave, group.waves
        app = session.get(Application, group.application_id)
        application = app.name if app else "?"
    table = group_table(rows, availability, version)
    at = f", wave {wave}/{waves}" if waves else ""
    description = (f"group **{name}**: {application} {version}, **{state}**{at} at "
                   f"{utcnow():%Y-%m-%d %H:%M:%S} UTC; {len(table)} edge(s), worst first"
                   + (f"\n\nreason: {reason}" if reason else ""))
    key = artifact_key(name)
    create_table_artifact(table=table, key=key, description=description)
    return key


# ------------------------------------------------------------------ notices


@task(name="announce-group-halt", task_run_name="announce group {name} halted", retries=2,
      retry_delay_seconds=1, cache_policy=NONE)
def announce_group_halt(name: str, occasion: str, auto_update: bool = False) -> bool:
    """Emit ``edgefleet.group.halted`` (notify kind ``halted``) so the notify channels reach
    people: a halted group waits for an operator, whether an operator or auto-update started
    the rollout. ``occasion`` (the rollout's run) fixes the event id: announced once."""
    started = "auto-update" if auto_update else "rollout"
    return _announce(name, "halted", occasion, auto_update,
                     lambda head, reason: f"{started} of group {head} halted: "
                                          f"{reason.removeprefix('halted: ')}; it waits "
                                          "for an operator",
                     f"edgefleet group status {name}")


@task(name="announce-group-awaiting-approval", retries=2, retry_delay_seconds=1,
      task_run_name="announce group {name} awaiting approval", cache_policy=NONE)
def announce_group_awaiting_approval(name: str, occasion: str, auto_update: bool = False
                                     ) -> bool:
    """Emit ``edgefleet.group.awaiting-approval`` (notify kind ``awaiting-approval``): the
    rollout waits at its gate for a person. ``occasion`` (the run and the wave) fixes the
    event id: announced once per gate."""
    return _announce(name, "awaiting-approval", occasion, auto_update,
                     lambda head, reason: f"group {head} is {reason}",
                     f"edgefleet group approve {name}")


def _announce(name: str, kind: str, occasion: str, auto_update: bool,
              message: Callable[[str, str], str], command: str) -> bool:
    """One group notice, made of the group's record as it is now (its reason included)."""
    with session_scope() as session:
        group = get_group(session, name=name)
        app = session.get(Application, group.application_id)
        edges = sorted({r["edge"] for r in group_member_rows(session, group=group)})
        version, reason = group.version, group.reason or "no reason recorded"
        application = app.name if app else "?"
    fields = group_event_of(
        kind, group=name, application=application, version=version,
        message=message(f"{name} to {application} {version}", reason), edges=edges,
        command=command, event_id=group_event_id(name, kind, occasion),
        extra={"reason": reason, "auto_update": auto_update})
    return emit_fields(fields)


# ------------------------------------------------------------------ auto-update


@task(name="claim-group-auto-updates", retries=2, retry_delay_seconds=1, cache_policy=NONE,
      task_run_name="claim auto-updates of {application}")
def claim_auto_updates(application: str | None = None) -> list[AutoUpdateStep]:
    """Each group with auto-update on (of ``application``, or all): moved to UPDATING
    towards the newest version it admits, or left with the reason (``crud.claim_auto_update``).
    One group per transaction: a group that cannot be claimed never holds back another."""
    with session_scope() as session:
        try:
            names = auto_updating_groups(session, application=application)
        except NotFound:  # the application was deleted since it was published
            return []
    steps = []
    for name in names:
        with session_scope() as session:
            try:
                step = claim_auto_update(session, name=name)
            except NotFound:  # deleted meanwhile
                continue
        steps.append(step)
    return steps


@task(name="submit-group-rollout", retries=2, retry_delay_seconds=2, cache_policy=NONE,
      task_run_name="submit rollout {step.group} {step.application} {step.to_version}")
def submit_group_rollout(step: AutoUpdateStep, key: str) -> str:
    """A run of the served `rollout-group` deployment for a claimed group; returns its id.
    ``key`` makes a retried submit the same run (Prefect's idempotency key)."""
    from prefect.client.schemas.objects import FlowRun
    from prefect.deployments import run_deployment

    run = run_deployment(
        name="rollout-group/rollout-group", timeout=0, idempotency_key=key,
        parameters={"group": step.group, "application": step.application,
                    "version": step.to_version, "force": False, "auto_update": True},
        flow_run_name=f"rollout {step.group} {step.application} {step.to_version}")
    assert isinstance(run, FlowRun)  # called from sync code: the run, not a coroutine
    return str(run.id)


@task(name="halt-unstarted-rollout", task_run_name="halt group {name}", retries=2,
      retry_delay_seconds=1, cache_policy=NONE, retry_condition_fn=unless_final)
def halt_unstarted_rollout(name: str, reason: str) -> None:
    """A claimed rollout that could not be submitted: its group goes HALTED with the reason,
    never UPDATING with no run behind it."""
    with session_scope() as session:
        move_group_record(session, name=name, move=GroupMove.HALT,
                          expect=GroupState.UPDATING, reason=reason)
