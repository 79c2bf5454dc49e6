"""What a telemetry sweep costs the control plane per edge: on the lab, and simulated at scale.

Lab: forced sweeps (flow `collect-telemetry` in this process) of the lab's real dockerd
edges, each running 2 ticker containers (and 1 exited) for the sweep's duration; then
``--fan-out`` edge records spread over those real engines, so the fixed cost of a sweep
(its Prefect flow and task runs) is shared as in a fleet.

Simulation (clearly not real engines): N edge records in a throw-away edgefleet home, all
pointing at a fake engine (``bench/fake_engine.py``: a separate asyncio process answering the
same Docker API endpoints over mutual TLS, holding one-shot stats to a 1 s tick as dockerd
does); everything on our side is the real code path (flow, tasks, the async Engine API
client, SQLite records, Prefect API calls).

Measured in this process: CPU seconds (``time.process_time``, every thread of the control
plane; the Prefect API server and the fake engine run in other processes) and wall time per
sweep. Baseline, same process, same engine: a bare ``docker version`` (open a client, one
call, close), so results are ratios (machines here are noisy). Targets: <= 20 ms CPU per
edge per sweep; 10,000 edges swept within a 60 s interval. Nothing here is asserted.

    python bench/telemetry_sweep.py [--sweeps 2] [--scale 1000,10000] [--short] [--json]
"""

from __future__ import annotations

import argparse
import functools
import json
import multiprocessing
import os
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import fake_engine  # noqa: E402
from edgefleet import db, server  # noqa: E402
from edgefleet.engine import engine_client  # noqa: E402
from edgefleet.lab import LabStatus, certs, lab_status, lab_up  # noqa: E402
from edgefleet.lab.engines import sample_workload  # noqa: E402
from edgefleet.models.connections import EngineConnection  # noqa: E402
from edgefleet.settings import get_settings  # noqa: E402

BENCH_LABEL = "edgefleet.bench"
TARGET_CPU_MS = 20.0
TARGET_EDGES, TARGET_SECONDS = 10_000, 60.0


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def proc_cpu(pid: int) -> float:
    """CPU seconds (user + system) of another process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def ping_baseline(conn: EngineConnection, calls: int) -> float:
    """CPU ms of one bare `docker version` (client opened, one call, closed)."""
    with engine_client(conn) as client:
        client.version()  # warm: imports, first TLS context
    started = time.process_time()
    for _ in range(calls):
        with engine_client(conn) as client:
            client.version()
    return (time.process_time() - started) / calls * 1000


def run_sweeps(sweeps: int, edges: int) -> list[dict[str, float]]:
    """Forced sweeps of every edge; CPU and wall of each."""
    from edgefleet.flows.telemetry import collect_telemetry

    results = []
    for _ in range(sweeps):
        cpu, wall = time.process_time(), time.perf_counter()
        summary = collect_telemetry(force=True)
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        if summary["sampled"] != edges or summary["unreachable"]:
            raise RuntimeError(f"sweep sampled {summary['sampled']} of {edges} edges, "
                               f"unreachable: {summary['unreachable'][:5]}")
        results.append({"cpu_s": cpu, "wall_s": wall, "changes": len(summary["changes"])})
    return results


@functools.cache
def home_api_url() -> str:
    """The Prefect API of the home the benchmark started in, as `collect` finds it (never a
    temporary server); asked once, before any throw-away home of the benchmark's own."""
    return server.flow_api_url()


def with_prefect(func: Callable[[], Any]) -> Any:
    """Run ``func`` reporting to ``home_api_url()`` without flow heartbeats, as `collect`."""
    from prefect.settings import (
        PREFECT_API_URL,
        PREFECT_FLOWS_HEARTBEAT_FREQUENCY,
        temporary_settings,
    )

    updates: dict[Any, Any] = {PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None,
                               PREFECT_API_URL: home_api_url()}
    with temporary_settings(updates):
        return func()


def empty_sweeps(sweeps: int) -> float:
    """CPU seconds of a sweep in which no edge is due: the fixed cost of a sweep (a flow
    run and its few task runs), whatever the fleet size; it dominates a 2-edge lab."""
    from edgefleet.flows.telemetry import collect_telemetry

    total = 0.0
    for _ in range(sweeps):
        cpu = time.process_time()
        summary = collect_telemetry(force=False)
        total += time.process_time() - cpu
        if summary["sampled"]:
            raise RuntimeError("an edge was due during the empty-sweep measurement")
    return total / sweeps


def bench_lab(sweeps: int, fanout: int) -> dict[str, Any]:
    status = lab_status()
    if not status.running:
        status = lab_up(edges=2, swarm_edges=1)
    edges = len(status.edges)
    baseline = ping_baseline(status.edges[0].connection, 20)
    with sample_workload([e.connection for e in status.edges],
                         f"{status.registry}/edgefleet/ticker:1.0.0", BENCH_LABEL,
                         running=2, exited=1):
        results = with_prefect(lambda: run_sweeps(sweeps + 1, edges))[1:]  # first: warm-up
        fixed = with_prefect(lambda: empty_sweeps(max(1, sweeps)))
        read_ms = read_only([e.connection for e in status.edges] * 3, edges)
        fanned = fan_out(status, fanout, sweeps) if fanout else None
    cpu = sum(r["cpu_s"] for r in results) / len(results)
    cpu_ms = cpu / edges * 1000
    wall = sum(r["wall_s"] for r in results) / len(results)
    return {"edges": edges, "sweeps": len(results), "cpu_ms_per_edge": round(cpu_ms, 2),
            "empty_sweep_cpu_ms": round(fixed * 1000, 1),
            "read_only_cpu_ms_per_edge": round(read_ms, 2),
            "wall_s_per_sweep": round(wall, 3), "wall_s_per_edge": round(wall / edges, 3),
            "baseline_ping_cpu_ms": round(baseline, 3),
            "cpu_ratio_to_ping": round(cpu_ms / baseline, 1),
            "read_ratio_to_ping": round(read_ms / baseline, 1), "fan_out": fanned}


def fan_out(status: LabStatus, records: int, sweeps: int) -> dict[str, Any]:
    """Sweeps of ``records`` edge records spread over the lab's real engines (each engine
    read records / engines times per sweep): the per-edge cost with the fixed cost of a
    sweep shared, on real dockerd, in a throw-away home."""
    saved = os.environ.get("EDGEFLEET_HOME")
    try:
        with tempfile.TemporaryDirectory(prefix="ef-fanout-") as tmp:
            _fleet_home(Path(tmp), records, [e.connection for e in status.edges])
            results = with_prefect(lambda: run_sweeps(max(2, sweeps), records))
    finally:
        _restore_home(saved)
    steady = results[-1]
    cpu_ms = steady["cpu_s"] / records * 1000
    return {"edges": records, "engines": len(status.edges), "sweeps": len(results),
            "cpu_ms_per_edge": round(cpu_ms, 2), "wall_s": round(steady["wall_s"], 2)}


def _restore_home(saved: str | None) -> None:
    if saved is None:
        os.environ.pop("EDGEFLEET_HOME", None)
    else:
        os.environ["EDGEFLEET_HOME"] = saved
    get_settings.cache_clear()
    db.get_engine.cache_clear()


def _fleet_home(folder: Path, edges: int, engines: list[EngineConnection]) -> None:
    """A throw-away edgefleet home with N edge records spread over ``engines``."""
    from sqlalchemy import insert

    from edgefleet.models.records import Edge

    os.environ["EDGEFLEET_HOME"] = str(folder / "home")
    get_settings.cache_clear()
    db.get_engine.cache_clear()
    now = datetime.now(UTC)
    spread = [engines[i % len(engines)] for i in range(edges)]
    rows = [{"name": f"fleet-{i:05d}", "docker_host": engine.docker_host,
             "tls_ca": engine.tls_ca, "tls_cert": engine.tls_cert,
             "tls_key": engine.tls_key, "telemetry_interval": 60,
             # a long heartbeat: a sweep slower than 2 x heartbeat + 10 s would turn the
             # edges it read first OFFLINE (rightly), and the benchmark would time that
             "heartbeat_interval": 300, "status": "ONLINE", "last_contact": now,
             "created_at": now} for i, engine in enumerate(spread)]
    with db.session_scope() as session:
        session.execute(insert(Edge), rows)


def read_only(conns: list[EngineConnection], in_flight: int) -> float:
    """CPU ms per edge of just reading (no Prefect, no records): where the CPU goes."""
    from edgefleet.edge_readings import read_many
    from edgefleet.models.readings import EdgeTarget, Work

    targets = [EdgeTarget(edge_id=i, conn=c, work=Work.SAMPLE) for i, c in enumerate(conns)]
    started = time.process_time()
    readings = read_many(targets, 30, in_flight)
    cpu = time.process_time() - started
    bad = [r.error for r in readings if not r.reachable]
    if bad:
        raise RuntimeError(f"engine refused: {bad[:3]}")
    return cpu / len(targets) * 1000


def bench_simulation(scales: list[int], sweeps: int, containers: int, running: int,
                     stats_tick: float) -> dict[str, Any]:
    saved = os.environ.get("EDGEFLEET_HOME")
    runs = []
    with tempfile.TemporaryDirectory(prefix="ef-sim-") as tmp:
        folder = Path(tmp)
        server_certs, client_certs = certs.ensure_edge_certs(folder / "certs", "sim")
        from edgefleet.lab.daemons import free_port

        port = free_port(set())
        ctx = multiprocessing.get_context("spawn")
        ready = ctx.Event()
        engine = ctx.Process(target=fake_engine.serve, daemon=True,
                             args=(port, str(server_certs), containers, running, ready, stats_tick))
        engine.start()
        try:
            if not ready.wait(30):
                raise RuntimeError("the fake engine did not start")
            conn = EngineConnection(name="sim", docker_host=f"tcp://127.0.0.1:{port}",
                                    tls_ca=str(client_certs / "ca.pem"),
                                    tls_cert=str(client_certs / "cert.pem"),
                                    tls_key=str(client_certs / "key.pem"))
            baseline = ping_baseline(conn, 200)
            read_ms = read_only([conn] * 500, get_settings().telemetry_in_flight)
            for scale in scales:
                say(f"simulation: {scale} edges ...")
                _fleet_home(folder / str(scale), scale, [conn])
                engine_cpu = proc_cpu(int(engine.pid or 0))
                results = with_prefect(lambda s=scale: run_sweeps(sweeps, s))
                engine_cpu = proc_cpu(int(engine.pid or 0)) - engine_cpu
                steady = results[-1]  # the last sweep: CPU % from stored counters too
                cpu_ms = steady["cpu_s"] / scale * 1000
                runs.append({
                    "edges": scale, "sweeps": len(results),
                    "cpu_ms_per_edge": round(cpu_ms, 2),
                    "cpu_ms_per_edge_first_sweep": round(results[0]["cpu_s"] / scale * 1000, 2),
                    "wall_s": round(steady["wall_s"], 2),
                    "edges_per_minute": round(scale / steady["wall_s"] * 60),
                    "cpu_ratio_to_ping": round(cpu_ms / baseline, 1),
                    "fake_engine_cpu_ms_per_edge": round(engine_cpu / len(results) / scale
                                                         * 1000, 2),
                    "availability_changes": sum(r["changes"] for r in results),
                })
        finally:
            engine.kill()
            engine.join(10)
            _restore_home(saved)
    settings = get_settings()
    return {"simulated": True, "containers_per_edge": containers, "running_per_edge": running,
            "stats_tick_s": stats_tick,
            "edges_in_flight": settings.telemetry_in_flight,
            "baseline_ping_cpu_ms": round(baseline, 3),
            "read_only_cpu_ms_per_edge": round(read_ms, 2), "cpus": os.cpu_count(),
            "runs": runs}


def report(result: dict[str, Any]) -> None:
    lab = result.get("lab")
    if lab:
        print(f"lab ({lab['edges']} real dockerd edges, {lab['sweeps']} sweeps): "
              f"{lab['cpu_ms_per_edge']} ms CPU per edge per sweep "
              f"({lab['cpu_ratio_to_ping']}x a bare docker version ping = "
              f"{lab['baseline_ping_cpu_ms']} ms), mostly the fixed cost of a sweep (a sweep "
              f"with no edge due: {lab['empty_sweep_cpu_ms']} ms); reading an edge alone "
              f"{lab['read_only_cpu_ms_per_edge']} ms ({lab['read_ratio_to_ping']}x ping); wall "
              f"{lab['wall_s_per_sweep']} s per sweep (target <= {TARGET_CPU_MS} ms CPU per "
              "edge)")
        fan = lab.get("fan_out")
        if fan:
            print(f"  {fan['edges']} edge records over the {fan['engines']} real engines: "
                  f"{fan['cpu_ms_per_edge']} ms CPU per edge per sweep (the fixed cost "
                  f"shared), wall {fan['wall_s']} s per sweep")
    sim = result.get("simulation")
    if sim:
        print(f"SIMULATION (fake engine, {sim['containers_per_edge']} containers per edge, "
              f"{sim['running_per_edge']} running, stats held to a {sim['stats_tick_s']} s tick; "
              f"{sim['cpus']} CPUs shared with it; up to "
              f"{sim['edges_in_flight']} edges in flight): "
              f"ping baseline {sim['baseline_ping_cpu_ms']} ms CPU, "
              f"read-only {sim['read_only_cpu_ms_per_edge']} ms CPU per edge")
        for run in sim["runs"]:
            if run["edges"] >= TARGET_EDGES:
                verdict = "meets" if run["wall_s"] <= TARGET_SECONDS else "misses"
                against = f"{verdict} {TARGET_EDGES} edges in {TARGET_SECONDS:.0f} s"
            else:  # fewer edges than in flight: the wall is mostly the stats tick, not CPU
                against = f"too few to judge {TARGET_EDGES} edges in {TARGET_SECONDS:.0f} s"
            print(f"  {run['edges']:>6} edges: {run['cpu_ms_per_edge']} ms CPU per edge "
                  f"({run['cpu_ratio_to_ping']}x ping; first sweep "
                  f"{run['cpu_ms_per_edge_first_sweep']} ms), wall {run['wall_s']} s per sweep "
                  f"= {run['edges_per_minute']} edges/min ({against}); fake engine "
                  f"{run['fake_engine_cpu_ms_per_edge']} ms CPU per edge")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sweeps", type=int, default=2, help="sweeps per measurement")
    parser.add_argument("--scale", default="1000,10000", help="simulated fleet sizes")
    parser.add_argument("--containers", type=int, default=3, help="containers per sim edge")
    parser.add_argument("--running", type=int, default=2, help="of which running")
    parser.add_argument("--stats-tick", type=float, default=1.0,
                        help="the fake engine holds a one-shot stats until its next tick, as "
                        "dockerd does (seconds; 0: answer at once)")
    parser.add_argument("--short", action="store_true", help="small numbers (CI): 1 sweep, "
                        "50 and 200 simulated edges")
    parser.add_argument("--no-lab", action="store_true", help="simulation only")
    parser.add_argument("--fan-out", type=int, default=200,
                        help="edge records spread over the real lab engines (0: skip)")
    parser.add_argument("--in-flight", type=int, default=0,
                        help="edges read at once by a sweep (default: the "
                        "telemetry_in_flight setting)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args()
    sweeps = 1 if args.short else args.sweeps
    scales = [50, 200] if args.short else [int(s) for s in args.scale.split(",")]
    result: dict[str, Any] = {}
    home_api_url()  # here, before the benchmark's throw-away homes (they have no server)
    if not args.no_lab:
        say("lab: sweeping the lab edges ...")
        result["lab"] = bench_lab(sweeps, 20 if args.short else args.fan_out)
    if args.in_flight:
        os.environ["EDGEFLEET_TELEMETRY_IN_FLIGHT"] = str(args.in_flight)
        get_settings.cache_clear()
    result["simulation"] = bench_simulation(scales, max(2, sweeps), args.containers,
                                            args.running, args.stats_tick)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        report(result)


if __name__ == "__main__":
    main()
