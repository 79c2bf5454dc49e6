"""Deployment groups: one application on a fleet of edges, rolled out in waves.

``create_group`` records the group and one CREATED member deployment per target edge, then
runs flow `rollout-group` (as a job); ``update_group`` moves a group at rest to UPDATING with
a new target and runs it again. ``approve_group`` opens the gate a rollout waits at
(``--approve``) by resuming its paused run with a ``GateInput``, as the Prefect UI does;
``pause_group`` / ``resume_group`` hold a rollout before its next edges and let it go on.
Every bad request is refused before anything is recorded.
"""

from __future__ import annotations

import contextlib
import time
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any
from uuid import UUID

import semver
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from edgefleet import parameters as P
from edgefleet.crud import (
    add_member,
    get_application,
    get_edge,
    get_group,
    get_version,
    group_member_rows,
    group_members,
    latest_published,
    move_group_record,
    observe_group,
    select_edges,
)
from edgefleet.db import session_scope
from edgefleet.errors import AlreadyExists, InvalidInput, InvalidTransition, NotFound
from edgefleet.group_plan import GroupPlan, plan_group
from edgefleet.models.groups import (
    AT_REST,
    HOLDING,
    NEW_GROUP_STATE,
    ROLLING,
    AutoUpdate,
    GateInput,
    GroupMove,
    GroupState,
    RolloutOptions,
    parse_auto_update,
    pause_reason,
    paused_from,
)
from edgefleet.models.inputs import DeploymentCreate, check_name, check_semver
from edgefleet.models.records import (
    Application,
    ApplicationVersion,
    DeploymentGroup,
    Edge,
    new_id,
    utcnow,
)
from edgefleet.rollouts import summarize
from edgefleet.selectors import parse_selector
from edgefleet.validation import validated

Progress = Callable[[str], None]


def _options(base: dict[str, Any] | None, **given: Any) -> RolloutOptions:
    """Rollout options: ``base`` (the group's) with the given ones (not None) over it."""
    fields = {**(base or {}), **{k: v for k, v in given.items() if v is not None}}
    return validated(RolloutOptions.model_validate, obj=fields)


def _auto_update(given: str | None) -> AutoUpdate:
    if given is None:
        return AutoUpdate.OFF
    try:
        return parse_auto_update(given)
    except ValueError as exc:
        raise InvalidInput(str(exc)) from exc


def _name(name: str) -> str:
    try:
        return check_name(name, "group")
    except ValueError as exc:
        raise InvalidInput(str(exc)) from exc


def _version(session: Session, app: Application, version: str | None) -> ApplicationVersion:
    """The version a group targets: ``version``, or the newest published; published."""
    if version is None:
        row = latest_published(session, application=app)
        if row is None:
            raise InvalidInput(f"application {app.name!r} has no published version: publish "
                               f"one (`edgefleet app publish {app.name} V`) or pass --version")
        return row
    try:
        text = check_semver(version)
    except ValueError as exc:
        raise InvalidInput(str(exc)) from exc
    rows = session.exec(select(ApplicationVersion).where(
        ApplicationVersion.application_id == app.id)).all()
    row = next((r for r in rows if r.version == text), None)
    if row is None:
        known = ", ".join(sorted(r.version for r in rows)) or "none"
        raise InvalidInput(f"application {app.name!r} has no version {text} (known: {known})")
    if not row.published:
        raise InvalidInput(f"version {row.version} of {app.name!r} is not published: a group "
                           f"rolls out published versions only (`edgefleet app publish "
                           f"{app.name} {row.version}`)")
    return row


def _targets(session: Session, edges: list[str] | None, selector: str | None) -> list[Edge]:
    if selector is not None:
        found = select_edges(session, selector=parse_selector(selector))
        if not found:
            raise InvalidInput(f"no edge matches selector {selector!r} (see `edgefleet edge "
                               f"list --selector {selector!r}`)")
        return found
    assert edges is not None
    return [get_edge(session, name=name) for name in edges]


def create_group(
    name: str,
    application: str,
    *,
    edges: Iterable[str] | None = None,
    selector: str | None = None,
    version: str | None = None,
    env: list[str] | dict[str, str] | None = None,
    waves: str | None = None,
    max_parallel: int | str | None = None,
    failure_threshold: float | str | None = None,
    on_failure: str | None = None,
    approve: bool | None = None,
    prune: bool = False,
    auto_update: str | None = None,
    wait: bool = True,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Launch ``application`` on every edge of a list (``edges``) or matching ``selector``:
    one member deployment per edge, rolled out in waves (flow `rollout-group`).

    Refused before anything is recorded: a bad name, both or neither of ``edges`` and
    ``selector``, a bad selector, an unknown edge, no edge matched, an unknown application
    or version, an unpublished version, a bad ``env``, rollout option or ``auto_update``
    (off, patch, minor, major: see ``set_group``), an existing group, ``approve``
    without `edgefleet up` (:func:`_gate_needs_queue`). Values of sensitive parameters go
    to the group's Prefect Secret blocks (deleted with the group); records keep their names.
    """
    name = _name(name)
    listed = None if edges is None else list(dict.fromkeys(edges))
    if (listed is None) == (selector is None) or listed == []:
        raise InvalidInput("give the group's edges either as a list (--edge E ...) or as a "
                           "selector (--selector SEL), exactly one of them")
    if selector is not None:
        selector = selector.strip()
        parse_selector(selector)
    options = _options(None, waves=waves, max_parallel=max_parallel,
                       failure_threshold=failure_threshold, on_failure=on_failure,
                       approve=approve)
    _gate_needs_queue(options)
    level = _auto_update(auto_update)
    spec = validated(DeploymentCreate, application=application, edge="group",
                     version=version, env=env or {})
    with session_scope() as session:
        if existing := session.exec(select(DeploymentGroup).where(
                DeploymentGroup.name == name)).first():
            raise AlreadyExists(f"a deployment group named {name!r} already exists"
                                + _relaunch_hint(existing))
        app = get_application(session, name=spec.application)
        row = _version(session, app, spec.version)
        params = P.of_version(row.parameters, kind=row.kind, text=row.compose)
        P.check_environment(params, kind=row.kind, version_env=row.env, env=spec.env,
                            label=f"{app.name} {row.version}")
        target_ids = [e.id for e in _targets(session, listed, selector)]
        assert app.id is not None
        app_id, app_name, target = app.id, app.name, row.version
        secret = {k: v for k, v in spec.env.items() if k in P.sensitive_names(params)}
    group_id, env = new_id(), dict(spec.env)
    saved: dict[str, str] = {}  # each block's name, from just before it is saved
    try:
        if secret:  # in the group's Secret blocks; its record and its members' keep the names
            from edgefleet import parameter_secrets  # Prefect: only when there is a secret

            parameter_secrets.save_values(group_id, secret, into=saved)
            env.update(saved)
        with session_scope() as session:
            group = DeploymentGroup(id=group_id, name=name, application_id=app_id,
                                    version=target, edges=listed, selector=selector, env=env,
                                    options=options.model_dump(mode="json"), prune=prune,
                                    state=NEW_GROUP_STATE.value, auto_update=level.value,
                                    auto_update_since=utcnow())
            session.add(group)
            try:
                session.flush()
            except IntegrityError as exc:
                raise AlreadyExists(f"a deployment group named {name!r} already exists"
                                    ) from exc
            for edge_id in target_ids:
                edge = session.get(Edge, edge_id)
                if edge is None:
                    raise NotFound(f"edge {edge_id} was removed meanwhile: nothing was "
                                   "recorded; create the group again")
                add_member(session, group=group, edge=edge)
    except Exception:
        if saved:
            parameter_secrets.delete_values(saved, group_id)
        raise
    _run(name, app_name, target, force=False, wait=wait, progress=progress)
    return group_status(name)


def update_group(
    name: str,
    *,
    to: str | None = None,
    force: bool = False,
    waves: str | None = None,
    max_parallel: int | str | None = None,
    failure_threshold: float | str | None = None,
    on_failure: str | None = None,
    approve: bool | None = None,
    wait: bool = True,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Roll the group out to ``to`` (default: the newest published version, never older
    than its target); the rollout options given here override the group's for this rollout
    and are kept. A STOPPED group is launched again (its members started on the target).
    Refused, with nothing changed: a rollout of the group under way, an unknown or
    unpublished version, a change of application kind, and the version the
    group already targets unless ``force`` (which updates the members already on it too).
    """
    with session_scope() as session:
        group = get_group(session, name=name)
        if group.state in {s.value for s in ROLLING | HOLDING}:
            waits = {GroupState.AWAITING_APPROVAL.value: f" and waits for `edgefleet group "
                                                         f"approve {name}`",
                     GroupState.PAUSED.value: f" and waits for `edgefleet group resume "
                                              f"{name}`"}.get(group.state, "")
            raise InvalidTransition(
                f"group {name!r} is {group.state}: a rollout of it is under way{waits} (see "
                f"`edgefleet group status {name}`); update it once that one has ended")
        app = session.get(Application, group.application_id)
        assert app is not None
        current = get_version(session, application=app, version=group.version)
        target = _version(session, app, to)
        if to is None and (semver.Version.parse(target.version)
                           < semver.Version.parse(current.version)):
            target = current
        if target.kind != current.kind:
            raise InvalidInput(f"cannot update a group of {current.kind} deployments to a "
                               f"{target.kind} version")
        options = _options(group.options, waves=waves, max_parallel=max_parallel,
                           failure_threshold=failure_threshold, on_failure=on_failure,
                           approve=approve)
        _gate_needs_queue(options, kept=approve is None)
        if target.version == group.version and not force and not _diverges(session, group):
            raise InvalidInput(f"group {name!r} already runs {app.name} {group.version} on "
                               "every edge; pass --force to re-pull and restart its members")
        move = GroupMove.DEPLOY if group.state == GroupState.STOPPED else GroupMove.UPDATE
        move_group_record(session, name=name, move=move, version=target.version,
                          options=options.model_dump(mode="json"), reason=None, wave=0,
                          waves=0, flow_run_id=None)
        app_name, version = app.name, target.version
    _run(name, app_name, version, force=force, wait=wait, progress=progress)
    return group_status(name)


def set_group(
    name: str,
    *,
    waves: str | None = None,
    max_parallel: int | str | None = None,
    failure_threshold: float | str | None = None,
    on_failure: str | None = None,
    approve: bool | None = None,
    auto_update: str | None = None,
) -> dict[str, Any]:
    """Change the group's stored rollout options and auto-update level; no rollout starts.

    Only what is given changes; the next rollout (`group update`, auto-update, a reconcile)
    uses the options, a rollout under way keeps those it started with. Setting a different
    auto-update level makes it act on versions published from now on, never on one that was
    published before. Refused with nothing changed: no option given, any bad option (named).
    """
    given = {"waves": waves, "max_parallel": max_parallel,
             "failure_threshold": failure_threshold, "on_failure": on_failure,
             "approve": approve}
    if all(v is None for v in given.values()) and auto_update is None:
        raise InvalidInput("nothing to set: give rollout options (--waves, --max-parallel, "
                           "--failure-threshold, --on-failure, --approve) or --auto-update")
    level = None if auto_update is None else _auto_update(auto_update)
    with session_scope() as session:
        group = get_group(session, name=name)
        options = _options(group.options, **given)
        group.options = options.model_dump(mode="json")
        if level is not None and level.value != group.auto_update:
            group.auto_update, group.auto_update_since = level.value, utcnow()
        group.updated_at = utcnow()
        session.add(group)
    return group_status(name)


def _diverges(session: Session, group: DeploymentGroup) -> bool:
    """Some edge of the group needs a change (a member not STARTED, a newly matching edge)."""
    target, edges, members, matched_by = observe_group(session, group=group)
    plan = plan_group(target, edges, members, prune=group.prune, matched_by=matched_by)
    return plan.needs_rollout or any(a.action == "defer" for a in plan.actions)


def _run(name: str, application: str, version: str, *, force: bool, wait: bool,
         progress: Progress | None) -> None:
    from edgefleet import jobs  # Prefect: only for the commands that run a flow

    try:
        jobs.run_flow("rollout-group", {"group": name, "application": application,
                                        "version": version, "force": force},
                      wait=wait, group=name, progress=progress)
    except Exception as exc:
        _not_started(name, exc)
        raise


def _not_started(name: str, exc: Exception) -> None:
    """A rollout that could not even be submitted leaves its group HALTED with the reason,
    never DEPLOYING or UPDATING with no run behind it (which would refuse every update)."""
    with session_scope() as session:
        group = get_group(session, name=name)
        halted = group.state in {s.value for s in ROLLING} and group.flow_run_id is None
        if halted:
            move_group_record(session, name=name, move=GroupMove.HALT,
                              reason=f"the rollout did not start: {exc}")
    if halted:
        _announce_halt(name, f"not-started-{new_id()}")


def _announce_halt(name: str, occasion: str) -> None:
    """``edgefleet.group.halted`` for a halt made here rather than by the rollout's run (which
    announces its own): a halted group waits for an operator, so the channels tell one.
    Best effort, as in the flows: the halt is recorded and reported either way."""
    from edgefleet.tasks.groups import announce_group_halt  # Prefect: only on a halt

    with contextlib.suppress(Exception):
        announce_group_halt.fn(name, occasion)


def delete_group(name: str, *, force: bool = False) -> list[str]:
    """Delete the group and its member deployments (``force``: stop running ones first).
    Returns the warnings of members that could not be stopped cleanly."""
    from edgefleet.api.deployments import delete_deployment, forget_limit

    with session_scope() as session:
        group = get_group(session, name=name)
        if group.state in {s.value for s in ROLLING | HOLDING} and not force:
            raise InvalidTransition(f"group {name!r} is {group.state}: a rollout is under way; "
                                    "pass --force to delete it anyway")
        members = [d.id for d in group_members(session, group=group)]
        if not force:
            running = [d.id[:12] for d in group_members(session, group=group)
                       if d.state not in ("CREATED", "STOPPED")]
            if running:
                raise InvalidTransition(
                    f"group {name!r} has {len(running)} running member(s) "
                    f"({', '.join(running)}); pass --force to stop and delete them")
    warnings = [w for dep_id in members
                if (w := delete_deployment(dep_id, force=force)) is not None]
    with session_scope() as session:
        group = get_group(session, name=name)
        group_id, env = group.id, dict(group.env)
        session.delete(group)
    if P.owned_references(env, group_id):
        from edgefleet import parameter_secrets

        parameter_secrets.delete_values(env, group_id)  # its sensitive values go with it
    from edgefleet.tasks.limits import group_limit_name

    if (left := forget_limit(group_limit_name(name))) is not None:
        warnings.append(left)
    return warnings


def list_groups() -> list[dict[str, Any]]:
    """Every group, by name, with its counts (``group_status`` without the edges)."""
    with session_scope() as session:
        names = session.exec(select(DeploymentGroup.name).order_by(
            col(DeploymentGroup.name))).all()
    return [{k: v for k, v in group_status(n).items() if k != "edges"} for n in names]


def group_status(name: str) -> dict[str, Any]:
    """The group's target and state, its members one per edge (and the matching edges
    that have none yet), counts per member state, and the rollout under way or last."""
    with session_scope() as session:
        group = get_group(session, name=name)
        app = session.get(Application, group.application_id)
        assert app is not None
        rows = group_member_rows(session, group=group)
        counts = Counter(r["state"] or "NO DEPLOYMENT" for r in rows)
        return {
            "name": group.name,
            "application": app.name,
            "version": group.version,
            "state": group.state,
            "selector": group.selector,
            "edge_list": group.edges,
            "reason": group.reason,
            "counts": dict(sorted(counts.items())),
            "edges": rows,
            "rollout": {"wave": group.wave, "waves": group.waves,
                        "flow_run_id": group.flow_run_id},
            "options": RolloutOptions.model_validate(group.options).model_dump(mode="json"),
            "prune": group.prune,
            "auto_update": group.auto_update,
            "env": P.masked(group.env),
            "created_at": group.created_at.isoformat(),
            "updated_at": group.updated_at.isoformat(),
        }


# ------------------------------------------------------------------ the gate, pause, resume

GATE_READY_SECONDS = 30.0  # a run that has just moved its group to the gate pauses within it
RESUME_RACE_SECONDS = 3.0  # a run that saw PAUSED just before a resume pauses within it


def _gate_needs_queue(options: RolloutOptions, kept: bool = False) -> None:
    """``--approve`` needs `edgefleet up`: the run waits at the gate in its process on a worker.
    Run here, it would hold this command until someone approves from another terminal."""
    from edgefleet import jobs

    if options.approve and jobs.served_api_url() is None:
        given = ("the group's rollout options ask for an approval between waves (--approve); "
                 "pass --no-approve, or " if kept else "--approve needs `edgefleet up`: ")
        raise InvalidInput(
            f"{given}start `edgefleet up` first: a rollout that waits for an approval runs "
            "in its process on a worker (run here, it would hold this command until approved)")


def _rollout_run(name: str, flow_run_id: str | None) -> tuple[Any, str]:
    """The group's rollout flow run as Prefect sees it, and the API it was read from."""
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from edgefleet import server

    if flow_run_id is None:
        raise InvalidTransition(f"group {name!r} has no rollout run on record")
    api_url = server.flow_api_url()
    with temporary_settings({PREFECT_API_URL: api_url}), \
            get_client(sync_client=True) as client:
        try:
            return client.read_flow_run(UUID(flow_run_id)), api_url
        except ObjectNotFound:
            return None, api_url


def _state_type(run: Any) -> str | None:
    return run.state.type.value if run is not None and run.state is not None else None


def _ended(run: Any) -> bool:
    """The run is gone, or Prefect has it final: nothing will move its group any more."""
    return run is None or run.state is None or bool(run.state.is_final())


def _halt_orphan(name: str, state: GroupState, flow_run_id: str | None, seen: str | None,
                 why: str | None = None) -> InvalidTransition:
    """The group waits for a run that no longer exists, has ended, or whose process is gone
    (``why``; e.g. `edgefleet down` meanwhile): halt it with the reason, so that
    `group update` can start over."""
    why = why or (f"its rollout run {flow_run_id} is gone" if seen is None
                  else f"its rollout run {flow_run_id} has ended ({seen})")
    with session_scope() as session:
        move_group_record(session, name=name, move=GroupMove.HALT, expect=state,
                          reason=f"halted while {state.value}: {why}")
    _announce_halt(name, flow_run_id or f"orphan-{new_id()}")  # the run's id, as its flow would
    return InvalidTransition(f"group {name!r} was {state.value} but {why}: it is HALTED now; "
                             f"start over with `edgefleet group update {name}`")


def _resume_run(flow_run_id: str, api_url: str, run_input: dict[str, Any] | None) -> None:
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: api_url}), \
            get_client(sync_client=True) as client:
        result = client.resume_flow_run(UUID(flow_run_id), run_input=run_input)
    if result.status.value != "ACCEPT":
        reason = getattr(result.details, "reason", None) or result.status.value
        raise InvalidTransition(f"Prefect did not resume rollout run {flow_run_id}: {reason}")


def _silent(run: Any, api_url: str) -> str | None:
    """Why a paused served run's process is gone (its heartbeats stopped: a paused run
    still beats), or None. Resuming it would leave its group waiting for nobody. A run of
    this process's kind (no deployment) or one that never beat is taken as alive."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from edgefleet.models.records import utcnow
    from edgefleet.settings import get_settings
    from edgefleet.tasks.reconcile import _last_heartbeats

    if run.deployment_id is None or run.state is None:
        return None
    with temporary_settings({PREFECT_API_URL: api_url}):
        beats = _last_heartbeats(str(run.id), run.start_time or run.state.timestamp)
    allowed = 3 * get_settings().run_heartbeat_seconds + 10
    if beats and (utcnow() - beats[0]).total_seconds() > allowed:
        return (f"its rollout run {run.id} is paused but sent no heartbeat for more than "
                f"{allowed} s: its process is gone (was `edgefleet up` stopped?)")
    return None


def _paused_run(name: str, state: GroupState, flow_run_id: str | None, within: float
                ) -> tuple[Any, str]:
    """The group's rollout run once Prefect has it PAUSED (it pauses right after moving
    its group); a run that ended, or whose process is gone, halts the group
    (:func:`_halt_orphan`)."""
    deadline = time.monotonic() + within
    while True:
        run, api_url = _rollout_run(name, flow_run_id)
        seen = _state_type(run)
        if seen == "PAUSED":
            gone = _silent(run, api_url)
            if gone:
                raise _halt_orphan(name, state, flow_run_id, seen, gone)
            return run, api_url
        if _ended(run):
            raise _halt_orphan(name, state, flow_run_id, seen)
        if time.monotonic() > deadline:
            raise InvalidTransition(
                f"group {name!r} is {state.value} but its rollout run {flow_run_id} is "
                f"{seen}, not paused; try again in a moment (`edgefleet group status {name}`)")
        time.sleep(0.5)


def _follow(name: str, flow_run_id: str, api_url: str, since: tuple[str | None, int, int],
            progress: Progress | None) -> None:
    from edgefleet import jobs

    jobs.wait_for_group(name, flow_run_id, api_url, progress, timeout=900, since=since)


def _waiting(session: Session, name: str, state: GroupState, verb: str) -> DeploymentGroup:
    group = get_group(session, name=name)
    if group.state != state.value:
        what = {GroupState.AWAITING_APPROVAL: "waits for no approval",
                GroupState.PAUSED: "is not paused"}[state]
        raise InvalidTransition(
            f"group {name!r} is {group.state}: it {what}, there is nothing to {verb} (only a "
            f"group in {state.value} can be {verb}d; see `edgefleet group status {name}`)")
    return group


def approve_group(name: str, *, approved: bool = True, note: str | None = None,
                  wait: bool = False, progress: Progress | None = None) -> dict[str, Any]:
    """Open the approval gate a rollout waits at (AWAITING_APPROVAL): its paused run goes
    on with the next wave (or, ``approved=False``, halts the group). The run moves the
    group, as when approved from the Prefect UI. ``wait``: follow the rest of the rollout
    (up to the next gate). Refused, with nothing changed: an unknown group, a group that
    waits for no approval."""
    answer = validated(GateInput, approved=approved, note=note or "")
    with session_scope() as session:
        group = _waiting(session, name, GroupState.AWAITING_APPROVAL, "approve")
        flow_run_id = group.flow_run_id
        since = (group.state, group.wave, group.waves)
    _run, api_url = _paused_run(name, GroupState.AWAITING_APPROVAL, flow_run_id,
                                GATE_READY_SECONDS)
    assert flow_run_id is not None
    _resume_run(flow_run_id, api_url, answer.model_dump(mode="json"))
    if progress:
        progress(f"group {name}: {'approved' if approved else 'rejected'} after wave "
                 f"{since[1]}/{since[2]}")
    if wait:
        _follow(name, flow_run_id, api_url, since, progress)
    return group_status(name)


def pause_group(name: str) -> dict[str, Any]:
    """Pause a rollout under way (DEPLOYING, UPDATING → PAUSED): its run stops before its
    next batch of edges (those under way finish) and pauses itself until resumed."""
    with session_scope() as session:
        group = get_group(session, name=name)
        if group.state not in {s.value for s in ROLLING}:
            raise InvalidTransition(
                f"group {name!r} is {group.state}: no rollout of it is under way, there is "
                f"nothing to pause (only a DEPLOYING or UPDATING group can be paused)")
        rolling = GroupState(group.state)
        move_group_record(session, name=name, move=GroupMove.PAUSE, expect=rolling,
                          reason=pause_reason(rolling, name))
    return group_status(name)


def resume_group(name: str, *, wait: bool = False, progress: Progress | None = None
                 ) -> dict[str, Any]:
    """Let a paused rollout go on (PAUSED → DEPLOYING or UPDATING, as it was). A run that
    has paused itself is resumed through Prefect and moves its group back; one that has
    not reached its pause yet (or not started) just goes on. Refused: a group that is not
    PAUSED; a group whose run has ended is halted (:func:`_halt_orphan`)."""
    with session_scope() as session:
        group = _waiting(session, name, GroupState.PAUSED, "resume")
        flow_run_id, reason = group.flow_run_id, group.reason
        since = (group.state, group.wave, group.waves)
    run, api_url = _rollout_run(name, flow_run_id) if flow_run_id else (None, None)
    seen = _state_type(run)
    if flow_run_id is not None and _ended(run):
        raise _halt_orphan(name, GroupState.PAUSED, flow_run_id, seen)
    if flow_run_id is not None and api_url is not None and seen == "PAUSED":
        gone = _silent(run, api_url)
        if gone:
            raise _halt_orphan(name, GroupState.PAUSED, flow_run_id, seen, gone)
        _resume_run(flow_run_id, api_url, None)
    else:  # not paused yet (finishing a batch, or not started): it sees the group go on
        with session_scope() as session:
            move_group_record(session, name=name, move=GroupMove.RESUME,
                              expect=GroupState.PAUSED, to=paused_from(reason), reason=None)
        deadline = time.monotonic() + RESUME_RACE_SECONDS
        while time.monotonic() < deadline:  # it may have paused itself meanwhile
            with session_scope() as session:
                flow_run_id = get_group(session, name=name).flow_run_id
            if flow_run_id is not None:
                run, api_url = _rollout_run(name, flow_run_id)
                if _state_type(run) == "PAUSED":
                    _resume_run(flow_run_id, api_url, None)
                    break
            time.sleep(0.5)
    if wait and flow_run_id is not None and api_url is not None:
        _follow(name, flow_run_id, api_url, since, progress)
    return group_status(name)


def _relaunch_hint(group: DeploymentGroup) -> str:
    if group.state == GroupState.STOPPED:
        return (f" and is STOPPED: launch it again with `edgefleet group update {group.name}`"
                f" (or delete it first: `edgefleet group delete {group.name}`)")
    return ""


def _plan_rows(plan: GroupPlan) -> list[dict[str, Any]]:
    return [{"edge": a.edge, "action": a.action, "cause": a.cause,
             "deployment_id": a.deployment_id} for a in plan.actions]


def reconcile_group(name: str, *, wait: bool = True, progress: Progress | None = None
                    ) -> dict[str, Any]:
    """Plan the group again and run what its plan says (flow `rollout-group`): edges that
    newly match join, members off the target or not STARTED are updated (a failed one is
    tried again), members that no longer match leave when the group has ``--prune``; edges
    not ONLINE are deferred. A plan with nothing to run changes nothing, but for a state
    the members no longer say, summed up again. The status it returns carries ``plan``: one
    row per edge with its action and cause.

    Refused, with nothing changed: a STOPPED group (`group update` launches it again) and a
    group whose rollout is under way.
    """
    with session_scope() as session:
        group = get_group(session, name=name)
        state = GroupState(group.state)
        if state is GroupState.STOPPED:
            raise InvalidTransition(f"group {name!r} is STOPPED: nothing is reconciled until "
                                    f"it runs again (`edgefleet group update {name}`)")
        if state not in AT_REST:
            raise InvalidTransition(
                f"group {name!r} is {state.value}: a rollout of it is under way (see "
                f"`edgefleet group status {name}`); reconcile it once that one has ended")
        target, edges, members, matched_by = observe_group(session, group=group)
        plan = plan_group(target, edges, members, prune=group.prune, matched_by=matched_by)
        # nothing to change, yet a state its members no longer say (PARTIAL, say, while
        # its deferred member was brought up by hand): a rollout of nothing sums it up
        run = plan.needs_rollout or summarize(plan).state is not state
        if run:
            move_group_record(session, name=name, move=GroupMove.UPDATE, expect=state,
                              reason=None, wave=0, waves=0, flow_run_id=None)
        application, version = target.application, group.version
    if run:
        _run(name, application, version, force=False, wait=wait, progress=progress)
    return {**group_status(name), "plan": _plan_rows(plan)}


def stop_group(name: str, *, wait: bool = True, progress: Progress | None = None
               ) -> dict[str, Any]:
    """Stop every member of the group (flow `stop-group`, ``max_parallel`` at a time): the
    group is STOPPED at once and its members follow; a member whose edge is not ONLINE is
    stopped once the edge is back. `group update` launches it again.

    A rollout that waits (AWAITING_APPROVAL or PAUSED) ends here: its paused run is woken
    (a gate answered "no") and, finding its group STOPPED, touches no further edge.
    Refused, with nothing changed: a group already STOPPED, and one whose rollout is at work
    (DEPLOYING or UPDATING: `group pause` it, or stop it once that one has ended).
    """
    with session_scope() as session:
        group = get_group(session, name=name)
        state = GroupState(group.state)
        if state is not GroupState.STOPPED and state not in AT_REST | HOLDING:
            raise InvalidTransition(
                f"group {name!r} is {state.value}: a rollout of it is at work (see "
                f"`edgefleet group status {name}`); `edgefleet group pause {name}` first, or "
                "stop it once that rollout has ended")
        flow_run_id = group.flow_run_id
        move_group_record(session, name=name, move=GroupMove.STOP, expect=state,
                          reason="stopped; its members are being stopped")
    if state in HOLDING and flow_run_id is not None:
        _wake_stopped(name, state, flow_run_id, progress)
    _run_stop(name, wait=wait, progress=progress)
    return group_status(name)


def _wake_stopped(name: str, state: GroupState, flow_run_id: str,
                  progress: Progress | None) -> None:
    """Resume the paused rollout run of a group just STOPPED, so that it ends now rather
    than at its pause's timeout (holding a slot of the served runner until then). A run not
    paused (yet) sees the STOPPED group at its next check; one that is gone needs nothing."""
    run, api_url = _rollout_run(name, flow_run_id)
    if _state_type(run) != "PAUSED":
        return
    answer = (validated(GateInput, approved=False, note="the group was stopped")
              .model_dump(mode="json") if state is GroupState.AWAITING_APPROVAL else None)
    try:
        _resume_run(flow_run_id, api_url, answer)
    except InvalidTransition as exc:  # it ended meanwhile: nothing waits any more
        if progress:
            progress(f"group {name}: {exc}")
        return
    if progress:
        progress(f"group {name}: its waiting rollout run {flow_run_id} ends")


def _run_stop(name: str, *, wait: bool, progress: Progress | None) -> None:
    """Flow `stop-group` as a job. Should it not even start, the group stays STOPPED and the
    served sweep stops its members (a STOPPED group whose members run has work)."""
    from edgefleet import jobs  # Prefect: only for the commands that run a flow

    jobs.run_flow("stop-group", {"group": name}, wait=wait, group=name, progress=progress)
