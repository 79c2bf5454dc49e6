"""Tasks that read or write edgefleet's own records (state moves, applied specs, container
status).

A state change is one compare-and-set: ``UPDATE deployment SET state = … WHERE id = … AND
state IN (…)``. Two runs can never both move a deployment; the loser gets StateConflict.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, cast

from prefect import runtime, task
from prefect.cache_policies import NONE
from sqlalchemy import CursorResult, update
from sqlmodel import Session, col, delete, select

from edgefleet.crud import get_version, notify_once
from edgefleet.db import session_scope
from edgefleet.errors import InvalidTransition, NotFound, StateConflict
from edgefleet.events import emit_notice
from edgefleet.labels import project_name
from edgefleet.models.connections import connection_of
from edgefleet.models.inputs import AppKind
from edgefleet.models.plans import DeployPlan, ObservedContainer, RenderedSpec
from edgefleet.models.records import (
    Application,
    ApplicationVersion,
    AppliedSpec,
    ContainerStatus,
    Deployment,
    Edge,
    utcnow,
)
from edgefleet.models.states import (
    TRANSITIONS,
    Action,
    DeploymentState,
    IllegalTransition,
    refusal,
    sources,
)
from edgefleet.notice_events import notice_of
from edgefleet.parameters import defaults, of_version
from edgefleet.tasks.retry import unless_final


def load_deployment(session, deployment_id: str) -> Deployment:  # type: ignore[no-untyped-def]
    row = session.get(Deployment, deployment_id)
    if row is None:
        raise NotFound(f"no deployment {deployment_id!r} (see `edgefleet deployments`)")
    return row


def current_state(deployment_id: str) -> str:
    with session_scope() as session:
        return load_deployment(session, deployment_id).state


@task(name="load-plan", task_run_name="load plan of {deployment_id}", retries=2,
      retry_delay_seconds=1, cache_policy=NONE, retry_condition_fn=unless_final)
def load_plan(deployment_id: str, version: str | None = None) -> DeployPlan:
    """Resolve edge, version (the deployment's, or ``version`` of the same application) and
    environment (version defaults, then the deployment's overrides)."""
    with session_scope() as session:
        dep = load_deployment(session, deployment_id)
        app = session.get(Application, dep.application_id)
        assert app is not None
        if version is None:
            row = session.get(ApplicationVersion, dep.version_id)
        else:
            row = get_version(session, application=app, version=version)
        version_row = row
        edge = session.get(Edge, dep.edge_id)
        assert version_row is not None and edge is not None
        return DeployPlan(
            deployment_id=dep.id,
            application=app.name,
            version=version_row.version,
            kind=AppKind(version_row.kind),
            edge=connection_of(edge),
            project=project_name(dep.id),
            image=version_row.image,
            ports=list(version_row.ports),
            compose=version_row.compose,
            files=dict(version_row.files or {}),
            env={**defaults(of_version(version_row.parameters, kind=version_row.kind,
                                       text=version_row.compose)),
                 **version_row.env, **dep.env},
            registry_secret=version_row.registry_secret,
            allow_privileged=version_row.allow_privileged,
            privileges=list(version_row.privileges),
            applied=_spec_of(session, dep.spec_id),
        )


@task(name="move-state", retries=2, retry_delay_seconds=1, cache_policy=NONE,
      retry_condition_fn=unless_final,
      task_run_name="{action.value} {deployment_id}")
def move_state(
    deployment_id: str, action: Action, error: str | None = None, flow_run_id: str | None = None,
    expect: DeploymentState | None = None, held_by: str | None = None,
) -> str:
    """Apply one legal transition as a compare-and-set; the last error is kept on ERROR and
    cleared on success. ``expect``: only from this state (the one this run set);
    ``held_by``: only while this flow run is the one recorded as moving it."""
    with session_scope() as session:
        return compare_and_set(session, deployment_id, action, error=error,
                               flow_run_id=flow_run_id, expect=expect, held_by=held_by).value


ENDS_OF_A_RUN = frozenset({Action.FAIL, Action.STARTED, Action.UPDATED, Action.STOPPED})


def compare_and_set(
    session: Session, deployment_id: str, action: Action, *, error: str | None = None,
    flow_run_id: str | None = None, expect: DeploymentState | None = None,
    held_by: str | None = None,
) -> DeploymentState:
    """One ``UPDATE … WHERE id = … AND state IN (the states action may start from)``.

    The statement is the first of its transaction, so the database decides alone: of two
    sessions trying the same move exactly one changes a row; the other raises StateConflict
    naming the state it found. The caller owns the session (and its commit).
    """
    try:
        allowed = sources(action, expect)
    except IllegalTransition as exc:
        raise InvalidTransition(str(exc)) from exc
    target = TRANSITIONS[action][1]
    values: dict[str, Any] = {"state": target.value, "updated_at": utcnow(),
                              "degraded": None}  # telemetry judges the new state next sample
    if action in ENDS_OF_A_RUN:
        values["last_error"] = error
    if flow_run_id:
        values["flow_run_id"] = flow_run_id
    where = [col(Deployment.id) == deployment_id,
             col(Deployment.state).in_(sorted(s.value for s in allowed))]
    if held_by is not None:
        where.append(col(Deployment.flow_run_id) == held_by)
    statement = (update(Deployment).where(*where)
                 .values(**values).execution_options(synchronize_session=False))
    result = cast(CursorResult[Any], session.exec(statement))  # type: ignore[call-overload]
    if result.rowcount == 1:
        return target
    row = session.exec(select(Deployment.state, Deployment.flow_run_id)
                       .where(Deployment.id == deployment_id)).first()
    if row is None:
        raise NotFound(f"no deployment {deployment_id!r} (see `edgefleet deployments`)")
    found, holder = row
    if held_by is not None and holder != held_by:
        raise StateConflict(f"deployment {deployment_id[:12]}: flow run {holder} moves it now, "
                            f"not {held_by}", found=found, action=action.value)
    raise StateConflict(f"deployment {deployment_id[:12]}: {refusal(action, found, expect)}",
                        found=found, action=action.value)


def _spec_of(session: Session, spec_id: int | None) -> RenderedSpec | None:
    row = session.get(AppliedSpec, spec_id) if spec_id is not None else None
    if row is None:
        return None
    return RenderedSpec(id=row.id, version=row.version, kind=AppKind(row.kind), text=row.text,
                        env=row.env, digests=row.digests, source_key=row.source_key)


@task(name="load-applied-spec", retries=2, retry_delay_seconds=1, cache_policy=NONE,
      retry_condition_fn=unless_final, task_run_name="applied spec of {deployment_id}")
def load_applied_spec(deployment_id: str) -> RenderedSpec | None:
    """The spec the edge is meant to run now, per the records (None before any apply)."""
    with session_scope() as session:
        return _spec_of(session, load_deployment(session, deployment_id).spec_id)


@task(name="record-spec", retries=2, retry_delay_seconds=1, cache_policy=NONE,
      retry_condition_fn=unless_final, task_run_name="record {spec.kind.value} spec of "
      "{deployment_id} at {spec.version}")
def record_spec(deployment_id: str, spec: RenderedSpec, resolved: dict[str, Any] | None = None
                ) -> RenderedSpec:
    """Record ``spec`` as the one the edge runs from now on, before it is applied (so stop
    and logs find it even if the apply fails half-way); the one it replaces is kept as its
    ``previous_id``. A spec identical to the current one is not recorded twice."""
    with session_scope() as session:
        dep = load_deployment(session, deployment_id)
        current = session.get(AppliedSpec, dep.spec_id) if dep.spec_id is not None else None
        if current is not None and (current.kind, current.text, current.env) == (
                spec.kind.value, spec.text, spec.env):
            return spec.model_copy(update={"id": current.id})
        row = AppliedSpec(deployment_id=deployment_id, version=spec.version,
                          kind=spec.kind.value, text=spec.text, env=spec.env,
                          digests=spec.digests, source_key=spec.source_key, resolved=resolved,
                          previous_id=dep.spec_id,
                          flow_run_id=str(runtime.flow_run.id) if runtime.flow_run.id else None)
        session.add(row)
        session.flush()
        _point_at(session, deployment_id, row.id, was=dep.spec_id)
        return spec.model_copy(update={"id": row.id})


@task(name="load-rollback-spec", retries=2, retry_delay_seconds=1, cache_policy=NONE,
      retry_condition_fn=unless_final, task_run_name="rollback spec of {deployment_id}")
def load_rollback_spec(deployment_id: str, flow_run_id: str | None) -> RenderedSpec | None:
    """What to go back to after run ``flow_run_id`` died mid-update: the spec that the one
    it recorded replaced. None when that run recorded no spec (it never touched the edge)
    or there is nothing before it."""
    with session_scope() as session:
        dep = load_deployment(session, deployment_id)
        current = session.get(AppliedSpec, dep.spec_id) if dep.spec_id is not None else None
        if (current is None or flow_run_id is None or current.flow_run_id != flow_run_id
                or current.previous_id is None):
            return None
        return _spec_of(session, current.previous_id)


@task(name="restore-spec", retries=2, retry_delay_seconds=1, cache_policy=NONE,
      retry_condition_fn=unless_final, task_run_name="restore spec of {deployment_id} at "
      "{spec.version}")
def restore_spec(deployment_id: str, spec: RenderedSpec) -> RenderedSpec:
    """A rollback: ``spec`` (recorded before) is the one the edge runs again; the spec it
    replaces is marked rolled back."""
    assert spec.id is not None, "only a recorded spec can be restored"
    with session_scope() as session:
        dep = load_deployment(session, deployment_id)
        if dep.spec_id == spec.id:
            return spec
        failed = session.get(AppliedSpec, dep.spec_id) if dep.spec_id is not None else None
        if failed is not None:
            failed.outcome = "rolled back"
            session.add(failed)
        _point_at(session, deployment_id, spec.id, was=dep.spec_id)
    return spec


def _point_at(session: Session, deployment_id: str, spec_id: int | None, *,
              was: int | None) -> None:
    """Switch the deployment's current spec, only if it is still ``was`` (compare-and-set)."""
    same = (col(Deployment.spec_id).is_(None) if was is None
            else col(Deployment.spec_id) == was)
    statement = (update(Deployment).where(col(Deployment.id) == deployment_id, same)
                 .values(spec_id=spec_id).execution_options(synchronize_session=False))
    result = cast(CursorResult[Any], session.exec(statement))  # type: ignore[call-overload]
    if result.rowcount != 1:
        raise StateConflict(f"deployment {deployment_id[:12]}: its applied spec changed "
                            "while this run applied another; another run moved it",
                            found="spec changed", action="apply")


def cached_model(deployment_id: str, source_key: str) -> dict[str, Any] | None:
    """Compose's model of a source applied to this deployment before, if any."""
    with session_scope() as session:
        found = session.exec(
            select(AppliedSpec.resolved)
            .where(AppliedSpec.deployment_id == deployment_id,
                   AppliedSpec.source_key == source_key,
                   col(AppliedSpec.resolved).is_not(None))
            .order_by(col(AppliedSpec.id).desc())).first()
        return dict(found) if found else None


@task(name="record-containers", retries=2, retry_delay_seconds=1, cache_policy=NONE)
def record_containers(deployment_id: str, observed: list[ObservedContainer]) -> int:
    """Replace the deployment's per-container status with what was just observed."""
    now = datetime.now(UTC)
    with session_scope() as session:
        session.exec(delete(ContainerStatus).where(  # type: ignore[call-overload]
            col(ContainerStatus.deployment_id) == deployment_id))
        for obs in observed:
            session.add(ContainerStatus(
                deployment_id=deployment_id, service=obs.service, container_id=obs.container_id,
                image=obs.image, digest=obs.digest, state=obs.state, health=obs.health,
                restart_count=obs.restart_count, ports=obs.ports, urls=obs.urls, updated_at=now,
            ))
    return len(observed)


@task(name="set-version", retries=2, retry_delay_seconds=1, cache_policy=NONE,
      task_run_name="{deployment_id} now runs {version}")
def set_version(deployment_id: str, version: str) -> None:
    """The deployment now runs ``version``: its update flag is cleared."""
    with session_scope() as session:
        dep = load_deployment(session, deployment_id)
        app = session.get(Application, dep.application_id)
        assert app is not None
        row = get_version(session, application=app, version=version)
        assert row.id is not None
        dep.version_id = row.id
        dep.update_available = None
        session.add(dep)


@task(name="notify-operator", retries=2, retry_delay_seconds=1, cache_policy=NONE,
      task_run_name="notify {reason} for {deployment_id}")
def notify_operator(deployment_id: str, *, reason: str, key: str, to_version: str,
                    message: str, command: str, flag: str | None = None) -> bool:
    """Record one notification (never twice for the same key); optionally flag the update."""
    with session_scope() as session:
        dep = load_deployment(session, deployment_id)
        app = session.get(Application, dep.application_id)
        current = session.get(ApplicationVersion, dep.version_id)
        assert app is not None and current is not None
        if flag is not None:
            dep.update_available = flag
            session.add(dep)
        created = notify_once(session, deployment=dep, application=app.name,
                              from_version=current.version, to_version=to_version,
                              reason=reason, key=key, command=command, message=message)
        edge = session.get(Edge, dep.edge_id)
        notice = notice_of(created, edge.name if edge else "?") if created else None
    if notice is not None:  # announced once it is recorded, never for a notice found again
        emit_notice(notice)
    return notice is not None
