"""Tasks that read or write edgefleet's own records (state moves, container status)."""

from __future__ import annotations

from datetime import UTC, datetime

from prefect import task
from prefect.cache_policies import NONE
from sqlmodel import col, delete, select

from edgefleet.db import session_scope
from edgefleet.engine import connection_of
from edgefleet.errors import InvalidTransition, NotFound
from edgefleet.labels import project_name
from models.inputs import AppKind
from models.plans import DeployPlan, ObservedContainer
from models.records import Application, ApplicationVersion, ContainerStatus, Deployment, Edge
from models.states import Action, IllegalTransition, transition
from tasks.retry import unless_final


def load_deployment(session, deployment_id: str) -> Deployment:  # type: ignore[no-untyped-def]
    row = session.get(Deployment, deployment_id)
    if row is None:
        raise NotFound(f"no deployment {deployment_id!r} (see `edgefleet deployments`)")
    return row


@task(name="load-plan", retries=2, retry_delay_seconds=1, cache_policy=NONE,
      retry_condition_fn=unless_final)
def load_plan(deployment_id: str) -> DeployPlan:
    """Resolve edge, version and environment (version defaults, then the overrides)."""
    with session_scope() as session:
        dep = load_deployment(session, deployment_id)
        version = session.get(ApplicationVersion, dep.version_id)
        app = session.get(Application, dep.application_id)
        edge = session.get(Edge, dep.edge_id)
        assert version is not None and app is not None and edge is not None
        return DeployPlan(
            deployment_id=dep.id,
            application=app.name,
            version=version.version,
            kind=AppKind(version.kind),
            edge=connection_of(edge),
            project=project_name(dep.id),
            image=version.image,
            ports=list(version.ports),
            compose=version.compose,
            env={**version.env, **dep.env},
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
        if action in (Action.FAIL, Action.STARTED, Action.STOPPED):
            dep.last_error = error
        if flow_run_id:
            dep.flow_run_id = flow_run_id
        dep.updated_at = datetime.now(UTC)
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


def containers_of(session, deployment_id: str) -> list[ContainerStatus]:  # type: ignore[no-untyped-def]
    return list(session.exec(select(ContainerStatus).where(
        ContainerStatus.deployment_id == deployment_id).order_by(ContainerStatus.service)).all())
