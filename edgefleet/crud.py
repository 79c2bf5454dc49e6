"""Records access shared by the API, the tasks and the notification rules.

Functions over edgefleet's records, keyword-only after the session, which the caller owns
(opens with ``edgefleet.db.session_scope`` and commits): a task and an API call that both
need "the version V of application A" read it the same way, and neither imports the other.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, cast

import semver
from sqlalchemy import CursorResult, delete, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from edgefleet import parameters as P
from edgefleet.errors import InvalidInput, InvalidTransition, NotFound, StateConflict
from edgefleet.group_plan import GroupEdge, GroupMember, GroupTarget, MatchedBy
from edgefleet.metrics import edge_availability
from edgefleet.models.groups import (
    AutoUpdate,
    AutoUpdateStep,
    GroupMove,
    GroupState,
    auto_update_admits,
    group_sources,
    move_group,
)
from edgefleet.models.parameters import Parameter
from edgefleet.models.policies import UpdatePolicy
from edgefleet.models.records import (
    Application,
    ApplicationVersion,
    AppliedSpec,
    ContainerStatus,
    Deployment,
    DeploymentGroup,
    Edge,
    LogCursor,
    Notification,
    Redelivery,
    utcnow,
)
from edgefleet.models.states import DeploymentState
from edgefleet.selectors import Selector, matches, parse_selector
from edgefleet.settings import get_settings

if TYPE_CHECKING:  # the image rules are only needed by running_images (not by a listing)
    from edgefleet.image_updates import RunningImage
    from edgefleet.notice_events import Notice


def get_application(session: Session, *, name: str) -> Application:
    app = session.exec(select(Application).where(Application.name == name)).first()
    if app is None:
        raise NotFound(f"no application named {name!r} (see `edgefleet app list`)")
    return app


def get_version(session: Session, *, application: Application, version: str) -> ApplicationVersion:
    row = session.exec(
        select(ApplicationVersion).where(
            ApplicationVersion.application_id == application.id,
            ApplicationVersion.version == version,
        )
    ).first()
    if row is None:
        known = ", ".join(v.version for v in versions_of(session, application=application))
        raise NotFound(
            f"application {application.name!r} has no version {version!r} (known: {known or '-'})"
        )
    return row


def versions_of(session: Session, *, application: Application) -> list[ApplicationVersion]:
    rows = session.exec(
        select(ApplicationVersion).where(ApplicationVersion.application_id == application.id)
    ).all()
    return sorted(rows, key=lambda v: semver.Version.parse(v.version))


def latest_published(session: Session, *, application: Application) -> ApplicationVersion | None:
    published = [v for v in versions_of(session, application=application) if v.published]
    return published[-1] if published else None


def get_edge(session: Session, *, name: str, for_update: bool = False) -> Edge:
    """The edge named ``name``; with ``for_update`` its row stays locked until the session
    ends, so that a change read from it and written back (labels merged) never drops
    another's change made meanwhile. The lock is a no-op UPDATE: it takes SQLite's write lock
    (where ``SELECT ... FOR UPDATE`` does nothing) and PostgreSQL's row lock alike."""
    if for_update:
        session.exec(update(Edge).where(col(Edge.name) == name)
                     .values(name=Edge.name).execution_options(synchronize_session=False))
    edge = session.exec(select(Edge).where(Edge.name == name)).first()
    if edge is None:
        raise NotFound(f"no edge named {name!r} (see `edgefleet edge list`)")
    return edge


def select_edges(session: Session, *, selector: Selector | None = None) -> list[Edge]:
    """Edges by name; with ``selector``, only those whose labels match it.

    The one place edges are picked by label: matched here in Python, after loading them
    (cheap for thousands of edges); the place to move into SQL when a fleet outgrows that.
    """
    edges = session.exec(select(Edge).order_by(col(Edge.name))).all()
    if selector is None:
        return list(edges)
    return [edge for edge in edges if matches(selector, edge.labels)]


@dataclass(frozen=True)
class LaunchCheck:
    """What a launch would deploy, as checked: nothing of it is recorded yet."""

    application: Application
    version: ApplicationVersion
    edges: list[Edge]
    params: list[Parameter]
    missing: list[Parameter]  # required, not set: asked for (only with ``ask_missing``)


def check_launch(session: Session, *, application: str, edges: Sequence[str] = (),
                 selector: Selector | None = None, version: str | None = None,
                 env: dict[str, str], allow_unpublished: bool = False,
                 ask_missing: bool = False) -> LaunchCheck:
    """The refusals of `edgefleet deploy` and flow `launch-application`, before anything is
    recorded: an unknown application or edge, no edge matched, no published version (the
    default is the newest published), an unpublished one (unless allowed), and ``env``
    against the version's parameters (``parameters.check_environment``).

    With ``ask_missing`` a required parameter that is not set is returned in ``missing``
    rather than refused: the launch flow asks for it, the CLI and the API never do.
    """
    app = get_application(session, name=application)
    targets = [get_edge(session, name=name) for name in edges]
    if selector is not None:
        targets = select_edges(session, selector=selector)
        if not targets:
            raise InvalidInput(f"no edge matches selector {str(selector)!r} (see `edgefleet "
                               f"edge list --selector {str(selector)!r}`)")
    if version is None:
        row = latest_published(session, application=app)
        if row is None:
            raise InvalidInput(
                f"application {app.name!r} has no published version: publish one "
                f"(`edgefleet app publish {app.name} V`) or pass --version"
            )
    else:
        row = get_version(session, application=app, version=version)
        if not row.published and not allow_unpublished:
            raise InvalidInput(
                f"version {row.version} of {app.name!r} is not published: publish it or "
                "pass --allow-unpublished"
            )
    params = P.of_version(row.parameters, kind=row.kind, text=row.compose)
    missing = (P.missing_required(params, version_env=row.env, env=env) if ask_missing
               else [])
    asked = {p.name: P.PLACEHOLDER for p in missing}
    P.check_environment(params, kind=row.kind, version_env=row.env, env={**env, **asked},
                        label=f"{app.name} {row.version}")
    return LaunchCheck(application=app, version=row, edges=targets, params=params,
                       missing=missing)


def containers_of(session: Session, *, deployment_id: str) -> list[ContainerStatus]:
    """The deployment's recorded per-container status, by service."""
    return list(session.exec(select(ContainerStatus).where(
        ContainerStatus.deployment_id == deployment_id).order_by(ContainerStatus.service)).all())


def running_images(session: Session) -> list[RunningImage]:
    """Images of every STARTED deployment, from the recorded per-container status (those
    pinned by digest left out: they cannot move)."""
    from edgefleet.image_updates import RunningImage, is_checkable

    rows = session.exec(
        select(ContainerStatus, Deployment, Application, ApplicationVersion)
        .where(ContainerStatus.deployment_id == Deployment.id,
               Deployment.application_id == Application.id,
               Deployment.version_id == ApplicationVersion.id,
               Deployment.state == "STARTED")
    ).all()
    return [RunningImage(deployment_id=dep.id, application=app.name, version=ver.version,
                         service=cs.service, ref=cs.image, digest=cs.digest,
                         policy=UpdatePolicy.model_validate(dep.policy),
                         registry_secret=ver.registry_secret)
            for cs, dep, app, ver in rows if is_checkable(cs.image)]


def ui_link(deployment: Deployment) -> str:
    """Where to look: the Prefect UI's page of the deployment's last flow run."""
    base = f"http://127.0.0.1:{get_settings().prefect_port}"
    if deployment.flow_run_id:
        return f"{base}/runs/flow-run/{deployment.flow_run_id}"
    return f"{base}/deployments"


def notify_once(session: Session, *, deployment: Deployment, application: str,
                from_version: str, to_version: str, reason: str, key: str, command: str,
                message: str) -> Notification | None:
    """Add the notification unless the same (deployment, reason, key) exists; None then."""
    exists = session.exec(select(Notification).where(
        Notification.deployment_id == deployment.id, Notification.reason == reason,
        Notification.key == key)).first()
    if exists is not None:
        return None
    row = Notification(deployment_id=deployment.id, application=application,
                       from_version=from_version, to_version=to_version, reason=reason, key=key,
                       link=ui_link(deployment), command=command, message=message)
    try:
        with session.begin_nested():
            session.add(row)
    except IntegrityError:  # a concurrent run added it first
        return None
    return row


def unannounced_notices(session: Session, *, since: datetime, until: datetime, limit: int
                        ) -> list[tuple[int, Notice]]:
    """The notices recorded between ``since`` and ``until`` (newest first, at most
    ``limit``) that were never announced again, each with its row id and event id."""
    from edgefleet.notice_events import notice_of

    rows = session.exec(select(Notification, Edge.name).where(
        col(Notification.created_at) >= since, col(Notification.created_at) <= until,
        col(Notification.announced_again_at).is_(None),
        Notification.deployment_id == Deployment.id,
        Deployment.edge_id == Edge.id).order_by(col(Notification.id).desc()).limit(limit)).all()
    return [(row.id, notice_of(row, edge)) for row, edge in rows if row.id is not None]


def claim_announcement(session: Session, *, notification_id: int, at: datetime) -> bool:
    """Mark the notice as announced again unless a concurrent reconcile did (compare and
    set): only the caller that gets True sends its event."""
    statement = (update(Notification)
                 .where(col(Notification.id) == notification_id,
                        col(Notification.announced_again_at).is_(None))
                 .values(announced_again_at=at)
                 .execution_options(synchronize_session=False))
    result = cast(CursorResult[Any], session.exec(statement))  # type: ignore[call-overload]
    return result.rowcount == 1


def claim_redelivery(session: Session, *, invocation: str, channel: str, event_id: str,
                     reason: str, stale_before: datetime | None = None) -> bool:
    """Record that a failed delivery is sent again; False when another run claimed it. A
    claim made before ``stale_before`` that never ended (its run died mid-send) is taken
    over, compare-and-set so one run wins: a crash must not drop the delivery for good."""
    if session.get(Redelivery, invocation) is not None:
        if stale_before is None:
            return False
        statement = (update(Redelivery)
                     .where(col(Redelivery.invocation) == invocation,
                            col(Redelivery.outcome).is_(None),
                            col(Redelivery.created_at) < stale_before)
                     .values(created_at=utcnow())
                     .execution_options(synchronize_session=False))
        result = cast(CursorResult[Any], session.exec(statement))  # type: ignore[call-overload]
        return result.rowcount == 1
    try:
        with session.begin_nested():
            session.add(Redelivery(invocation=invocation, channel=channel, event_id=event_id,
                                   reason=reason[:1000]))
    except IntegrityError:  # a concurrent reconcile claimed it first
        return False
    return True


def end_redelivery(session: Session, *, invocation: str, outcome: str) -> None:
    row = session.get(Redelivery, invocation)
    if row is not None:
        row.outcome = outcome[:1000]
        session.add(row)


def redeliveries(session: Session, *, channel: str) -> list[Redelivery]:
    """A channel's deliveries sent again, newest first."""
    return list(session.exec(select(Redelivery).where(Redelivery.channel == channel)
                             .order_by(col(Redelivery.created_at).desc())).all())


def sent_again(session: Session, *, event_ids: Sequence[str]) -> list[tuple[str, str]]:
    """(notice event id, channel) of every failed delivery of these notices that edgefleet
    sent again successfully: the automation's own events show only the failure."""
    if not event_ids:
        return []
    rows = session.exec(select(Redelivery.event_id, Redelivery.channel).where(
        col(Redelivery.event_id).in_(list(event_ids)), Redelivery.outcome == "sent")).all()
    return [(event_id, channel) for event_id, channel in rows]


# ------------------------------------------------------------------ deployment groups


def get_group(session: Session, *, name: str) -> DeploymentGroup:
    group = session.exec(select(DeploymentGroup).where(DeploymentGroup.name == name)).first()
    if group is None:
        raise NotFound(f"no deployment group named {name!r} (see `edgefleet group list`)")
    return group


def group_members(session: Session, *, group: DeploymentGroup) -> list[Deployment]:
    """The group's deployments, oldest first."""
    return list(session.exec(select(Deployment).where(Deployment.group_id == group.id)
                             .order_by(col(Deployment.created_at))).all())


def env_hash(env: dict[str, str]) -> str:
    """What the plan compares besides the version: the environment a member runs with."""
    return hashlib.sha256(json.dumps(env, sort_keys=True).encode()).hexdigest()[:16]


def group_targets(session: Session, *, group: DeploymentGroup) -> list[Edge]:
    """The edges the group's list names (those still registered) or its selector matches."""
    if group.selector is not None:
        return select_edges(session, selector=parse_selector(group.selector))
    named = set(group.edges or [])
    return [e for e in select_edges(session) if e.name in named]


def observe_group(session: Session, *, group: DeploymentGroup, now: datetime | None = None
                  ) -> tuple[GroupTarget, list[GroupEdge], list[GroupMember], MatchedBy]:
    """The inputs of ``group_plan.plan_group`` as the records hold them now: the target,
    the matching edges (and those of members that no longer match) with their
    availability by the heartbeat rule, and the members."""
    app = session.get(Application, group.application_id)
    assert app is not None
    target = GroupTarget(application=app.name, version=group.version,
                         spec_hash=env_hash(group.env))
    now = now or datetime.now(UTC)
    matching = {e.id: e for e in group_targets(session, group=group)}
    rows = group_members(session, group=group)
    edges: dict[int, GroupEdge] = {}
    members: list[GroupMember] = []
    for dep in rows:
        version = session.get(ApplicationVersion, dep.version_id)
        edge = session.get(Edge, dep.edge_id)
        assert version is not None and edge is not None and edge.id is not None
        members.append(GroupMember(edge=edge.name, deployment_id=dep.id,
                                   version=version.version, state=DeploymentState(dep.state),
                                   spec_hash=env_hash(dep.env)))
        if edge.id not in matching:
            edges[edge.id] = _group_edge(edge, now, matches=False)
    for edge_id, edge in matching.items():
        assert edge_id is not None
        edges[edge_id] = _group_edge(edge, now, matches=True)
    matched_by: MatchedBy = "selector" if group.selector is not None else "list"
    return target, list(edges.values()), members, matched_by


def _group_edge(edge: Edge, now: datetime, *, matches: bool) -> GroupEdge:
    return GroupEdge(name=edge.name, availability=edge_availability(edge, now),
                     labels=dict(edge.labels), matches=matches)


def add_member(session: Session, *, group: DeploymentGroup, edge: Edge) -> Deployment:
    """A CREATED deployment of the group's target on ``edge``, a member of the group."""
    app = session.get(Application, group.application_id)
    assert app is not None and edge.id is not None and app.id is not None
    version = get_version(session, application=app, version=group.version)
    assert version.id is not None
    dep = Deployment(application_id=app.id, version_id=version.id, edge_id=edge.id,
                     env=dict(group.env), group_id=group.id,
                     policy=UpdatePolicy().model_dump(mode="json"))
    session.add(dep)
    session.flush()
    return dep


def move_group_record(session: Session, *, name: str, move: GroupMove,
                      to: GroupState | None = None, expect: GroupState | None = None,
                      **values: Any) -> GroupState:
    """One compare-and-set of a group's state by the table of ``models.groups``
    (``UPDATE … WHERE name = … AND state IN (…)``), with other columns set alongside; of two
    runs making a move, one wins and the other gets StateConflict."""
    group = get_group(session, name=name)
    try:
        allowed = group_sources(move, expect)
        target = move_group(group.state, move, to=to)
    except InvalidTransition as exc:
        raise InvalidTransition(f"group {name!r}: {exc}") from exc
    statement = (update(DeploymentGroup)
                 .where(col(DeploymentGroup.name) == name,
                        col(DeploymentGroup.state).in_(sorted(s.value for s in allowed)))
                 .values(state=target.value, updated_at=utcnow(), **values)
                 .execution_options(synchronize_session=False))
    result = cast(CursorResult[Any], session.exec(statement))  # type: ignore[call-overload]
    if result.rowcount != 1:
        session.refresh(group)
        raise StateConflict(f"group {name!r} is {group.state} now: another run moved it",
                            found=group.state, action=move.value)
    return target


def delete_deployment_rows(session: Session, *, deployment_id: str,
                           states: Iterable[str]) -> None:
    """Delete a deployment and the rows that hang off it, only while it is in ``states``
    (compare-and-set: a run that started it meanwhile keeps it, and the session's rollback
    keeps its rows too); StateConflict names the state found."""
    for model in (ContainerStatus, LogCursor, Notification, AppliedSpec):
        session.exec(delete(model).where(  # type: ignore[call-overload]
            col(model.deployment_id) == deployment_id))
    gone = cast(CursorResult[Any], session.exec(delete(Deployment).where(  # type: ignore[call-overload]
        col(Deployment.id) == deployment_id, col(Deployment.state).in_(sorted(states)))))
    if gone.rowcount != 1:
        found = session.get(Deployment, deployment_id)
        state = found.state if found is not None else "gone"
        raise StateConflict(f"deployment {deployment_id[:12]} is {state} now: another run "
                            "moved it; nothing was deleted", found=state, action="delete")
def group_member_rows(session: Session, *, group: DeploymentGroup) -> list[dict[str, Any]]:
    """One row per member (and per matching edge with none yet), by edge: what `group
    status` and the group's table artifact show."""
    rows: list[dict[str, Any]] = []
    seen: set[int] = set()
    for dep in group_members(session, group=group):
        version = session.get(ApplicationVersion, dep.version_id)
        edge = session.get(Edge, dep.edge_id)
        assert version is not None and edge is not None and edge.id is not None
        seen.add(edge.id)
        rows.append({"edge": edge.name, "deployment_id": dep.id,
                     "version": version.version, "state": dep.state,
                     "last_error": dep.last_error})
    for edge in group_targets(session, group=group):
        if edge.id not in seen:
            rows.append({"edge": edge.name, "deployment_id": None, "version": None,
                         "state": None, "last_error": None})
    rows.sort(key=lambda r: (r["edge"], r["deployment_id"] or ""))
    return rows


def auto_updating_groups(session: Session, *, application: str | None = None) -> list[str]:
    """Names of the groups whose auto-update is on (of ``application`` only, if given)."""
    query = select(DeploymentGroup).where(col(DeploymentGroup.auto_update) != "off")
    if application is not None:
        query = query.where(DeploymentGroup.application_id == get_application(
            session, name=application).id)
    return sorted(g.name for g in session.exec(query).all())


def claim_auto_update(session: Session, *, name: str) -> AutoUpdateStep:
    """Move group ``name`` to UPDATING towards the newest version its auto-update admits
    among those published since ``auto_update_since`` (compare-and-set from the state it
    was read in: of two runs claiming one group, one wins, so one rollout at a time).

    Not claimed, with the reason: nothing new admitted; a rollout under way (looked at again
    once it ends); HALTED (waits for an operator); a version of another kind. A claim moves
    ``auto_update_since`` to the claimed version's publication, so a version an auto-update
    tried (and maybe halted on) is never tried again by itself.
    """
    group = get_group(session, name=name)
    app = session.get(Application, group.application_id)
    assert app is not None
    level = AutoUpdate(group.auto_update)
    step = AutoUpdateStep(group=group.name, application=app.name, from_version=group.version,
                          reason=f"auto-update is {level.value}")
    if level is AutoUpdate.OFF:
        return step
    since = group.auto_update_since or group.created_at
    fresh = [v for v in versions_of(session, application=app)
             if v.published and v.published_at is not None and v.published_at > since]
    admitted = [v for v in fresh if auto_update_admits(level, group.version, v.version)[0]]
    if not admitted:
        newest = fresh[-1].version if fresh else None
        why = (auto_update_admits(level, group.version, newest)[1] if newest
               else f"nothing published since {since.isoformat(timespec='seconds')}")
        return step.model_copy(update={"to_version": newest, "reason": why})
    target = admitted[-1]
    step = step.model_copy(update={"to_version": target.version})
    state = GroupState(group.state)
    if state is GroupState.HALTED:
        return step.model_copy(update={"reason": f"{target.version} waits: the group is "
                                       "HALTED, for an operator (`edgefleet group update`)"})
    if state not in (GroupState.STARTED, GroupState.PARTIAL):
        return step.model_copy(update={"reason": f"{target.version} waits: the group is "
                                       f"{state.value}; looked at again once that ends"})
    current = get_version(session, application=app, version=group.version)
    if target.kind != current.kind:
        return step.model_copy(update={"reason": f"{target.version} is a {target.kind} "
                                       f"version, the group runs {current.kind}"})
    reason = f"auto-update {level.value}: {group.version} → {target.version}"
    try:
        move_group_record(session, name=name, move=GroupMove.UPDATE, expect=state,
                          version=target.version, reason=reason, wave=0, waves=0,
                          flow_run_id=None,
                          auto_update_since=max(v.published_at for v in admitted
                                                if v.published_at is not None))
    except (StateConflict, InvalidTransition) as exc:
        return step.model_copy(update={"reason": f"{target.version} waits: {exc}"})
    return step.model_copy(update={"claimed": True, "reason": reason})
