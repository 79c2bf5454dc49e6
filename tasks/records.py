"""Tasks that read or write edgefleet's own records (state moves, container status)."""

from __future__ import annotations

from datetime import UTC, datetime

from prefect import task
from prefect.cache_policies import NONE
from sqlmodel import col, delete

from edgefleet.crud import get_version, notify_once
from edgefleet.db import session_scope
from edgefleet.errors import InvalidTransition, NotFound
from edgefleet.events import emit_notice
from edgefleet.labels import project_name
from edgefleet.models.connections import connection_of
from edgefleet.models.inputs import AppKind
from edgefleet.models.plans import DeployPlan, ObservedContainer
from edgefleet.models.records import (
    Application,
    ApplicationVersion,
    ContainerStatus,
    Deployment,
    Edge,
)
from edgefleet.models.states import Action, IllegalTransition, transition
from edgefleet.notice_events import notice_of
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
            env={**version_row.env, **dep.env},
            registry_secret=version_row.registry_secret,
            allow_privileged=version_row.allow_privileged,
            privileges=list(version_row.privileges),
        )


@task(name="move-state", retries=2, retry_delay_seconds=1, cache_policy=NONE,
      retry_condition_fn=unless_final,
      task_run_name="{action.value} {deployment_id}")
def move_state(
    deployment_id: str, action: Action, error: str | None = None, flow_run_id: str | None = None
) -> str:
    """Apply one legal transition; the last error is kept on ERROR and cleared on success."""
    with session_scope() as session:
        dep = load_deployment(session, deployment_id)
        try:
            dep.state = transition(dep.state, action).value
        except IllegalTransition as exc:
            raise InvalidTransition(str(exc)) from exc
        if action in (Action.FAIL, Action.STARTED, Action.UPDATED, Action.STOPPED):
            dep.last_error = error
        if flow_run_id:
            dep.flow_run_id = flow_run_id
        dep.updated_at = datetime.now(UTC)
        dep.degraded = None  # telemetry judges the new state at its next sample
        session.add(dep)
        return dep.state


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
