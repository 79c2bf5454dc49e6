"""Telemetry on the real lab: samples, OFFLINE/ONLINE with events, deployment refresh, bench.

The sweep runs in this process (the flow function), reporting to the session's Prefect
server. The dockerd kill and restart happen in a separate small lab of their own (own home,
ports and records): the session lab's edges are shared by every other test.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from prefect.settings import (
    PREFECT_API_URL,
    PREFECT_FLOWS_HEARTBEAT_FREQUENCY,
    temporary_settings,
)
from sqlmodel import col, select
from typer.testing import CliRunner

import edgefleet
from edgefleet.cli.main import app
from edgefleet.db import session_scope
from edgefleet.engine import cli_environment, engine_client
from edgefleet.flows.telemetry import collect_telemetry
from edgefleet.lab import LabStatus, lab_down, lab_status, lab_up
from edgefleet.lab.engines import sample_workload
from edgefleet.models.connections import EngineConnection
from edgefleet.models.records import Edge
from edgefleet.models.telemetry import EdgeAvailability, EdgeSample
from tests.lab_helpers import unique, wait_for

pytestmark = pytest.mark.lab
TEST_LABEL = "edgefleet.test"
ROOT = Path(__file__).resolve().parent.parent


def sweep(api_url: str, **kwargs: Any) -> dict[str, Any]:
    """One run of collect-telemetry in this process, reported to ``api_url``."""
    with temporary_settings({PREFECT_API_URL: api_url, PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
        return collect_telemetry(**kwargs)


def docker_ps(conn: EngineConnection, *args: str) -> list[str]:
    """Container ids from the docker CLI itself (`docker ps`) against the edge."""
    out = subprocess.run(["docker", "ps", "-q", "--no-trunc", *args], env=cli_environment(conn),
                         capture_output=True, text=True, timeout=30, check=True).stdout
    return out.split()


def samples_since(edge: str, since: datetime) -> list[EdgeSample]:
    with session_scope() as session:
        row = session.exec(select(Edge).where(Edge.name == edge)).one()
        return list(session.exec(select(EdgeSample).where(
            EdgeSample.edge_id == row.id, col(EdgeSample.time) >= since)
            .order_by(col(EdgeSample.time))).all())


@pytest.fixture
def busy_edges(lab: LabStatus) -> Iterator[dict[str, EngineConnection]]:
    """One running and one exited test container on each session edge; removed after."""
    conns = {e.name: e.connection for e in lab.edges}
    with sample_workload(list(conns.values()), f"{lab.registry}/edgefleet/ticker:1.0.0",
                         TEST_LABEL, running=1, exited=1):
        yield conns


def test_samples_accumulate_with_plausible_values(
        lab: LabStatus, prefect_api: str, busy_edges: dict[str, EngineConnection]) -> None:
    started = datetime.now(UTC)
    names = sorted(busy_edges)
    for name in names:
        edgefleet.set_edge(name, telemetry_interval=2, heartbeat_interval=2)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and min(
                len(samples_since(n, started)) for n in names) < 3:
            summary = sweep(prefect_api, edges=names)
            assert summary["unreachable"] == []
            time.sleep(1)
        # counts against `docker ps` at a quiet moment: the same before and after a sample
        for name, conn in busy_edges.items():
            before = (docker_ps(conn), docker_ps(conn, "-a"))
            sweep(prefect_api, edges=[name], force=True)
            assert (docker_ps(conn), docker_ps(conn, "-a")) == before
            running, everything = before
            newest = samples_since(name, started)[-1]
            assert newest.containers_running == len(running) >= 1
            assert newest.containers_stopped == len(everything) - len(running) >= 1
    finally:
        for name in names:
            edgefleet.set_edge(name, telemetry_interval=60, heartbeat_interval=20)
    for name in names:
        rows = [s for s in samples_since(name, started) if s.reachable]
        assert len(rows) >= 3, name
        with engine_client(busy_edges[name], timeout=30) as client:
            info = client.info()
        for row in rows:
            assert row.memory_total == info["MemTotal"] > 0
            assert row.cpus == info["NCPU"] >= 1
            assert row.engine_version == info["ServerVersion"]
            assert row.disk_images and row.disk_images > 0
        last = rows[-1]
        ticking = [c for c in last.containers if c["state"] == "running"]
        assert ticking and all(c["memory_usage"] > 0 and c["memory_limit"] > 0
                               for c in ticking)
        # the CPU % of a container comes from its previous stored sample
        before = {p["id"] for p in rows[-2].containers if p["state"] == "running"}
        assert any(c["id"] in before for c in ticking)
        assert all(c.get("cpu_percent") is not None for c in ticking if c["id"] in before)
        stopped = [c for c in last.containers if c["state"] != "running"]
        assert stopped and all(c.get("cpu_percent") is None for c in stopped)
    result = CliRunner().invoke(app, ["telemetry", "--json", "--since", "10m"])
    assert result.exit_code == 0, result.output
    data = {row["edge"]: row for row in json.loads(result.stdout)}
    for name in names:
        row = data[name]
        assert row["status"] == "ONLINE" and row["last_contact"]
        assert row["samples"] >= 4
        latest = row["latest"]
        assert latest["memory_total"] > 0 and latest["cpus"] >= 1
        assert latest["containers_running"] >= 1
        assert {"name", "state", "cpu_percent", "memory_usage"} <= set(latest["containers"][0])
    listed = CliRunner().invoke(app, ["edge", "list", "--json"])
    assert {e["name"]: e["status"] for e in json.loads(listed.stdout)} == {
        n: "ONLINE" for n in names}


def events_of(api_url: str, edge: str, since: datetime) -> list[dict[str, Any]]:
    """Events about ``edge`` since ``since``, read back from the Prefect API."""
    body = {"filter": {"occurred": {"since": since.isoformat()},
                       "event": {"prefix": ["edgefleet.edge."]},
                       "resource": {"id": [f"edgefleet.edge.{edge}"]}},
            "limit": 50}
    resp = httpx.post(f"{api_url}/events/filter", json=body, timeout=10, trust_env=False)
    resp.raise_for_status()
    return list(resp.json()["events"])


def last_contact_of(name: str) -> datetime | None:
    with session_scope() as session:
        return session.exec(select(Edge.last_contact).where(Edge.name == name)).one()


def status_of(name: str) -> str:
    return str(next(e for e in edgefleet.list_edges() if e.name == name).status)


def test_a_killed_engine_goes_offline_and_comes_back_online(
        lab: LabStatus, prefect_api: str, tmp_path: Path,
        switch_home: Callable[[Path], AbstractContextManager[Path]]) -> None:
    heartbeat = 2
    limit = 2 * heartbeat + 10
    with switch_home(tmp_path / "home"):
        try:
            small = lab_up(edges=2)
            for edge in small.edges:
                edgefleet.set_edge(edge.name, telemetry_interval=3, heartbeat_interval=heartbeat)
            sweep(prefect_api, force=True)
            assert {e.name: e.status for e in edgefleet.list_edges()} == {
                "lab-1": "ONLINE", "lab-2": "ONLINE"}
            victim = small.edge("lab-2")
            assert victim.pid
            since = datetime.now(UTC)
            os.kill(victim.pid, signal.SIGKILL)
            killed = time.monotonic()
            durations = []
            while status_of("lab-2") != "OFFLINE":
                assert time.monotonic() - killed < limit + 20, "lab-2 never went OFFLINE"
                started = time.monotonic()
                summary = sweep(prefect_api)
                durations.append(time.monotonic() - started)
                assert "lab-1" not in summary["unreachable"]
                time.sleep(0.5)
            took = time.monotonic() - killed
            with session_scope() as session:
                history = session.exec(select(EdgeAvailability).where(
                    col(EdgeAvailability.time) >= since)).all()
            assert [h.status for h in history] == ["OFFLINE"]
            assert history[0].reason and "lab-2" in history[0].reason
            last_contact = history[0].last_contact
            assert last_contact is not None
            # The rule counts from the last contact (just before the kill here); a sweep
            # sees it at its next run, so the sweep period is the only tolerance.
            period = max(durations) + 0.5
            silent = (history[0].time - last_contact).total_seconds()
            assert limit < silent <= limit + period, (silent, durations)
            # Wall clock from the kill: the detecting sweep, plus one loop turn (status read,
            # pause) before this test sees it; the rule itself is checked exactly above.
            assert took <= limit + 2 * period, f"OFFLINE {took:.1f}s after the kill ({durations})"
            # lab-1's telemetry went on (sampled, never unreachable, and contacted within a
            # heartbeat of the OFFLINE verdict); lab-2's failures are recorded as samples.
            # How many samples fit in the wait depends on how long each sweep took.
            assert [s for s in samples_since("lab-1", since) if s.reachable]
            assert status_of("lab-1") == "ONLINE"
            lab1_contact = last_contact_of("lab-1")
            assert lab1_contact is not None
            behind = (history[0].time - lab1_contact).total_seconds()
            assert behind <= heartbeat + period, (behind, durations)
            failed = samples_since("lab-2", since)
            assert failed and not any(s.reachable for s in failed)
            assert all(s.error and "lab-2" in s.error for s in failed)
            offline = wait_for(lambda: [e for e in events_of(prefect_api, "lab-2", since)
                                        if e["event"] == "edgefleet.edge.offline"],
                               20, "the offline event")
            assert offline[0]["payload"]["docker_host"] == victim.docker_host

            back_since = datetime.now(UTC)
            lab_up(edges=2)
            # lab up waited for it; a lab status moments later may meet a slow answer on a
            # busy machine, so the status is asked for a while (the rule tested is the sweep's)
            wait_for(lambda: lab_status().edge("lab-2").answering, 30, "lab-2 answering")
            wait_for(lambda: sweep(prefect_api) and status_of("lab-2") == "ONLINE", 30,
                     "lab-2 ONLINE again", every=0.2)
            online = wait_for(lambda: [e for e in events_of(prefect_api, "lab-2", back_since)
                                       if e["event"] == "edgefleet.edge.online"],
                              20, "the online event")
            assert online[0]["resource"]["prefect.resource.name"] == "lab-2"
            result = CliRunner().invoke(app, ["telemetry", "lab-2", "--json"])
            view = json.loads(result.stdout)[0]
            assert view["status"] == "ONLINE"
            assert [a["status"] for a in view["availability"]] == ["OFFLINE", "ONLINE"]
        finally:
            lab_down()
    assert [e.answering for e in lab_status().edges] == [True, True]  # the session lab: untouched


def test_a_killed_container_shows_in_its_deployment_after_the_next_sweep(
        lab: LabStatus, prefect_api: str, local_runs: None) -> None:
    name = unique("tele")
    edgefleet.create_application(name, "1.0.0", image=f"{lab.registry}/edgefleet/hello:1.0.0",
                                 ports=["8080"])
    edgefleet.publish_version(name, "1.0.0")
    status = edgefleet.deploy(name, "lab-2")
    try:
        assert status["state"] == "STARTED", status["last_error"]
        assert status["degraded"] is None
        sweep(prefect_api, edges=["lab-2"], force=True)
        assert edgefleet.deployment_status(status["id"])["degraded"] is None
        (container,) = status["containers"]
        with engine_client(lab.edge("lab-2").connection, timeout=30) as client:
            client.containers.get(container["container_id"]).kill()
        sweep(prefect_api, edges=["lab-2"], force=True)
        result = CliRunner().invoke(app, ["status", status["id"], "--json"])
        after = json.loads(result.stdout)
        assert after["state"] == "STARTED"  # the record of intent; the health is below
        assert after["degraded"] == f"service {name}: exited, exit code 137"
        (seen,) = after["containers"]
        assert seen["state"] == "exited" and seen["container_id"] == container["container_id"]
        shown = CliRunner().invoke(app, ["status", status["id"]])
        assert "degraded (telemetry)" in shown.stdout
    finally:
        edgefleet.delete_deployment(status["id"], force=True)


def test_benchmark_short_mode_prints_its_fields(lab: LabStatus) -> None:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    run = subprocess.run(
        [sys.executable, "bench/telemetry_sweep.py", "--short", "--json"], cwd=ROOT, env=env,
        capture_output=True, text=True, timeout=600, check=False)
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads(run.stdout)
    lab_part = report["lab"]
    assert lab_part["edges"] == 2 and lab_part["sweeps"] >= 1
    for key in ("cpu_ms_per_edge", "wall_s_per_sweep", "baseline_ping_cpu_ms",
                "cpu_ratio_to_ping", "empty_sweep_cpu_ms", "read_only_cpu_ms_per_edge"):
        assert lab_part[key] > 0, key
    assert lab_part["fan_out"]["edges"] == 20 and lab_part["fan_out"]["cpu_ms_per_edge"] > 0
    sim = report["simulation"]
    assert sim["simulated"] is True and sim["runs"]
    for run_report in sim["runs"]:
        for key in ("edges", "cpu_ms_per_edge", "wall_s", "edges_per_minute",
                    "cpu_ratio_to_ping"):
            assert run_report[key] > 0, key
