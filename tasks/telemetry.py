"""Telemetry sweep tasks: plan who is due, read edges in batches, record, mark availability,
emit events, refresh deployments, publish the fleet artifact, apply retention.

How an edge is read (one connection, many edges in flight on one event loop) is in
:mod:`edgefleet.edge_readings`; a batch of edges is one ``read-edges`` task run.
"""

from __future__ import annotations

import contextlib
import fcntl
import time
from collections.abc import Iterable, Iterator
from datetime import datetime, timedelta
from typing import Any

from prefect import task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NONE
from prefect.events import emit_event
from prefect.runtime import task_run
from prefect.utilities.annotations import quote
from pydantic import BaseModel
from sqlalchemy import Row, Select, func, insert, update
from sqlalchemy import select as select_columns
from sqlmodel import Session, col, delete, select

from edgefleet import labels as L
from edgefleet import metrics
from edgefleet.db import session_scope
from edgefleet.edge_readings import DISK_KEYS, ENGINE_KEYS, read_many
from edgefleet.errors import NotFound
from edgefleet.metrics import human_size
from edgefleet.models.connections import connection_of
from edgefleet.models.readings import BatchReadings, EdgeReading, EdgeTarget, Work
from edgefleet.models.records import ContainerStatus, Deployment, Edge, utcnow
from edgefleet.models.states import Availability, DeploymentState
from edgefleet.models.telemetry import EdgeAvailability, EdgeSample, EdgeSampleHourly
from edgefleet.notice_events import Notice, event_of
from edgefleet.settings import get_settings
from edgefleet.tasks.retry import unless_final

FLEET_ARTIFACT = "fleet-status"
CHUNK = 500  # ids per IN (...) query
# The sweep reads every edge several times: as plain rows of the columns it uses, not as
# ORM objects (no Edge object built three times per edge and sweep, and no sample's
# container JSON parsed for the fleet artifact).
CONNECTION_COLUMNS: list[Any] = [Edge.name, Edge.docker_host, Edge.mode, Edge.address,
                                 Edge.tls_ca, Edge.tls_cert, Edge.tls_key]
AVAILABILITY_COLUMNS: list[Any] = [Edge.last_contact, Edge.heartbeat_interval,
                                   Edge.last_heartbeat_at]


def columns(*names: Any) -> Select[Any]:
    """A Core select of these columns (``names``: model attributes or lists of them)."""
    flat: list[Any] = [c for n in names for c in (n if isinstance(n, list) else [n])]
    return select_columns(*flat)


def plain_rows(session: Session, query: Select[Any]) -> list[Row[Any]]:
    """The rows of a select of columns: tuples with the columns' names as attributes."""
    return list(session.execute(query).all())


class AvailabilityChange(BaseModel):
    """An edge changed status; becomes a history row and a Prefect event."""

    edge: str
    docker_host: str
    status: Availability
    previous: str
    time: datetime
    last_contact: datetime | None
    reason: str | None = None


# ---------------------------------------------------------------- plan


@task(name="plan-sweep", retries=2, retry_delay_seconds=1, cache_policy=NONE,
      retry_condition_fn=unless_final)
def plan_sweep(now: datetime, edges: list[str] | None = None, force: bool = False
               ) -> list[list[EdgeTarget]]:
    """The edges due now (sample or heartbeat), in a bounded number of batches."""
    settings = get_settings()
    with session_scope() as session:
        query = columns(
            Edge.id, CONNECTION_COLUMNS, Edge.last_sample_at, Edge.telemetry_interval,
            Edge.last_heartbeat_at, Edge.heartbeat_interval, Edge.last_sample_id,
            Edge.last_disk_at).order_by(col(Edge.name))
        if edges:
            query = query.where(col(Edge.name).in_(edges))
        rows = plain_rows(session, query)
        if edges and len(rows) != len(set(edges)):
            missing = sorted(set(edges) - {e.name for e in rows})
            raise NotFound(f"no edge named {', '.join(missing)} (see `edgefleet edge list`)")
        due = []
        for edge in rows:
            work = metrics.work_for(
                last_sample_at=edge.last_sample_at, telemetry_interval=edge.telemetry_interval,
                last_heartbeat_at=edge.last_heartbeat_at,
                heartbeat_interval=edge.heartbeat_interval, now=now, force=force)
            if work is not Work.NONE:
                due.append((edge, work))
        previous = _previous_samples(session, [e.last_sample_id for e, w in due
                                               if w is Work.SAMPLE and e.last_sample_id])
    assert all(edge.id is not None for edge, _ in due)
    disk_due = metrics.disk_reads(
        [(int(edge.id or 0), edge.last_disk_at, edge.telemetry_interval)
         for edge, work in due if work is Work.SAMPLE], settings.telemetry_disk_seconds, now)
    targets = []
    for edge, work in due:
        cpu, disk, ids, engine = previous.get(edge.last_sample_id or 0, ({}, {}, [], {}))
        targets.append(EdgeTarget(
            edge_id=int(edge.id or 0), conn=connection_of(edge), work=work, previous_cpu=cpu,
            previous_containers=ids, read_disk=force or not disk or edge.id in disk_due,
            previous_disk=disk, previous_engine=engine))
    return metrics.batches(targets, settings.telemetry_batch_size,
                           settings.telemetry_max_batches)


@contextlib.contextmanager
def schedule_slot(wait: float = 0) -> Iterator[bool]:
    """True while this process holds the scheduled sweeps' turn, False when another kept it
    for ``wait`` seconds.

    A lock file in the home, not a Prefect concurrency limit: the kernel frees it when its
    process dies, so a killed worker never leaves the slot taken (a limit's lease
    outlived the process, and every later sweep was cancelled until it expired)."""
    path = get_settings().home / "run" / "telemetry-sweep.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    yield False
                    return
                time.sleep(min(0.5, max(0.0, deadline - time.monotonic())))
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@task(name="seconds-until-due", retries=2, retry_delay_seconds=1, cache_policy=NONE)
def seconds_until_due(edges: list[str] | None = None, now: datetime | None = None
                      ) -> float | None:
    """How long until the next edge (of ``edges``, default all) is due a contact."""
    with session_scope() as session:
        query = select(Edge.last_sample_at, Edge.telemetry_interval, Edge.last_heartbeat_at,
                       Edge.heartbeat_interval)
        if edges:
            query = query.where(col(Edge.name).in_(edges))
        rows = [tuple(row) for row in session.exec(query).all()]
    return metrics.seconds_until_due(rows, now or utcnow())  # type: ignore[arg-type]


Previous = tuple[dict[str, tuple[int, int]], dict[str, int | None], list[str], dict[str, Any]]


def _previous_samples(session: Session, sample_ids: list[int]) -> dict[int, Previous]:
    """Per stored sample: container id → (CPU total, system total), for the next CPU %; its
    disk figures, repeated while disk use is not due; its container ids; its engine figures
    (repeated as the disk figures are)."""
    found: dict[int, Previous] = {}
    columns = [getattr(EdgeSample, key) for key in (*DISK_KEYS, *ENGINE_KEYS)]
    for start in range(0, len(sample_ids), CHUNK):
        chunk = sample_ids[start:start + CHUNK]
        for sample_id, containers, *figures in session.exec(
                select(EdgeSample.id, EdgeSample.containers, *columns).where(
                    col(EdgeSample.id).in_(chunk))).all():
            disk, engine = figures[:len(DISK_KEYS)], figures[len(DISK_KEYS):]
            found[int(sample_id or 0)] = ({
                c["id"]: (int(c["cpu_total"]), int(c["cpu_system"]))
                for c in containers
                if c.get("cpu_total") is not None and c.get("cpu_system") is not None
            }, {key: value for key, value in zip(DISK_KEYS, disk, strict=True)
                if value is not None}, [c["id"] for c in containers],
                {key: value for key, value in zip(ENGINE_KEYS, engine, strict=True)
                 if value is not None})
    return found


# ---------------------------------------------------------------- read


def _read_name() -> str:
    batch = task_run.parameters.get("batch") or []
    if isinstance(batch, quote):
        batch = batch.unquote()
    first = batch[0].conn.name if batch else "-"
    return f"read {len(batch)} edge(s) from {first}"


@task(name="read-edges", cache_policy=NONE, task_run_name=_read_name)
def read_edges(batch: list[EdgeTarget]) -> BatchReadings:
    """Contact a batch of edges concurrently (pull edges: ask their agents,
    ``edgefleet.agent_readings``). No retries: an edge that does not answer is a reading
    (recorded as such), never a failure of the batch."""
    settings = get_settings()
    pushed = [t for t in batch if t.conn.mode != "pull"]
    readings = read_many(pushed, settings.telemetry_timeout, settings.telemetry_in_flight)
    if len(pushed) == len(batch):
        return BatchReadings(readings)
    from edgefleet.agent_readings import read_pull_edges  # Prefect's client: pull edges only

    pulled = read_pull_edges([t for t in batch if t.conn.mode == "pull"],
                             settings.telemetry_timeout)
    by_id = {r.edge_id: r for r in readings + pulled}
    return BatchReadings([by_id[t.edge_id] for t in batch])


# ---------------------------------------------------------------- record


def sample_row(reading: EdgeReading) -> dict[str, Any]:
    """The EdgeSample columns of a reading (edge totals summed over its containers)."""
    cpu = [c.cpu_percent for c in reading.containers if c.cpu_percent is not None]
    memory = [c.memory_usage for c in reading.containers if c.memory_usage is not None]
    return {
        "edge_id": reading.edge_id, "time": reading.started, "reachable": reading.reachable,
        "error": reading.error, "engine_version": reading.engine_version, "cpus": reading.cpus,
        "memory_total": reading.memory_total, "containers_running": reading.containers_running,
        "containers_stopped": reading.containers_stopped, "disk_images": reading.disk_images,
        "disk_containers": reading.disk_containers, "disk_volumes": reading.disk_volumes,
        "cpu_percent": round(sum(cpu), 2) if cpu else None,
        "memory_used": sum(memory) if memory else None,
        "containers": [c.model_dump(exclude_none=True) for c in reading.containers],
    }


@task(name="record-readings", retries=2, retry_delay_seconds=1, cache_policy=NONE)
def record_readings(readings: list[EdgeReading], planned: datetime) -> int:
    """Store the batch's samples and each edge's contact times, in one transaction."""
    samples = [r for r in readings if r.work is Work.SAMPLE]
    with session_scope() as session:
        ids: list[int] = []
        if samples:
            ids = list(session.scalars(
                insert(EdgeSample).returning(col(EdgeSample.id), sort_by_parameter_order=True),
                [sample_row(r) for r in samples]))
        sample_ids = {r.edge_id: i for r, i in zip(samples, ids, strict=True)}
        groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
        for r in readings:
            values: dict[str, Any] = {"id": r.edge_id, "last_heartbeat_at": planned,
                                      "last_error": r.error}
            if r.work is Work.SAMPLE:
                values.update(last_sample_at=planned, last_sample_id=sample_ids[r.edge_id])
            if r.disk_read:
                values["last_disk_at"] = planned
            if r.reachable:
                values["last_contact"] = r.finished
            groups.setdefault(tuple(sorted(values)), []).append(values)
        for group in groups.values():
            session.execute(update(Edge), group)
    return len(samples)


# ---------------------------------------------------------------- availability


@task(name="mark-availability", retries=2, retry_delay_seconds=1, cache_policy=NONE)
def mark_availability(now: datetime | None = None) -> list[AvailabilityChange]:
    """Apply the offline rule to every edge; each change goes to the history once.

    The status is changed only if it still holds the value read (compare-and-set), so two
    sweeps running at once never record or announce the same change twice.
    """
    moment = now or utcnow()
    changes = []
    with session_scope() as session:
        for edge in plain_rows(session, columns(
                Edge.id, Edge.name, Edge.docker_host, Edge.status, Edge.last_error,
                AVAILABILITY_COLUMNS)):
            new = metrics.edge_availability(edge, moment)
            previous = edge.status
            if new.value == previous:
                continue
            result = session.execute(update(Edge).where(
                col(Edge.id) == edge.id, col(Edge.status) == previous
            ).values(status=new.value).execution_options(
                synchronize_session=False))  # else each update scans every loaded edge
            if getattr(result, "rowcount", 0) != 1:
                continue
            reason = (edge.last_error or "no contact") if new is Availability.OFFLINE else None
            session.add(EdgeAvailability(edge_id=int(edge.id or 0), time=moment,
                                         status=new.value, last_contact=edge.last_contact,
                                         reason=reason))
            changes.append(AvailabilityChange(
                edge=edge.name, docker_host=edge.docker_host, status=new, previous=previous,
                time=moment, last_contact=edge.last_contact, reason=reason))
    return changes


@task(name="emit-availability-events", retries=2, retry_delay_seconds=1, cache_policy=NONE)
def emit_availability_events(changes: list[AvailabilityChange]) -> int:
    """One Prefect event per change (`edgefleet.edge.offline` / `.online`), for automations
    (the notify channels): the edge is its resource and, as for every notice, related."""
    for change in changes:
        went = change.status.value.lower()
        contact = change.last_contact.isoformat() if change.last_contact else None
        message = (f"edge {change.edge} is OFFLINE: {change.reason or 'no contact'} (last "
                   f"contact {contact or 'never'})" if went == "offline"
                   else f"edge {change.edge} is ONLINE again")
        notice = event_of(Notice(kind=went, message=message, edge=change.edge,
                                 command=f"edgefleet telemetry {change.edge}",
                                 extra={"status": change.status.value,
                                        "previous": change.previous,
                                        "docker_host": change.docker_host,
                                        "last_contact": contact, "reason": change.reason}))
        emit_event(event=notice["event"],
                   resource={**notice["resource"], "edgefleet.docker-host": change.docker_host},
                   related=notice["related"], occurred=change.time, payload=notice["payload"])
    return len(changes)


# ---------------------------------------------------------------- deployments


@task(name="refresh-deployments", retries=2, retry_delay_seconds=1, cache_policy=NONE)
def refresh_deployments(readings: list[EdgeReading]) -> dict[str, str | None]:
    """Per-container status and the degraded reason of STARTED deployments, rebuilt from
    the labels of what the sample saw. Returns the deployments whose reason changed."""
    sampled = {r.edge_id: r for r in readings
               if r.work is Work.SAMPLE and r.reachable and r.engine_version}
    changed: dict[str, str | None] = {}
    if not sampled:
        return changed
    with session_scope() as session:
        deployments = session.exec(select(Deployment).where(
            col(Deployment.edge_id).in_(list(sampled)),
            col(Deployment.state) == DeploymentState.STARTED.value)).all()
        for dep in deployments:
            reading = sampled[dep.edge_id]
            if dep.updated_at >= reading.started:
                continue  # a flow changed it after we looked: our view is older
            reason = _refresh_one(session, dep, reading)
            if reason != dep.degraded:
                dep.degraded = reason
                session.add(dep)
                changed[dep.id] = reason
    return changed


def _refresh_one(session: Session, dep: Deployment, reading: EdgeReading) -> str | None:
    recorded = list(session.exec(select(ContainerStatus).where(
        col(ContainerStatus.deployment_id) == dep.id)).all())
    mine = {o.container_id: o for o in reading.observed if o.labels.get(L.DEPLOYMENT) == dep.id}
    created = {c.id: c.created for c in reading.containers}
    seen = [metrics.SeenContainer(container_id=o.container_id, service=o.service, state=o.state,
                                  health=o.health, restart_count=o.restart_count,
                                  exit_code=o.exit_code, created=created.get(o.container_id, ""))
            for o in mine.values()]
    expected = {c.service for c in recorded}
    picked = metrics.pick_containers(seen)
    current = sorted((mine[s.container_id] for items in picked.values() for s in items),
                     key=lambda o: (o.service, o.name))
    by_service = {c.service: c for c in recorded}
    wanted = [
        ContainerStatus(deployment_id=dep.id, service=o.service, container_id=o.container_id,
                        image=o.image, digest=o.digest, state=o.state, health=o.health,
                        restart_count=o.restart_count, ports=o.ports, urls=o.urls,
                        updated_at=reading.started)
        for o in current
    ] + [
        ContainerStatus(deployment_id=dep.id, service=service,
                        container_id=by_service[service].container_id,
                        image=by_service[service].image, digest=by_service[service].digest,
                        state="missing", restart_count=by_service[service].restart_count,
                        updated_at=reading.started)
        for service in sorted(expected - set(picked))
    ]
    if _status_key(wanted) != _status_key(recorded):
        for row in recorded:
            session.delete(row)
        session.flush()
        session.add_all(wanted)
    return metrics.degraded_reason(expected, seen)


def _status_key(rows: Iterable[ContainerStatus]) -> list[tuple[Any, ...]]:
    return sorted((r.service, r.container_id, r.image, r.digest, r.state, r.health,
                   r.restart_count, list(r.ports), list(r.urls)) for r in rows)


# ---------------------------------------------------------------- fleet artifact


NONE_SHOWN = "n/a"  # the UI renders cells as markdown: a lone "-" becomes a bullet


# what a row of the fleet artifact shows of an edge's newest sample (not its containers)
SAMPLE_FIGURES: list[Any] = [EdgeSample.cpus, EdgeSample.cpu_percent, EdgeSample.memory_used,
                             EdgeSample.memory_total, EdgeSample.containers_running,
                             EdgeSample.containers_stopped]


def fleet_rows(edges: Iterable[Any], samples: dict[int, Any],
               deployments: dict[int, tuple[int, int]], now: datetime, limit: int
               ) -> tuple[list[dict[str, Any]], int]:
    """One row per edge (anything with the Edge fields read here), the worst first (offline,
    then degraded), at most ``limit``."""
    rows: list[dict[str, Any]] = []
    for edge in edges:
        status = metrics.edge_availability(edge, now).value
        sample = samples.get(edge.id or 0)
        total, degraded = deployments.get(edge.id or 0, (0, 0))
        contact = (f"{int((now - edge.last_contact).total_seconds())} s ago"
                   if edge.last_contact else "never")
        rows.append({
            "edge": edge.name, "status": status, "last contact": contact,
            "CPUs": sample.cpus if sample and sample.cpus is not None else NONE_SHOWN,
            "CPU % (containers)": sample.cpu_percent if sample and
            sample.cpu_percent is not None else NONE_SHOWN,
            "memory (containers / total)":
                f"{human_size(sample.memory_used)} / {human_size(sample.memory_total)}"
                if sample else NONE_SHOWN,
            "containers (running / stopped)":
                f"{sample.containers_running} / {sample.containers_stopped}" if sample
                else NONE_SHOWN,
            "deployments": f"{total} ({degraded} degraded)" if degraded else str(total),
            "error": (edge.last_error or "")[:120],
        })
    rows.sort(key=lambda r: (r["status"] != "OFFLINE", "degraded" not in r["deployments"],
                             r["edge"]))
    return rows[:limit], max(0, len(rows) - limit)


@task(name="publish-fleet-status", retries=2, retry_delay_seconds=1, cache_policy=NONE)
def publish_fleet_status(now: datetime | None = None) -> int:
    """Update the `fleet-status` table artifact: one row per edge (worst first)."""
    moment = now or utcnow()
    settings = get_settings()
    with session_scope() as session:
        edges = plain_rows(session, columns(
            Edge.id, Edge.name, Edge.last_error, Edge.last_sample_id, AVAILABILITY_COLUMNS)
            .order_by(col(Edge.name)))
        ids = [e.last_sample_id for e in edges if e.last_sample_id]
        samples: dict[int, Any] = {}
        for start in range(0, len(ids), CHUNK):
            for sample in plain_rows(session, columns(
                    EdgeSample.edge_id, SAMPLE_FIGURES).where(
                    col(EdgeSample.id).in_(ids[start:start + CHUNK]))):
                samples[sample.edge_id] = sample
        counts: dict[int, tuple[int, int]] = {}
        for edge_id, degraded, number in session.exec(
                select(Deployment.edge_id, col(Deployment.degraded).is_not(None), func.count())
                .where(col(Deployment.state) == DeploymentState.STARTED.value)
                .group_by(col(Deployment.edge_id), col(Deployment.degraded).is_not(None))).all():
            total, bad = counts.get(edge_id, (0, 0))
            counts[edge_id] = (total + number, bad + (number if degraded else 0))
    rows, hidden = fleet_rows(edges, samples, counts, moment, settings.fleet_artifact_rows)
    online = sum(1 for e in edges
                 if metrics.edge_availability(e, moment) is Availability.ONLINE)
    description = (f"edgefleet fleet status at {moment:%Y-%m-%d %H:%M:%S} UTC: {len(edges)} "
                   f"edge(s), {online} online, {len(edges) - online} offline")
    if hidden:
        description += f"; {hidden} more edge(s) not shown (all ONLINE and not degraded)"
    create_table_artifact(table=rows, key=FLEET_ARTIFACT, description=description)
    return len(rows)


# ---------------------------------------------------------------- retention


@task(name="apply-retention", retries=2, retry_delay_seconds=1, cache_policy=NONE)
def apply_retention(now: datetime | None = None, chunk: int = 5000) -> dict[str, int]:
    """Roll raw samples older than the raw window into hourly averages and delete them;
    delete hourly averages and availability history past the delete window.

    Only whole hours are rolled up (the cut-off is floored to the hour), so each hour is
    normally averaged once; an hour rolled twice is merged weighted by sample counts.
    """
    settings = get_settings()
    moment = now or utcnow()
    raw_cutoff = metrics.hour_floor(moment - timedelta(days=settings.telemetry_raw_days))
    delete_cutoff = moment - timedelta(days=settings.telemetry_delete_after_days)
    rolled = hours = 0
    columns = [EdgeSample.id, EdgeSample.edge_id, EdgeSample.time, EdgeSample.reachable,
               *(getattr(EdgeSample, name) for name in metrics.ROLLUP_FIELDS)]
    names = ["id", "edge_id", "time", "reachable", *metrics.ROLLUP_FIELDS]
    while True:
        with session_scope() as session:
            batch = [dict(zip(names, row, strict=True)) for row in session.exec(
                select(*columns).where(col(EdgeSample.time) < raw_cutoff)
                .order_by(col(EdgeSample.id)).limit(chunk)).all()]
            if not batch:
                break
            for agg in metrics.rollup(batch):
                _store_hourly(session, agg)
                hours += 1
            session.exec(delete(EdgeSample).where(  # type: ignore[call-overload]
                col(EdgeSample.id).in_([s["id"] for s in batch])))
            rolled += len(batch)
    with session_scope() as session:
        old_hours = session.exec(delete(EdgeSampleHourly).where(  # type: ignore[call-overload]
            col(EdgeSampleHourly.hour) < delete_cutoff))
        old_history = session.exec(delete(EdgeAvailability).where(  # type: ignore[call-overload]
            col(EdgeAvailability.time) < delete_cutoff))
    return {"rolled_up": rolled, "hours_written": hours,
            "hours_deleted": int(old_hours.rowcount or 0),
            "history_deleted": int(old_history.rowcount or 0)}


def _store_hourly(session: Session, agg: metrics.HourlyAggregate) -> None:
    row = session.exec(select(EdgeSampleHourly).where(
        col(EdgeSampleHourly.edge_id) == agg.edge_id,
        col(EdgeSampleHourly.hour) == agg.hour)).first()
    means = agg.means()
    if row is None:
        row = EdgeSampleHourly(edge_id=agg.edge_id, hour=agg.hour)
    old = {name: getattr(row, name) for name in metrics.ROLLUP_FIELDS}
    for name, value in metrics.merge_means(old, row.samples, means, agg.samples).items():
        setattr(row, name, value)
    row.samples += agg.samples
    row.unreachable += agg.unreachable
    session.add(row)

