"""Flow `rollout-group`: observe → plan → waves of members in parallel → decide → end state.

A group's rollout reuses the single-deployment flows: each wave is a subflow run
(`rollout-wave`, named ``rollout g hello 2.0.0 wave 2/3``) and each edge of it one subflow
run of `deploy-application` (a member not started yet) or `update-application` (health-gated,
with its own rollback), named for what it does where (``update hello 1.1.0 → lab-3``), at most
``max_parallel`` at a time, once the wave has pulled the new images on all its running
members' edges (a pre-pull: no container is touched while a neighbour still pulls). After
each wave ``rollouts.decide`` looks at every result of this rollout: halt before the next
wave, roll back the edges this rollout already changed, or record and go on. Offline edges
are deferred by the plan, never attempted nor failed. The group ends STARTED, PARTIAL or
HALTED (``rollouts.summarize``), whatever happened: a run that breaks halts its group with
the reason rather than leaving it UPDATING. Removals (``--prune``) run after the last wave.
The group's table artifact (``group-<name>``) is updated after each wave and at the end; a
halt and each wait at the gate are announced (``edgefleet.group.halted``,
``edgefleet.group.awaiting-approval``) for the notify channels.

The gate (``--approve``): after each wave but the last the run moves its group to
AWAITING_APPROVAL and pauses itself (Prefect ``pause_flow_run`` waiting for a
``GateInput``), so the paused run shows a form in the Prefect UI and `group approve` resumes
it with the same input; the run itself moves the group on (approved) or halts it (rejected,
or no answer within ``gate_timeout``). A pause by an operator (`group pause`: PAUSED) is seen
before each batch of edges; the run pauses itself the same way until resumed. The pause
blocks the run's own process (the served one under `edgefleet up`), polling Prefect.

Flow `reconcile-groups` runs rollouts nobody asked for (an edge back ONLINE, the served
sweep); flow `stop-group` stops a stopped group's members, those on an edge that is away
once it is back.
"""

from __future__ import annotations

from typing import Annotated

from prefect import flow, get_run_logger, runtime, task
from prefect.cache_policies import NONE
from prefect.concurrency.sync import concurrency
from prefect.exceptions import FlowPauseTimeout
from prefect.flow_runs import pause_flow_run
from prefect.input import RunInput

from edgefleet.flows.deploy import deploy_application
from edgefleet.flows.stop import stop_application
from edgefleet.flows.update import update_application
from edgefleet.group_plan import EdgeAction, MemberStop
from edgefleet.models.forms import form
from edgefleet.models.groups import ROLLING, GateInput, GroupMove, GroupState, paused_from
from edgefleet.models.inputs import AppKind
from edgefleet.models.run_names import deploy_run_name, update_run_name
from edgefleet.models.states import DeploymentState
from edgefleet.rollouts import (
    Decision,
    EdgeResult,
    Outcome,
    Verdict,
    decide,
    gate_after,
    plan_waves,
    summarize,
)
from edgefleet.settings import get_settings
from edgefleet.tasks.compose import resolve_compose, service_images
from edgefleet.tasks.groups import (
    GroupView,
    add_group_member,
    announce_group_awaiting_approval,
    announce_group_halt,
    begin_group_reconcile,
    delete_group_member,
    end_group_rollout,
    find_group_work,
    load_group_plan,
    load_group_stops,
    member_error,
    move_group_state,
    publish_group_table,
    read_group_state,
    record_group_progress,
    record_group_reason,
)
from edgefleet.tasks.images import load_registry_login, pull_image
from edgefleet.tasks.limits import ensure_limit, group_limit_name
from edgefleet.tasks.reconcile import find_edge
from edgefleet.tasks.records import load_plan, set_version

NOT_STARTED = frozenset({DeploymentState.CREATED, DeploymentState.STOPPED})
GATE_POLL_SECONDS = 2  # how often a paused run asks Prefect whether it was resumed


class Hold:
    """The state this run holds its group in: DEPLOYING or UPDATING, and AWAITING_APPROVAL
    or PAUSED while it waits; every move of the run expects it (compare-and-set)."""

    def __init__(self, state: GroupState, occasion: str = "", auto_update: bool = False
                 ) -> None:
        self.state = state
        self.rolling = state  # DEPLOYING or UPDATING: where a gate or a pause goes back to
        self.occasion = occasion  # the rollout's run: fixes the ids of its notices' events
        self.auto_update = auto_update


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
                flow_run_name=deploy_run_name(application, version, action.edge))(dep_id)
        elif action.state_before in NOT_STARTED:
            if action.version_before != version:
                set_version(dep_id, version)
            deploy_application.with_options(
                flow_run_name=deploy_run_name(application, version, action.edge))(dep_id)
        else:
            update_application.with_options(
                flow_run_name=update_run_name(application, version, action.edge))(
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


@flow(name="rollout-wave",
      flow_run_name="rollout {group} {application} {version} wave {wave}/{waves}{part}")
def roll_out_wave(group: str, application: str, version: str, wave: int, waves: int,
                  actions: list[EdgeAction], force: bool = False, part: str = ""
                  ) -> list[EdgeResult]:
    """One wave of a group's rollout (or one batch of ``max_parallel`` edges of it, ``part``),
    its own run so that the UI lists the waves, the members' runs as its subflows: all its
    edges at once; a result per edge."""
    _pre_pull(version, actions, force)
    futures = [roll_out_edge.submit(group, application, version, action, force)
               for action in actions]
    return [f.result() for f in futures]


def _pre_pull(version: str, actions: list[EdgeAction], force: bool) -> None:
    """Pull ``version``'s images on every edge of the wave whose member runs, all at once,
    before any member's update touches a container: an edge whose pull is slow or fails
    does not find its neighbours already half-way through. A failure is only logged: that
    member's own update pulls again and, failing, changes nothing. A wave of one member
    needs no pre-pull (its update pulls first anyway)."""
    running = [a for a in actions
               if a.deployment_id is not None and a.state_before not in NOT_STARTED]
    if len(running) < 2:
        return
    logger = get_run_logger()
    pulls = []
    for action in running:
        assert action.deployment_id is not None
        try:
            target = load_plan(action.deployment_id, version=version)
            model = resolve_compose(target) if target.kind is not AppKind.IMAGE else None
            refs = sorted(set(service_images(model).values())) if model else [
                str(target.image)]
            login = (load_registry_login(target.registry_secret) if target.registry_secret
                     else None)
        except Exception as exc:  # the member's own update meets it again and says why
            logger.warning("pre-pull on %s skipped: %s", action.edge, exc)
            continue
        pulls += [(action.edge, ref, pull_image.submit(target.edge, ref, always=force,
                                                        credentials=login)) for ref in refs]
    for edge, ref, future in pulls:
        try:
            future.result()
        except Exception as exc:
            logger.warning("pre-pull of %s on %s failed (its update pulls again): %s", ref,
                           edge, exc)


@flow(name="rollout-group", flow_run_name="rollout {group} {application} {version}")
def rollout_group(
    group: Annotated[str, form("Group", "the deployment group's name (`edgefleet group list`)")],
    application: Annotated[str, form("Application", "the group's application")],
    version: Annotated[str, form("Version", "the group's recorded target version")],
    force: Annotated[bool, form(
        "Force", "re-pull and restart members already on the version")] = False,
    edges: Annotated[list[str] | None, form(
        "Edges", "only these edges (a reconcile's); empty: every edge of the group")] = None,
    auto_update: Annotated[bool, form(
        "Auto-update", "started by the group's auto-update, not by an operator")] = False,
) -> str:
    """Roll group ``group`` out to ``version`` (its recorded target); returns its state.

    ``edges``: only the actions on these edges run (a reconcile nobody asked for, e.g. for
    the edge that came back ONLINE); the group's end state still sums up every edge.
    ``auto_update``: started by the group's auto-update, not by an operator (its notices
    say so).

    The run holds the group's slot (a Prefect concurrency limit of one, ``edgefleet-group-
    <name>``) from its start to its end state, pauses included: a second rollout of the group
    waits for it (``update_lock_wait``), then fails without touching the group."""
    limit = ensure_limit(group_limit_name(group))
    acquired = False
    try:
        # a lease renewal that fails (a busy server) must not kill a rollout mid-wave
        with concurrency(limit, occupy=1, strict=True, raise_on_lease_renewal_failure=False,
                         timeout_seconds=get_settings().update_lock_wait):
            acquired = True
            return _rollout_in_slot(group, application, version, force, edges, auto_update)
    except TimeoutError as exc:
        if acquired:
            raise
        raise RuntimeError(f"another rollout of group {group!r} held its slot ({limit}) for "
                           f"{get_settings().update_lock_wait} s; this one did nothing") from exc


def _rollout_in_slot(group: str, application: str, version: str, force: bool,
                     edges: list[str] | None, auto_update: bool) -> str:
    logger = get_run_logger()
    view = load_group_plan(group)
    if view.state not in ROLLING | {GroupState.PAUSED}:
        raise RuntimeError(f"group {group!r} is {view.state.value}, not DEPLOYING or UPDATING: "
                           "a rollout starts from `group create` or `group update`")
    occasion = str(runtime.flow_run.id or f"{group}-{version}")
    hold = Hold(view.state, occasion, auto_update)
    if view.state is GroupState.PAUSED:  # paused before this run even started
        hold.rolling = paused_from(read_group_state(group)[1])
    try:
        state = _roll_out(view, application, force, hold, edges)
    except Exception as exc:
        reason = f"the rollout broke off: {str(exc) or type(exc).__name__}"
        logger.error(reason)
        end_group_rollout(group, GroupMove.HALT, GroupState.HALTED, hold.state, reason)
        publish_group_table(group, return_state=True)
        announce_group_halt(group, occasion, auto_update, return_state=True)
        raise
    publish_group_table(group, return_state=True)  # best effort: a table never halts a group
    if state == GroupState.HALTED.value:
        announce_group_halt(group, occasion, auto_update, return_state=True)
    return state


def _roll_out(view: GroupView, application: str, force: bool, hold: Hold,
              only: list[str] | None = None) -> str:
    logger = get_run_logger()
    group, version, options = view.name, view.version, view.options
    logger.info("plan of group %s (%s %s; %s):\n%s", group, application, version,
                options.describe(), view.plan.render())
    by_edge = {a.edge: a for a in view.plan.actions if a.action in ("add", "update")}
    if force:  # a forced update re-pulls and restarts the members already on the target
        for a in view.plan.actions:
            if a.action == "keep" and a.matches and a.deployment_id is not None:
                by_edge[a.edge] = a.model_copy(update={"action": "update"})
    if only is not None:
        by_edge = {name: a for name, a in by_edge.items() if name in only}
    edges = {name: dict(a.labels) for name, a in by_edge.items()}
    waves = plan_waves(edges, options.waves) if edges else []
    run_id = str(runtime.flow_run.id) if runtime.flow_run.id else None
    record_group_progress(group, 0, len(waves), run_id)
    results: list[EdgeResult] = []
    decision: Decision | None = None
    for number, wave in enumerate(waves, start=1):
        record_group_progress(group, number, len(waves))
        logger.info("wave %d/%d: %s", number, len(waves), ", ".join(wave))
        batches = range(0, len(wave), options.max_parallel)
        for part, start in enumerate(batches, start=1):
            ended = _paused_here(group, hold, number, len(waves))
            if ended is not None:  # halted or stopped meanwhile: the record says so already
                return ended.value
            batch = wave[start:start + options.max_parallel]
            results.extend(roll_out_wave(
                group, application, version, number, len(waves),
                [by_edge[name] for name in batch], force,
                f" part {part}/{len(batches)}" if len(batches) > 1 else ""))
        decision = decide(options, results)
        logger.info("after wave %d/%d: %s (%s)", number, len(waves), decision.verdict.value,
                    decision.reason)
        if decision.verdict is Verdict.ROLL_BACK:
            back = [roll_back_edge.submit(application, by_edge[name])
                    for name in decision.rollback]
            for future in back:
                future.result()
        publish_group_table(group, return_state=True)  # after each wave, best effort
        if decision.stops:
            break
        if gate_after(options, number, len(waves)):
            ended = _gate(group, hold, number, len(waves))
            if ended is not None:
                return ended.value
    ended = _paused_here(group, hold, len(waves), len(waves))  # a pause after the last edges
    if ended is not None:
        return ended.value
    if decision is None or not decision.stops:
        _remove_members(view, application, only)
    outcome = summarize(load_group_plan(group).plan, decision)
    logger.info("group %s: %s (%s)", group, outcome.state.value, outcome.cause)
    end_group_rollout(group, outcome.move, outcome.state, hold.state, outcome.cause)
    return outcome.state.value


def _halt_unanswered(group: str, hold: Hold, why: str) -> GroupState:
    """The pause timed out: Prefect runs no further task of this run (its pause has
    expired, the run ends Failed), so the group is halted without a task run."""
    get_run_logger().error(why)
    end_group_rollout.fn(group, GroupMove.HALT, GroupState.HALTED, hold.state, why)
    return GroupState.HALTED


def _gate(group: str, hold: Hold, number: int, waves: int) -> GroupState | None:
    """Wait at the approval gate after wave ``number``; None to go on with the next wave,
    else the state the group ended in (HALTED when rejected or unanswered)."""
    logger = get_run_logger()
    where = f"after wave {number}/{waves}"
    ended = _paused_here(group, hold, number, waves)  # paused as the wave ended: that first
    if ended is not None:
        return ended
    move_group_state(group, GroupMove.AWAIT_APPROVAL, expect=hold.state,
                     reason=f"awaiting approval {where}: `edgefleet group approve {group}` "
                            "(or resume the paused rollout run in the Prefect UI)")
    hold.state = GroupState.AWAITING_APPROVAL
    # best effort: the notify channels' `awaiting-approval`; a lost event never holds the gate
    announce_group_awaiting_approval(group, f"{hold.occasion}:wave {number}", hold.auto_update,
                                     return_state=True)
    timeout = get_settings().gate_timeout
    form = RunInput.subclass_from_base_model_type(GateInput).with_initial_data(
        description=f"Group **{group}**: wave {number}/{waves} is done. Approve the next wave "
                    "(leave *approved* ticked), or untick it to halt the rollout.")
    logger.info("group %s awaiting approval %s (at most %d s)", group, where, timeout)
    try:
        answer = GateInput.model_validate(
            pause_flow_run(wait_for_input=form, timeout=timeout,
                           poll_interval=GATE_POLL_SECONDS), from_attributes=True)
    except FlowPauseTimeout:
        return _halt_unanswered(group, hold, f"halted: no approval within {timeout} s {where}")
    state, _reason = read_group_state(group)
    if state is not GroupState.AWAITING_APPROVAL:  # stopped (or halted) while waiting
        logger.warning("group %s is %s now: the rollout ends here", group, state.value)
        return state
    note = f" ({answer.note})" if answer.note else ""
    if not answer.approved:
        why = f"halted: the rollout was rejected at the approval gate {where}{note}"
        logger.warning(why)
        end_group_rollout(group, GroupMove.HALT, GroupState.HALTED, hold.state, why)
        return GroupState.HALTED
    logger.info("group %s approved %s%s: the next wave goes", group, where, note)
    move_group_state(group, GroupMove.APPROVE, expect=hold.state, to=hold.rolling)
    hold.state = hold.rolling
    return None


def _paused_here(group: str, hold: Hold, number: int, waves: int) -> GroupState | None:
    """Before a batch of edges: if an operator paused the group, pause this run until it is
    resumed (`group resume`, or the Prefect UI). None to go on, else the state the group
    ended in (stopped or halted meanwhile, or a pause that timed out)."""
    state, _reason = read_group_state(group)
    if state in ROLLING:
        hold.state = hold.rolling = state  # a resume may have moved it back already
        return None
    if state is not GroupState.PAUSED:
        get_run_logger().warning("group %s is %s now: the rollout ends here", group,
                                 state.value)
        return state
    hold.state = GroupState.PAUSED
    timeout = get_settings().gate_timeout
    get_run_logger().info("group %s paused by an operator in wave %d/%d: waiting for "
                          "`edgefleet group resume %s` (at most %d s)", group, number, waves,
                          group, timeout)
    try:
        pause_flow_run(timeout=timeout, poll_interval=GATE_POLL_SECONDS)
    except FlowPauseTimeout:
        return _halt_unanswered(group, hold, f"halted: paused in wave {number}/{waves} and "
                                             f"not resumed within {timeout} s")
    state, _reason = read_group_state(group)
    if state is GroupState.PAUSED:  # resumed from the Prefect UI: the record follows
        move_group_state(group, GroupMove.RESUME, expect=hold.state, to=hold.rolling)
        state = hold.rolling
    if state in ROLLING:
        hold.state = hold.rolling = state
        return None
    get_run_logger().warning("group %s is %s now: the rollout ends here", group, state.value)
    return state


@task(name="remove-edge-member", task_run_name="remove {action.edge}", cache_policy=NONE)
def remove_edge_member(application: str, action: EdgeAction) -> EdgeResult:
    """Take a member out of the group for good (``--prune``, or a second one on an edge):
    stopped with its volumes unless it never ran or is stopped already, then deleted."""
    dep_id = action.deployment_id
    assert dep_id is not None, "a removal is of a member"
    try:
        if action.state_before not in NOT_STARTED:
            stop_application.with_options(
                flow_run_name=f"stop {application} → {action.edge}")(dep_id, True)
        delete_group_member(dep_id)
    except Exception as exc:
        reason = member_error(dep_id) or str(exc) or type(exc).__name__
        return EdgeResult(edge=action.edge, outcome=Outcome.FAILED, reason=reason)
    return EdgeResult(edge=action.edge, outcome=Outcome.SUCCEEDED)


def _remove_members(view: GroupView, application: str, only: list[str] | None) -> None:
    """The plan's removals, after the last wave (a halted rollout removes nothing); a
    failed one stays in the plan, so the group ends PARTIAL with it."""
    logger = get_run_logger()
    removes = [a for a in view.plan.actions
               if a.action == "remove" and (only is None or a.edge in only)]
    for start in range(0, len(removes), view.options.max_parallel):
        batch = removes[start:start + view.options.max_parallel]
        futures = [remove_edge_member.submit(application, a) for a in batch]
        for action, future in zip(batch, futures, strict=True):
            result = future.result()
            if result.outcome is Outcome.FAILED:
                logger.error("removing %s from group %s failed: %s", action.edge, view.name,
                             result.reason)
            else:
                logger.info("removed %s from group %s (%s)", action.edge, view.name,
                            action.cause)


@task(name="stop-member", task_run_name="stop {stop.edge}", cache_policy=NONE)
def stop_member(application: str, stop: MemberStop) -> str | None:
    """Stop one member of a stopped group; returns why it failed (None: stopped)."""
    try:
        stop_application.with_options(
            flow_run_name=f"stop {application} → {stop.edge}")(stop.deployment_id)
    except Exception as exc:
        return member_error(stop.deployment_id) or str(exc) or type(exc).__name__
    return None


SHOWN_LEFT = 10  # members not stopped yet named in a stopped group's reason


def _stopped_reason(left: tuple[MemberStop, ...], failures: dict[str, str]) -> str:
    if not left:
        return "stopped: every member is stopped"
    named = "; ".join(f"{s.edge}: {failures.get(s.deployment_id) or s.cause}"
                      for s in left[:SHOWN_LEFT])
    more = f"; and {len(left) - SHOWN_LEFT} more" if len(left) > SHOWN_LEFT else ""
    return f"stopped; {len(left)} member(s) not stopped yet: {named}{more}"


@flow(name="stop-group", flow_run_name="stop group {group}")
def stop_group(
    group: Annotated[str, form("Group", "the STOPPED deployment group whose members to stop")],
    members: Annotated[list[str] | None, form(
        "Members", "only these member deployments (ids); empty: every one still running")
    ] = None,
) -> str:
    """Stop the members of STOPPED group ``group`` that still run (only ``members``, ids,
    when given), ``max_parallel`` at a time. A member whose edge is not ONLINE is stopped
    once the edge is back (flow `reconcile-groups`). Returns the reason recorded."""
    logger = get_run_logger()
    view = load_group_stops(group)
    if view.state is not GroupState.STOPPED:
        raise RuntimeError(f"group {group!r} is {view.state.value}, not STOPPED: "
                           "`group stop` moves it first")
    todo = [s for s in view.stops if s.now and (members is None or s.deployment_id in members)]
    logger.info("stop of group %s:\n%s", group,
                "\n".join(s.render() for s in view.stops) or "every member is stopped")
    failures: dict[str, str] = {}
    for start in range(0, len(todo), view.options.max_parallel):
        batch = todo[start:start + view.options.max_parallel]
        futures = [stop_member.submit(view.application, s) for s in batch]
        for stop, future in zip(batch, futures, strict=True):
            if (why := future.result()) is not None:
                failures[stop.deployment_id] = why
                logger.error("stopping %s failed: %s", stop.edge, why)
    reason = _stopped_reason(load_group_stops(group).stops, failures)
    record_group_reason(group, reason, GroupState.STOPPED)
    logger.info("group %s: %s", group, reason)
    return reason


def _on_edge() -> str:
    edge = runtime.flow_run.parameters.get("edge")
    return f" on {edge}" if edge else ""


@flow(name="reconcile-groups", flow_run_name=lambda: f"reconcile groups{_on_edge()}")
def reconcile_groups(
    edge: Annotated[str | None, form(
        "Edge", "the edge that came back ONLINE, by name; empty: every group's work")] = None,
    docker_host: Annotated[str | None, form(
        "Docker host", "the edge's engine address, to tell apart another control plane's "
                       "edge of the same name; empty: any")] = None,
) -> dict[str, str]:
    """Bring groups to their target with no command: those with work on ``edge`` when it
    comes back ONLINE (the `edgefleet.edge.online` trigger), else every group (the served
    sweep, which also covers a lost event). Newly matching edges join, deferred members
    are updated, ``--prune`` removals run, members of a STOPPED group that still run are
    stopped. Only STARTED and PARTIAL groups roll out (HALTED waits for an operator), each
    moved to UPDATING by compare-and-set first, so two triggers never roll one group out
    twice. Returns each group acted on → the state it ended in, or why not.

    ``docker_host``: the engine the event was about; another engine of the same name (in
    another control plane's records) is not ours.
    """
    logger = get_run_logger()
    if edge is not None and docker_host:
        found = find_edge(edge)
        if found is None or found.docker_host != docker_host:
            logger.info("the event was about %s at %s, not an edge of ours; nothing to do",
                        edge, docker_host)
            return {}
    done: dict[str, str] = {}
    for work in find_group_work(edge):
        logger.info("group %s (%s):\n%s", work.name, work.state.value, work.cause)
        try:
            if work.state is GroupState.STOPPED:
                stop_group(work.name, work.members)
                done[work.name] = GroupState.STOPPED.value
            elif begin_group_reconcile(work.name, work.state):
                done[work.name] = rollout_group(work.name, work.application, work.version,
                                                edges=work.edges)
            else:
                logger.info("group %s moved meanwhile: another run has it; left alone",
                            work.name)
                done[work.name] = "left to another run"
        except Exception as exc:  # one group that breaks must not keep the others
            logger.error("group %s: %s", work.name, exc)
            done[work.name] = f"failed: {str(exc) or type(exc).__name__}"
    if not done:
        logger.info("no group has work%s", f" on {edge}" if edge else "")
    return done
