"""Tasks of the reconcile flows: what the records, Prefect and an edge say, and the few
actions that make a dead run's deployment, or a dead engine's leftovers, final.

The decisions themselves are pure (``edgefleet.reconcile_rules``).
"""

from __future__ import annotations

import contextlib
from datetime import datetime, timedelta
from uuid import UUID

import docker.errors
import httpx
import yaml
from prefect import get_run_logger, task
from prefect.cache_policies import NONE
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from prefect.settings import PREFECT_API_URL
from pydantic import BaseModel
from sqlalchemy import update
from sqlmodel import col, select

from edgefleet import labels as L
from edgefleet.db import session_scope
from edgefleet.edge_calls import on_edge
from edgefleet.engine import engine_client
from edgefleet.models.connections import EngineConnection, connection_of
from edgefleet.models.inputs import AppKind
from edgefleet.models.records import Application, ApplicationVersion, Deployment, Edge, utcnow
from edgefleet.reconcile_rules import TRANSIENT, Item, Owner, RunView


class Held(BaseModel):
    """A deployment in a transient state, as read (the re-check compares all of it)."""

    deployment_id: str
    state: str
    flow_run_id: str | None
    updated_at: datetime


class Shape(BaseModel):
    """What a deployment's recorded version should run: its services and, for an image,
    the container's name."""

    expected: list[str]
    container_name: str | None


def _aware(moment: datetime) -> datetime:
    """SQLite gives naive datetimes back (stored as UTC)."""
    return moment if moment.tzinfo else moment.replace(tzinfo=utcnow().tzinfo)


@task(name="find-transient-deployments", retries=2, retry_delay_seconds=1, cache_policy=NONE)
def find_transient() -> list[Held]:
    with session_scope() as session:
        rows = session.exec(select(Deployment).where(
            col(Deployment.state).in_([s.value for s in TRANSIENT]))).all()
        return [Held(deployment_id=r.id, state=r.state, flow_run_id=r.flow_run_id,
                     updated_at=_aware(r.updated_at)) for r in rows]


@task(name="check-still-held", retries=2, retry_delay_seconds=1, cache_policy=NONE,
      task_run_name="is {held.deployment_id} still {held.state}")
def still_held(held: Held) -> bool:
    """The record is as it was read: no run moved it meanwhile."""
    with session_scope() as session:
        row = session.get(Deployment, held.deployment_id)
        return (row is not None and row.state == held.state
                and row.flow_run_id == held.flow_run_id
                and _aware(row.updated_at) == held.updated_at)


@task(name="take-over-held", retries=2, retry_delay_seconds=1, cache_policy=NONE,
      task_run_name="take over {held.deployment_id}")
def take_over(held: Held, flow_run_id: str) -> bool:
    """This reconcile run becomes the record's holder before it acts on the edge: one
    compare-and-set on the state and the dead holder as read, so a second reconcile sees a
    live holder and leaves it alone. False when another got there first."""
    same = (col(Deployment.flow_run_id).is_(None) if held.flow_run_id is None
            else col(Deployment.flow_run_id) == held.flow_run_id)
    with session_scope() as session:
        result = session.exec(update(Deployment).where(  # type: ignore[call-overload]
            col(Deployment.id) == held.deployment_id, col(Deployment.state) == held.state,
            same).values(flow_run_id=flow_run_id).execution_options(synchronize_session=False))
        return bool(result.rowcount == 1)


@task(name="read-flow-runs", retries=2, retry_delay_seconds=2, cache_policy=NONE)
def read_runs(flow_run_ids: list[str]) -> dict[str, RunView]:
    """Prefect's view of each run: state, when it changed, its newest heartbeat."""
    ids = sorted({i for i in flow_run_ids if i})
    if not ids:
        return {}
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[UUID(i) for i in ids])),
            limit=len(ids))
    views = {i: RunView(found=False) for i in ids}
    for run in runs:
        state = run.state
        changed = state.timestamp if state else None
        beats = (_last_heartbeats(str(run.id), (run.start_time or changed or utcnow()))
                 if state and state.type.value == "RUNNING" else [])
        views[str(run.id)] = RunView(found=True, state=state.type.value if state else None,
                                     state_name=state.name if state else None,
                                     changed=changed, heartbeat=beats[0] if beats else None,
                                     beat_every=beats[0] - beats[1] if len(beats) > 1 else None)
    return views


def _last_heartbeats(flow_run_id: str, since: datetime) -> list[datetime]:
    """The two newest ``prefect.flow-run.heartbeat`` events of the run, newest first."""
    api_url = PREFECT_API_URL.value()
    if not api_url:
        return []
    body = {"filter": {"occurred": {"since": (since - timedelta(minutes=1)).isoformat()},
                       "event": {"name": ["prefect.flow-run.heartbeat"]},
                       "resource": {"id": [f"prefect.flow-run.{flow_run_id}"]},
                       "order": "DESC"},
            "limit": 2}
    resp = httpx.post(f"{api_url}/events/filter", json=body, timeout=10, trust_env=False)
    resp.raise_for_status()
    return [datetime.fromisoformat(e["occurred"]) for e in resp.json().get("events") or []]


@task(name="load-shape", retries=2, retry_delay_seconds=1, cache_policy=NONE,
      task_run_name="shape of {deployment_id}")
def load_shape(deployment_id: str) -> Shape:
    """The services of the deployment's recorded version (compose keys, or the image's)."""
    with session_scope() as session:
        dep = session.get(Deployment, deployment_id)
        assert dep is not None
        version = session.get(ApplicationVersion, dep.version_id)
        app = session.get(Application, dep.application_id)
        assert version is not None and app is not None
        if AppKind(version.kind) is AppKind.IMAGE:
            return Shape(expected=[app.name],
                         container_name=f"{L.project_name(dep.id)}-{app.name}")
        try:
            services = sorted((yaml.safe_load(version.compose or "") or {}).get("services")
                              or {})
        except yaml.YAMLError:
            services = []
        return Shape(expected=services, container_name=None)


@task(name="remove-container", retries=2, retry_delay_seconds=2, cache_policy=NONE,
      task_run_name="remove {name} from {conn.name}")
@on_edge
def remove_container(conn: EngineConnection, name: str) -> None:
    with engine_client(conn) as client, contextlib.suppress(docker.errors.NotFound):
        client.containers.get(name).remove(force=True)


# ------------------------------------------------------------------ leftovers


@task(name="find-edge", retries=2, retry_delay_seconds=1, cache_policy=NONE,
      task_run_name="find edge {name}")
def find_edge(name: str) -> EngineConnection | None:
    with session_scope() as session:
        row = session.exec(select(Edge).where(Edge.name == name)).first()
        return connection_of(row) if row else None


@task(name="online-edges", retries=2, retry_delay_seconds=1, cache_policy=NONE)
def online_edges() -> list[EngineConnection]:
    with session_scope() as session:
        rows = session.exec(select(Edge).where(Edge.status == "ONLINE").order_by(Edge.name))
        return [connection_of(row) for row in rows.all()]


@task(name="list-managed", retries=2, retry_delay_seconds=2, cache_policy=NONE,
      task_run_name="list what is ours on {conn.name}")
@on_edge
def list_managed(conn: EngineConnection) -> list[Item]:
    """Swarm services and containers labelled ours, and the networks of our deployments
    (labelled with a deployment, or of a compose project / stack named ``ef-...``)."""
    items: list[Item] = []
    ours = {"label": [f"{L.MANAGED}=true"]}
    with engine_client(conn) as client:
        if client.info().get("Swarm", {}).get("LocalNodeState") == "active":
            for service in client.api.services(filters=ours):
                labels = service.get("Spec", {}).get("Labels") or {}
                items.append(Item(kind="service", id=service["ID"],
                                  name=service.get("Spec", {}).get("Name", service["ID"]),
                                  deployment_id=labels.get(L.DEPLOYMENT)))
        for container in client.api.containers(all=True, filters=ours):
            labels = container.get("Labels") or {}
            names = container.get("Names") or [container["Id"]]
            items.append(Item(kind="container", id=container["Id"],
                              name=names[0].lstrip("/"),
                              deployment_id=labels.get(L.DEPLOYMENT)))
        for network in client.api.networks():
            labels = network.get("Labels") or {}
            project = (labels.get("com.docker.compose.project")
                       or labels.get("com.docker.stack.namespace"))
            if labels.get(L.DEPLOYMENT) or project:
                items.append(Item(kind="network", id=network["Id"], name=network["Name"],
                                  deployment_id=labels.get(L.DEPLOYMENT), project=project))
    return items


@task(name="load-owners", retries=2, retry_delay_seconds=1, cache_policy=NONE)
def load_owners() -> list[Owner]:
    """Every deployment record; an ERROR one with the flow of its recorded run (to know
    whether the run that failed meant to leave nothing behind)."""
    with session_scope() as session:
        rows = [(d.id, d.state, d.flow_run_id) for d in session.exec(select(Deployment)).all()]
    failed = [run for _id, state, run in rows if state == "ERROR" and run]
    flows = flow_names(failed)
    return [Owner(deployment_id=i, state=s, last_flow=flows.get(r or "")) for i, s, r in rows]


def flow_names(flow_run_ids: list[str]) -> dict[str, str]:
    """Flow run id → the name of its flow (runs Prefect no longer knows are left out)."""
    if not flow_run_ids:
        return {}
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(flow_run_filter=FlowRunFilter(
            id=FlowRunFilterId(any_=[UUID(i) for i in flow_run_ids])), limit=len(flow_run_ids))
        names: dict[UUID, str] = {}
        for run in runs:
            if run.flow_id not in names:
                names[run.flow_id] = client.read_flow(run.flow_id).name
        return {str(run.id): names[run.flow_id] for run in runs}


@task(name="remove-leftover", retries=2, retry_delay_seconds=2, cache_policy=NONE,
      task_run_name="remove {item.kind} {item.name} from {conn.name}")
@on_edge
def remove_leftover(conn: EngineConnection, item: Item, cause: str) -> bool:
    """Remove one leftover (False: it was gone already); the removal is logged."""
    logger = get_run_logger()
    with engine_client(conn) as client:
        try:
            if item.kind == "service":
                client.api.remove_service(item.id)
            elif item.kind == "container":
                client.api.remove_container(item.id, force=True)
            else:
                client.api.remove_network(item.id)
        except docker.errors.NotFound:
            return False
        except docker.errors.APIError as exc:
            if exc.status_code == 404:
                return False
            raise
    logger.info("edge %s: removed %s %s (%s): %s", conn.name, item.kind, item.name,
                item.id[:12], cause)
    return True
