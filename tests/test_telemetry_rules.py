"""Telemetry without an engine: the pure rules with a clock the test sets, then the record
tasks (plan, record, availability, deployment refresh, retention) on a throw-away database.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import select
from typer.testing import CliRunner

from edgefleet import edge_readings, metrics, record_reads
from edgefleet.api import telemetry
from edgefleet.api.edges import add_edge, edge_public, list_edges
from edgefleet.cli.main import app
from edgefleet.db import get_engine, session_scope
from edgefleet.errors import InvalidInput, NotFound
from edgefleet.models.connections import EngineConnection
from edgefleet.models.readings import ContainerReading, EdgeReading, EdgeTarget, Work
from edgefleet.models.records import (
    Application,
    ApplicationVersion,
    ContainerStatus,
    Deployment,
    Edge,
)
from edgefleet.models.states import Availability
from edgefleet.models.telemetry import EdgeAvailability, EdgeSample, EdgeSampleHourly
from edgefleet.settings import get_settings
from edgefleet.tasks import telemetry as T
from edgefleet.telemetry_views import parse_since

T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


# ---------------------------------------------------------------- pure rules


def test_offline_once_past_two_heartbeats_and_ten_seconds() -> None:
    # heartbeat 20 s: last contact + 50 s is the last ONLINE moment
    assert metrics.availability(T0, 20, at(50)) is Availability.ONLINE
    assert metrics.availability(T0, 20, at(50.001)) is Availability.OFFLINE
    assert metrics.availability(T0, 2, at(14)) is Availability.ONLINE
    assert metrics.availability(T0, 2, at(14.5)) is Availability.OFFLINE
    assert metrics.availability(None, 20, T0) is Availability.OFFLINE  # never contacted
    assert metrics.offline_after(T0, 20) == at(50)


def test_due_work_prefers_a_sample_and_tolerates_an_early_sweep() -> None:
    def work(last_sample: float | None, last_beat: float | None, now: float,
             force: bool = False) -> Work:
        return metrics.work_for(
            last_sample_at=None if last_sample is None else at(last_sample),
            telemetry_interval=60,
            last_heartbeat_at=None if last_beat is None else at(last_beat),
            heartbeat_interval=20, now=at(now), force=force)

    assert work(None, None, 0) is Work.SAMPLE
    assert work(0, 0, 10) is Work.NONE
    assert work(0, 0, 20) is Work.HEARTBEAT
    assert work(0, 20, 30) is Work.NONE
    assert work(0, 20, 59.5) is Work.SAMPLE  # a sweep 0.5 s early still samples
    assert work(0, 0, 5, force=True) is Work.SAMPLE


def test_batches_stay_bounded_whatever_the_fleet_size() -> None:
    assert metrics.batches([], 50, 8) == []
    assert [len(b) for b in metrics.batches(list(range(120)), 50, 8)] == [40, 40, 40]
    big = metrics.batches(list(range(10_000)), 50, 8)
    assert len(big) == 8 and sum(len(b) for b in big) == 10_000
    assert [x for b in big for x in b] == list(range(10_000))


def test_disk_reads_of_edges_due_together_are_spread_over_sweeps() -> None:
    """1,000 edges read together come due together: each sweep reads at most twice its
    share (a sample every 60 s, disk use every 600 s: 200 a sweep), longest waiting first,
    until every one is read; an edge never read is read at once."""
    fleet = [(edge, T0, 60.0) for edge in range(1000)]
    assert metrics.disk_reads(fleet, 600, at(540)) == set()  # none due yet
    read: set[int] = set()
    for sweep in range(5):
        now = at(600 + 60 * sweep)
        chosen = metrics.disk_reads([(e, now if e in read else last, i)
                                     for e, last, i in fleet], 600, now)
        assert len(chosen) == 200 and not chosen & read, sweep
        read |= chosen
    assert read == set(range(1000))
    # the longest waiting first, and never-read edges on top of the share
    waited = [(1, at(-60), 60.0), (2, T0, 60.0), (3, None, 60.0)]
    assert metrics.disk_reads(waited, 600, at(600)) == {1, 3}
    assert metrics.disk_reads(waited[1:2], 600, at(600)) == {2}  # one edge: always its turn
    # sampled as often as disk use is read: every due one; 0 s: every sweep reads all
    assert metrics.disk_reads([(e, T0, 600.0) for e in range(50)], 600, at(600)) == set(
        range(50))
    assert metrics.disk_reads(fleet[:5], 0, T0) == set(range(5))


def test_cpu_percent_from_two_one_shot_samples() -> None:
    # 0.5 s of container CPU in 4 s of host CPU time (2 CPUs × 2 s) → 25 % of 2 cores
    prev = (1_000_000_000, 100_000_000_000)
    assert metrics.cpu_percent(prev, 1_500_000_000, 104_000_000_000, 2) == 25.0
    assert metrics.cpu_percent(None, 1, 2, 2) is None  # first sample of a container
    assert metrics.cpu_percent(prev, 10, 104_000_000_000, 2) is None  # counter went back
    assert metrics.cpu_percent(prev, 1_500_000_000, 100_000_000_000, 2) is None


STATS_V1 = {
    "read": "2026-03-01T12:00:00Z", "preread": "0001-01-01T00:00:00Z",
    "cpu_stats": {"cpu_usage": {"total_usage": 1_500_000_000, "percpu_usage": [1, 2]},
                  "system_cpu_usage": 104_000_000_000, "online_cpus": 2},
    "precpu_stats": {"cpu_usage": {"total_usage": 0}},
    "memory_stats": {"usage": 10_000_000, "limit": 2_000_000_000,
                     "stats": {"total_inactive_file": 4_000_000}},
    "networks": {"eth0": {"rx_bytes": 100, "tx_bytes": 50},
                 "eth1": {"rx_bytes": 1, "tx_bytes": 2}},
    "blkio_stats": {"io_service_bytes_recursive": [
        {"major": 8, "minor": 0, "op": "Read", "value": 4096},
        {"major": 8, "minor": 0, "op": "Write", "value": 8192},
        {"major": 8, "minor": 0, "op": "Total", "value": 12288}]},
}
STATS_V2 = {
    "memory_stats": {"usage": 10_000_000, "limit": 1, "stats": {"inactive_file": 1_000_000}},
    "blkio_stats": {"io_service_bytes_recursive": [{"op": "read", "value": 1},
                                                   {"op": "write", "value": 2}]},
}


def test_memory_network_and_block_figures_as_docker_stats_shows_them() -> None:
    assert metrics.memory_usage(STATS_V1) == 6_000_000
    assert metrics.memory_usage(STATS_V2) == 9_000_000
    assert metrics.memory_usage({}) is None
    assert metrics.network_bytes(STATS_V1) == (101, 52)
    assert metrics.network_bytes({}) == (None, None)  # network mode none
    assert metrics.block_bytes(STATS_V1) == (4096, 8192)
    assert metrics.block_bytes(STATS_V2) == (1, 2)
    assert metrics.block_bytes({"blkio_stats": {"io_service_bytes_recursive": None}}) == (
        None, None)


def inspect_attrs(cid: str = "e908f395bd76" + "0" * 52, status: str = "running",
                  deployment: str | None = "d" * 32, service: str = "web",
                  health: str | None = "healthy", exit_code: int = 0, restarts: int = 0,
                  created: str = "2026-03-01T11:00:00Z") -> dict[str, Any]:
    labels = {"io.edgefleet.deployment": deployment, "io.edgefleet.service": service,
              "io.edgefleet.image-digest": "sha256:" + "a" * 64} if deployment else {}
    state: dict[str, Any] = {"Status": status, "ExitCode": exit_code,
                             "StartedAt": "2026-03-01T11:00:01Z"}
    if health:
        state["Health"] = {"Status": health}
    return {"Id": cid, "Created": created, "Name": f"/ef-{service}", "RestartCount": restarts,
            "State": state, "Config": {"Image": "registry/hello:1.0.0", "Labels": labels},
            "NetworkSettings": {"Ports": {"8080/tcp": [{"HostIp": "0.0.0.0",
                                                       "HostPort": "32768"}]}}}


def test_container_reading_from_inspect_and_stats() -> None:
    previous = {"e908f395bd76": (1_000_000_000, 100_000_000_000)}
    reading, obs = edge_readings.container_reading(inspect_attrs(), STATS_V1, "10.0.0.7",
                                                   previous, 2)
    assert reading.id == "e908f395bd76" and reading.name == "ef-web"
    assert reading.deployment_id == "d" * 32 and reading.service == "web"
    assert (reading.state, reading.health, reading.restart_count) == ("running", "healthy", 0)
    assert reading.cpu_percent == 25.0
    assert (reading.memory_usage, reading.memory_limit) == (6_000_000, 2_000_000_000)
    assert (reading.net_rx, reading.net_tx, reading.block_read, reading.block_write) == (
        101, 52, 4096, 8192)
    assert (reading.cpu_total, reading.cpu_system) == (1_500_000_000, 104_000_000_000)
    assert obs.urls == ["http://10.0.0.7:32768"]
    stopped, _ = edge_readings.container_reading(
        inspect_attrs(status="exited", exit_code=137, deployment=None, health=None),
        None, "h", {}, 2)
    assert stopped.deployment_id is None and stopped.exit_code == 137
    assert stopped.cpu_percent is None and stopped.memory_usage is None


def seen(cid: str, service: str, state: str = "running", health: str | None = None,
         created: str = "1", exit_code: int | None = 0) -> metrics.SeenContainer:
    return metrics.SeenContainer(container_id=cid, service=service, state=state, health=health,
                                 restart_count=0, exit_code=exit_code, created=created)


def test_degraded_reason_names_each_unwell_service() -> None:
    assert metrics.degraded_reason({"web"}, [seen("a", "web", health="healthy")]) is None
    assert metrics.degraded_reason({"web", "db"}, [seen("a", "web")]) == (
        "service db: container missing")
    assert metrics.degraded_reason({"web"}, [seen("a", "web", "exited", exit_code=137)]) == (
        "service web: exited, exit code 137")
    assert metrics.degraded_reason({"web"}, [seen("a", "web", health="unhealthy")]) == (
        "service web: unhealthy")
    # swarm keeps the task it replaced: a running replacement means the service is fine
    history = [seen("old", "web", "exited", created="1"), seen("new", "web", created="2")]
    assert metrics.degraded_reason({"web"}, history) is None
    assert [c.container_id for c in metrics.pick_containers(history)["web"]] == ["new"]
    down = [seen("old", "web", "exited", created="1"), seen("new", "web", "exited", created="2")]
    assert [c.container_id for c in metrics.pick_containers(down)["web"]] == ["new"]


def test_hourly_rollup_averages_and_merges_by_sample_count() -> None:
    samples = [
        {"edge_id": 1, "time": at(0), "reachable": True, "cpu_percent": 10.0, "cpus": 2,
         "memory_used": 100},
        {"edge_id": 1, "time": at(1800), "reachable": True, "cpu_percent": 30.0, "cpus": 2,
         "memory_used": None},
        {"edge_id": 1, "time": at(1900), "reachable": False},
        {"edge_id": 1, "time": at(3600), "reachable": True, "cpu_percent": 5.0},
        {"edge_id": 2, "time": at(60), "reachable": True, "cpu_percent": 1.0},
    ]
    hours = metrics.rollup(samples)
    assert [(a.edge_id, a.hour, a.samples, a.unreachable) for a in hours] == [
        (1, T0, 2, 1), (1, at(3600), 1, 0), (2, T0, 1, 0)]
    first = hours[0].means()
    assert first["cpu_percent"] == 20.0 and first["cpus"] == 2 and first["memory_used"] == 100
    assert first["disk_images"] is None
    merged = metrics.merge_means({"cpu_percent": 20.0}, 2, {"cpu_percent": 50.0}, 1)
    assert merged["cpu_percent"] == 30.0
    assert metrics.merge_means({"cpus": None}, 3, {"cpus": 4.0}, 1)["cpus"] == 4.0


def test_trend_buckets_and_sparkline() -> None:
    points = [(at(0), 1.0), (at(10), 3.0), (at(50), 10.0), (at(70), None), (at(500), 99.0)]
    assert metrics.trend(points, T0, at(60), buckets=3) == [2.0, None, 10.0]
    assert metrics.sparkline([0.0, None, 7.0, 3.5]) == "▁ █▅"
    assert metrics.sparkline([None, None]) == ""
    assert metrics.sparkline([2.0, 2.0]) == "▁▁"


def test_since_parsing() -> None:
    assert parse_since("90s") == timedelta(seconds=90)
    assert parse_since("1h") == timedelta(hours=1)
    assert parse_since("1.5d") == timedelta(hours=36)
    for bad in ("", "1", "h", "-1h", "0m", "1y"):
        with pytest.raises(InvalidInput, match="--since"):
            parse_since(bad)


# ---------------------------------------------------------------- records (no engine)


@pytest.fixture
def records(empty_records: str) -> str:
    """An empty database of its own for each test (SQLite, then PostgreSQL)."""
    return empty_records


def make_edge(name: str, **fields: Any) -> int:
    add_edge(name, f"tcp://127.0.0.1:{2000 + len(name)}", check=False)
    with session_scope() as session:
        edge = session.exec(select(Edge).where(Edge.name == name)).one()
        for key, value in fields.items():
            setattr(edge, key, value)
        session.add(edge)
        return int(edge.id or 0)


def reading(edge_id: int, name: str, when: datetime, *, work: Work = Work.SAMPLE,
            reachable: bool = True, containers: list[ContainerReading] | None = None,
            **fields: Any) -> EdgeReading:
    return EdgeReading(edge_id=edge_id, name=name, work=work, started=when, finished=when,
                       reachable=reachable, engine_version="20.10" if reachable else None,
                       containers=containers or [], **fields)


def test_schema_at_head_matches_the_models(records: None) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext
    from sqlmodel import SQLModel

    with get_engine().connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), SQLModel.metadata)
    assert diff == []


def test_plan_record_and_previous_counters(records: None) -> None:
    one = make_edge("e1")
    two = make_edge("e2", telemetry_interval=10, heartbeat_interval=5)
    plan = T.plan_sweep.fn(T0)
    assert [[t.conn.name for t in b] for b in plan] == [["e1", "e2"]]
    assert all(t.work is Work.SAMPLE and t.previous_cpu == {} for t in plan[0])
    container = ContainerReading(id="c1", name="web", state="running", cpu_total=5,
                                 cpu_system=50, cpu_percent=1.5, memory_usage=100)
    T.record_readings.fn([reading(one, "e1", at(1), containers=[container], cpus=2,
                                  memory_total=1000, containers_running=1,
                                  containers_stopped=0),
                          reading(two, "e2", at(1), reachable=False, error="refused")], T0)
    # e1 (60 s / 20 s) is not due after 6 s, e2 (10 s / 5 s) needs a heartbeat
    assert [[(t.conn.name, t.work) for t in b] for b in T.plan_sweep.fn(at(6))] == [
        [("e2", Work.HEARTBEAT)]]
    due = {t.conn.name: t for b in T.plan_sweep.fn(at(60)) for t in b}
    assert due["e1"].work is Work.SAMPLE and due["e1"].previous_cpu == {"c1": (5, 50)}
    assert due["e2"].previous_cpu == {}  # an unreachable sample has no counters
    with pytest.raises(NotFound, match="nope"):
        T.plan_sweep.fn(T0, edges=["e1", "nope"])
    with session_scope() as session:
        rows = session.exec(select(EdgeSample).order_by(EdgeSample.edge_id)).all()
        e2 = session.get(Edge, two)
        assert e2 is not None and e2.last_error == "refused" and e2.last_contact is None
    assert [(r.reachable, r.cpu_percent, r.memory_used, r.error) for r in rows] == [
        (True, 1.5, 100, None), (False, None, None, "refused")]


def test_disk_use_is_read_on_its_own_slower_cadence(records: None,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGEFLEET_TELEMETRY_DISK_SECONDS", "600")
    get_settings.cache_clear()
    one = make_edge("e1")
    first = T.plan_sweep.fn(T0)[0][0]
    assert first.read_disk and first.previous_disk == {}  # never read: read it now
    disk = {"disk_images": 7_000, "disk_containers": 30, "disk_volumes": 0}
    T.record_readings.fn([reading(one, "e1", T0, disk_read=True, cpus=4,
                                  memory_total=2**30, **disk)], T0)
    later = T.plan_sweep.fn(at(60))[0][0]
    assert not later.read_disk and later.previous_disk == disk  # carried over, not read
    # the engine's figures (`/info`) are carried over with the disk figures
    assert later.previous_engine == {"engine_version": "20.10", "cpus": 4,
                                     "memory_total": 2**30}
    assert later.previous_containers == []  # (read all the same if containers come or go)
    T.record_readings.fn([reading(one, "e1", at(60), **disk)], at(60))  # carried, not read
    assert not T.plan_sweep.fn(at(540))[0][0].read_disk
    assert T.plan_sweep.fn(at(540), force=True)[0][0].read_disk  # asked for: read it all
    assert T.plan_sweep.fn(at(600))[0][0].read_disk  # due again 600 s after the last read
    web = ContainerReading(id="c1", name="web", state="running")
    T.record_readings.fn([reading(one, "e1", at(600), containers=[web], disk_read=True,
                                  **disk)], at(600))
    assert T.plan_sweep.fn(at(660))[0][0].previous_containers == ["c1"]
    T.record_readings.fn([reading(one, "e1", at(660), reachable=False, error="gone")],
                         at(660))
    gone = T.plan_sweep.fn(at(720))[0][0]
    assert gone.read_disk and gone.previous_engine == {}  # no figures to carry over: read them
    monkeypatch.setenv("EDGEFLEET_TELEMETRY_DISK_SECONDS", "0")
    get_settings.cache_clear()
    T.record_readings.fn([reading(one, "e1", at(700), disk_read=True, **disk)], at(700))
    assert T.plan_sweep.fn(at(760))[0][0].read_disk  # 0: every sample reads it


def test_availability_changes_are_recorded_once(records: None) -> None:
    one = make_edge("e1", last_contact=T0, status="ONLINE", heartbeat_interval=2)
    make_edge("e2", last_contact=T0, status="ONLINE", heartbeat_interval=20)
    assert T.mark_availability.fn(at(14)) == []
    changes = T.mark_availability.fn(at(15))
    assert [(c.edge, c.status, c.previous) for c in changes] == [
        ("e1", Availability.OFFLINE, "ONLINE")]
    assert T.mark_availability.fn(at(16)) == []  # already OFFLINE: nothing new
    T.record_readings.fn([reading(one, "e1", at(20), work=Work.HEARTBEAT)], at(20))
    back = T.mark_availability.fn(at(20))
    assert [(c.edge, c.status) for c in back] == [("e1", Availability.ONLINE)]
    with session_scope() as session:
        history = session.exec(select(EdgeAvailability).order_by(EdgeAvailability.id)).all()
    assert [(h.status, h.reason) for h in history] == [("OFFLINE", "no contact"),
                                                       ("ONLINE", None)]
    statuses = {e.name: e.status for e in list_edges()}
    assert statuses == {"e1": "ONLINE", "e2": "ONLINE"}


def test_edge_list_status_follows_the_rule_even_without_a_sweep(records: None) -> None:
    make_edge("quiet", last_contact=datetime.now(UTC) - timedelta(minutes=5), status="ONLINE")
    make_edge("fresh", last_contact=datetime.now(UTC), status="ONLINE")
    make_edge("never")
    public = {e.name: edge_public(e)["status"] for e in list_edges()}
    assert public == {"quiet": "OFFLINE", "fresh": "ONLINE", "never": "OFFLINE"}


def make_deployment(edge_id: int, services: list[tuple[str, str]], state: str = "STARTED",
                    updated: datetime = T0) -> str:
    with session_scope() as session:
        app = Application(name=f"app-{len(services)}-{state.lower()}")
        session.add(app)
        session.flush()
        version = ApplicationVersion(application_id=int(app.id or 0), version="1.0.0",
                                     kind="compose")
        session.add(version)
        session.flush()
        dep = Deployment(application_id=int(app.id or 0), version_id=int(version.id or 0),
                         edge_id=edge_id, state=state, updated_at=updated)
        session.add(dep)
        session.flush()
        for service, cid in services:
            session.add(ContainerStatus(deployment_id=dep.id, service=service, container_id=cid,
                                        image="hello:1", state="running", health="healthy"))
        return dep.id


def observed_reading(edge_id: int, when: datetime, attrs: list[dict[str, Any]]) -> EdgeReading:
    containers, observed = [], []
    for a in attrs:
        c, o = edge_readings.container_reading(a, None, "127.0.0.1", {}, 2)
        containers.append(c)
        observed.append(o)
    return reading(edge_id, "e1", when, containers=containers, observed=observed)


def test_a_dead_container_degrades_its_started_deployment(records: None) -> None:
    edge = make_edge("e1")
    web, db = "a" * 12, "b" * 12
    dep = make_deployment(edge, [("web", web), ("db", db)])
    other = make_deployment(edge, [("web", "c" * 12)], state="UPDATING")
    died = observed_reading(edge, at(60), [
        inspect_attrs(web + "0" * 52, deployment=dep, service="web"),
        inspect_attrs(db + "0" * 52, status="exited", exit_code=137, deployment=dep,
                      service="db", health=None),
    ])
    assert T.refresh_deployments.fn([died]) == {dep: "service db: exited, exit code 137"}
    with session_scope() as session:
        rows = {c.service: c for c in session.exec(select(ContainerStatus).where(
            ContainerStatus.deployment_id == dep)).all()}
        untouched = session.exec(select(ContainerStatus).where(
            ContainerStatus.deployment_id == other)).one()
    assert rows["db"].state == "exited" and rows["web"].state == "running"
    assert rows["web"].urls == ["http://127.0.0.1:32768"]
    assert untouched.state == "running"  # a deployment a flow is changing is left alone
    assert T.refresh_deployments.fn([died]) == {}  # unchanged: no write, no change reported
    gone = observed_reading(edge, at(120), [inspect_attrs(web + "0" * 52, deployment=dep)])
    assert T.refresh_deployments.fn([gone]) == {dep: "service db: container missing"}
    healed = observed_reading(edge, at(180), [
        inspect_attrs(web + "0" * 52, deployment=dep, service="web"),
        inspect_attrs("d" * 64, deployment=dep, service="db", created="2026-03-01T12:02:00Z")])
    assert T.refresh_deployments.fn([healed]) == {dep: None}
    # a reading older than the deployment's last change is not applied
    edge2 = make_edge("e2")
    newer = make_deployment(edge2, [("web", "e" * 12)], updated=at(500))
    stale = observed_reading(edge2, at(400), [])
    assert T.refresh_deployments.fn([stale]) == {}
    with session_scope() as session:
        row = session.get(Deployment, newer)
        assert row is not None and row.degraded is None


def sample(edge_id: int, when: datetime, reachable: bool = True, **fields: Any) -> EdgeSample:
    return EdgeSample(edge_id=edge_id, time=when, reachable=reachable, **fields)


def test_retention_rolls_up_old_samples_and_deletes_past_the_window(records: None) -> None:
    edge = make_edge("e1")
    now = datetime(2026, 3, 20, 12, 30, tzinfo=UTC)
    old_hour = datetime(2026, 3, 10, 8, 0, tzinfo=UTC)
    with session_scope() as session:
        session.add(sample(edge, old_hour + timedelta(minutes=1), cpu_percent=10.0, cpus=2,
                           memory_used=100))
        session.add(sample(edge, old_hour + timedelta(minutes=31), cpu_percent=20.0, cpus=2,
                           memory_used=300))
        session.add(sample(edge, old_hour + timedelta(minutes=40), reachable=False))
        # inside the raw window (7 days): kept as they are
        session.add(sample(edge, now - timedelta(days=6), cpu_percent=1.0))
        session.add(sample(edge, now - timedelta(minutes=5), cpu_percent=2.0))
        session.add(EdgeSampleHourly(edge_id=edge, hour=now - timedelta(days=366), samples=3))
        session.add(EdgeSampleHourly(edge_id=edge, hour=now - timedelta(days=300), samples=3))
        session.add(EdgeAvailability(edge_id=edge, time=now - timedelta(days=400),
                                     status="OFFLINE"))
    result = T.apply_retention.fn(now, chunk=2)  # small chunks: the loop runs twice
    assert result == {"rolled_up": 3, "hours_written": 2, "hours_deleted": 1,
                      "history_deleted": 1}
    with session_scope() as session:
        raw = session.exec(select(EdgeSample).order_by(EdgeSample.time)).all()
        hourly = session.exec(select(EdgeSampleHourly).order_by(EdgeSampleHourly.hour)).all()
        history = session.exec(select(EdgeAvailability)).all()
    assert [s.cpu_percent for s in raw] == [1.0, 2.0]
    assert [(h.hour, h.samples, h.unreachable, h.cpu_percent, h.memory_used) for h in hourly] == [
        (now - timedelta(days=300), 3, 0, None, None),
        (old_hour, 2, 1, 15.0, 200.0),
    ]
    assert history == []
    assert T.apply_retention.fn(now)["rolled_up"] == 0  # nothing left to do


def test_telemetry_json_per_edge(records: str) -> None:
    edge = make_edge("e1", last_contact=datetime.now(UTC), status="ONLINE")
    make_edge("e2")
    now = datetime.now(UTC)
    containers = [{"id": "c1", "name": "web", "state": "running", "cpu_percent": 0.5,
                   "memory_usage": 1000, "cpu_total": 1, "cpu_system": 2}]
    with session_scope() as session:
        for minutes, cpu in ((50, 1.0), (20, 3.0), (2, 5.0)):
            session.add(sample(edge, now - timedelta(minutes=minutes), cpu_percent=cpu,
                               memory_total=8 * 2**30, cpus=4, containers_running=1,
                               containers_stopped=2, memory_used=1000,
                               containers=containers))
        session.add(sample(edge, now - timedelta(minutes=1), reachable=False, error="refused"))
        session.add(sample(edge, now - timedelta(hours=3), cpu_percent=9.0))
        session.add(EdgeSampleHourly(edge_id=edge, hour=now - timedelta(hours=30), samples=3,
                                     cpu_percent=7.0, memory_used=500))
        session.add(EdgeAvailability(edge_id=edge, time=now - timedelta(minutes=30),
                                     status="ONLINE", reason="answered"))
    rows = telemetry.edge_telemetry(since="1h")
    assert [r["edge"] for r in rows] == ["e1", "e2"]
    first, second = rows
    assert first["status"] == "ONLINE" and first["samples"] == 4
    assert first["unreachable_samples"] == 1
    latest = first["latest"]
    assert latest["cpu_percent"] == 5.0  # the newest reachable sample
    assert (latest["containers_running"], latest["memory_total"], latest["cpus"]) == (
        1, 8 * 2**30, 4)
    assert latest["containers"] == [{
        "name": "web", "id": "c1", "deployment_id": None, "service": None, "image": None,
        "state": "running", "health": None, "restart_count": None, "cpu_percent": 0.5,
        "memory_usage": 1000, "memory_limit": None, "net_rx": None, "net_tx": None,
        "block_read": None, "block_write": None}]
    assert [v for v in first["trend"]["cpu_percent"] if v is not None] == [1.0, 3.0, 5.0]
    assert second["status"] == "OFFLINE" and second["latest"] is None
    assert second["samples"] == 0
    assert telemetry.edge_telemetry("e1", since="4h")[0]["samples"] == 5
    result = CliRunner().invoke(app, ["telemetry", "--json", "--since", "1h"])
    assert result.exit_code == 0, result.output
    assert [r["edge"] for r in json.loads(result.stdout)] == ["e1", "e2"]
    table = CliRunner().invoke(app, ["telemetry", "e1"])
    assert table.exit_code == 0 and "containers on e1" in table.stdout
    bad = CliRunner().invoke(app, ["telemetry", "--since", "soon"])
    assert bad.exit_code == 1 and "--since" in bad.output
    # the command's read without the ORM gives the API's answer (None: PostgreSQL, API reads)
    later = now + timedelta(seconds=1)
    for since in ("1h", "4h", "2d"):
        fast = record_reads.telemetry_views(since=since, now=later)
        api_rows = telemetry.edge_telemetry(since=since, now=later)
        assert fast == api_rows or (fast is None and not records.startswith("sqlite"))
    assert api_rows[0]["availability"][0]["reason"] == "answered"
    assert 7.0 in api_rows[0]["trend"]["cpu_percent"]  # the hourly average 30 h back
    assert record_reads.telemetry_views("e2", now=later) in (
        None, telemetry.edge_telemetry("e2", now=later))
    assert record_reads.telemetry_views("nope") is None  # the API says "no edge named"


def test_fleet_rows_put_offline_and_degraded_first() -> None:
    now = at(1000)
    edges = [Edge(id=1, name="a", docker_host="x", last_contact=at(999)),
             Edge(id=2, name="b", docker_host="x", last_contact=at(0)),
             Edge(id=3, name="c", docker_host="x", last_contact=at(999))]
    samples = {1: EdgeSample(edge_id=1, reachable=True, cpus=2, cpu_percent=3.5,
                             memory_used=2**30, memory_total=4 * 2**30, containers_running=2,
                             containers_stopped=1)}
    rows, hidden = T.fleet_rows(edges, samples, {3: (2, 1), 1: (1, 0)}, now, limit=2)
    assert [(r["edge"], r["status"]) for r in rows] == [("b", "OFFLINE"), ("c", "ONLINE")]
    assert hidden == 1 and rows[1]["deployments"] == "2 (1 degraded)"
    full = {r["edge"]: r for r in T.fleet_rows(edges, samples, {}, now, limit=10)[0]}
    assert full["a"]["memory (containers / total)"] == "1.0 GiB / 4.0 GiB"
    assert full["a"]["containers (running / stopped)"] == "2 / 1"
    assert full["a"]["CPU % (containers)"] == 3.5 and full["c"]["CPUs"] == "n/a"
    assert T.human_size(2_500_000) == "2.4 MiB" and T.human_size(None) == "n/a"


def test_an_unreachable_edge_is_a_reading_not_an_error(tmp_path: Path) -> None:
    target = EdgeTarget(edge_id=1, work=Work.SAMPLE, conn=EngineConnection(
        name="gone", docker_host="tcp://127.0.0.1:9"))  # nothing listens on port 9
    result = edge_readings.read_many([target], timeout=2, in_flight=1)[0]
    assert not result.reachable and result.error and "gone" in result.error
    missing = EdgeTarget(edge_id=2, work=Work.HEARTBEAT, conn=EngineConnection(
        name="nocert", docker_host="tcp://127.0.0.1:9", tls_ca=str(tmp_path / "ca.pem"),
        tls_cert=str(tmp_path / "cert.pem"), tls_key=str(tmp_path / "key.pem")))
    result = edge_readings.read_many([missing], timeout=2, in_flight=1)[0]
    assert not result.reachable and "does not exist" in (result.error or "")


def test_a_late_control_plane_does_not_cost_an_answering_edge_its_status() -> None:
    """Silent past the rule, but nobody tried since its last answer: our delay, not its."""
    answered = T0
    tried_before = T0 - timedelta(seconds=1)  # the attempt that got the last answer
    assert metrics.availability(answered, 2, at(30), tried_before) is Availability.ONLINE
    assert metrics.availability(answered, 2, at(74), tried_before) is Availability.ONLINE
    assert metrics.availability(answered, 2, at(74.5), tried_before) is Availability.OFFLINE
    failed_try = at(12)  # a contact tried after the last answer failed: the edge's silence
    assert metrics.availability(answered, 2, at(14.5), failed_try) is Availability.OFFLINE
    assert metrics.availability(answered, 2, at(14), failed_try) is Availability.ONLINE


def test_seconds_until_the_next_edge_is_due() -> None:
    assert metrics.seconds_until_due([], T0) is None
    assert metrics.seconds_until_due([(None, 60, None, 20)], T0) == 0
    fast = (T0, 60, T0, 2)
    slow = (T0, 60, T0, 20)
    assert metrics.seconds_until_due([slow, fast], T0) == 1.0  # 2 s less the 1 s tolerance
    assert metrics.seconds_until_due([slow], at(30)) == 0  # overdue: now


def test_a_killed_sweeper_never_keeps_the_scheduled_turn(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """Scheduled sweeps take turns through a lock the kernel frees when its process dies (a
    Prefect concurrency slot outlived a killed serving process and cancelled every sweep)."""
    import os
    import subprocess
    import sys

    monkeypatch.setenv("EDGEFLEET_HOME", str(tmp_path))
    get_settings.cache_clear()
    script = ("import time\nfrom edgefleet.tasks.telemetry import schedule_slot\n"
              "with schedule_slot() as held:\n    print(held, flush=True)\n    time.sleep(120)\n")
    holder = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "EDGEFLEET_HOME": str(tmp_path)})
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "True"
        with T.schedule_slot() as held:
            assert held is False  # the other process has the turn
    finally:
        holder.kill()
        holder.wait()
    with T.schedule_slot() as held:
        assert held is True  # freed with its process
    get_settings.cache_clear()


def test_a_scheduled_sweep_waits_for_its_turn_within_its_window(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The next run takes over as soon as the previous one ends, not one interval later."""
    import threading

    monkeypatch.setenv("EDGEFLEET_HOME", str(tmp_path))
    get_settings.cache_clear()
    release = threading.Event()

    def hold() -> None:
        with T.schedule_slot() as held:
            assert held
            release.wait(10)

    # flock is per open file: a second open of the lock file in this process contends too
    holder = threading.Thread(target=hold)
    holder.start()
    time.sleep(0.2)
    with T.schedule_slot(wait=0.3) as held:
        assert held is False  # kept beyond the wait
    threading.Timer(0.5, release.set).start()
    started = time.monotonic()
    with T.schedule_slot(wait=5) as held:
        assert held is True
        assert 0.3 < time.monotonic() - started < 4
    holder.join()
    get_settings.cache_clear()
