"""Deployment groups: one application on a fleet of edges, rolled out in waves.

``create_group`` records the group and one CREATED member deployment per target edge, then
runs flow `rollout-group` (as a job); ``update_group`` moves a group at rest to UPDATING with
a new target and runs it again. Every bad request is refused before anything is recorded.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

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
from edgefleet.errors import AlreadyExists, InvalidInput, InvalidTransition
from edgefleet.group_plan import plan_group
from edgefleet.models.groups import (
    NEW_GROUP_STATE,
    ROLLING,
    AutoUpdate,
    GroupMove,
    RolloutOptions,
    parse_auto_update,
)
from edgefleet.models.inputs import DeploymentCreate, check_name, check_semver
from edgefleet.models.records import (
    Application,
    ApplicationVersion,
    DeploymentGroup,
    Edge,
    utcnow,
)
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
    (off, patch, minor, major: see ``set_group``), an existing group.
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
                       failure_threshold=failure_threshold, on_failure=on_failure)
    level = _auto_update(auto_update)
    spec = validated(DeploymentCreate, application=application, edge="group",
                     version=version, env=env or {})
    with session_scope() as session:
        if session.exec(select(DeploymentGroup).where(DeploymentGroup.name == name)).first():
            raise AlreadyExists(f"a deployment group named {name!r} already exists")
        app = get_application(session, name=spec.application)
        row = _version(session, app, spec.version)
        params = P.of_version(row.parameters, kind=row.kind, text=row.compose)
        P.check_environment(params, kind=row.kind, version_env=row.env, env=spec.env,
                            label=f"{app.name} {row.version}")
        if P.sensitive_names(params):
            raise InvalidInput(f"{app.name} {row.version} has sensitive parameters "
                               f"({', '.join(sorted(P.sensitive_names(params)))}): groups do "
                               "not keep secrets yet; deploy it per edge")
        targets = _targets(session, listed, selector)
        assert app.id is not None
        group = DeploymentGroup(name=name, application_id=app.id, version=row.version,
                                edges=listed, selector=selector, env=dict(spec.env),
                                options=options.model_dump(mode="json"), prune=prune,
                                state=NEW_GROUP_STATE.value, auto_update=level.value,
                                auto_update_since=utcnow())
        session.add(group)
        try:
            session.flush()
        except IntegrityError as exc:
            raise AlreadyExists(f"a deployment group named {name!r} already exists") from exc
        for edge in targets:
            add_member(session, group=group, edge=edge)
        app_name, target = app.name, row.version
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
    wait: bool = True,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Roll the group out to ``to`` (default: the newest published version, never older
    than its target); the rollout options given here override the group's for this rollout
    and are kept. Refused, with nothing changed: a rollout of the group under way, an
    unknown or unpublished version, a change of application kind, and the version the
    group already targets unless ``force`` (which updates the members already on it too).
    """
    with session_scope() as session:
        group = get_group(session, name=name)
        if group.state in {s.value for s in ROLLING}:
            raise InvalidTransition(
                f"group {name!r} is {group.state}: a rollout of it is under way (see "
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
                           failure_threshold=failure_threshold, on_failure=on_failure)
        if target.version == group.version and not force and not _diverges(session, group):
            raise InvalidInput(f"group {name!r} already runs {app.name} {group.version} on "
                               "every edge; pass --force to re-pull and restart its members")
        move_group_record(session, name=name, move=GroupMove.UPDATE, version=target.version,
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
        if group.state in {s.value for s in ROLLING} and group.flow_run_id is None:
            move_group_record(session, name=name, move=GroupMove.HALT,
                              reason=f"the rollout did not start: {exc}")


def delete_group(name: str, *, force: bool = False) -> list[str]:
    """Delete the group and its member deployments (``force``: stop running ones first).
    Returns the warnings of members that could not be stopped cleanly."""
    from edgefleet.api.deployments import delete_deployment

    with session_scope() as session:
        group = get_group(session, name=name)
        if group.state in {s.value for s in ROLLING} and not force:
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
        session.delete(get_group(session, name=name))
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
