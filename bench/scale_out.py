"""What more workers of the ``edgefleet`` work pool buy, and what a worker's launch costs.

(a) Throughput: ``--jobs`` deploy/stop jobs (half deploys submitted at once, then their
stops at once) on a lab of its own, through 1 worker and then through 2 workers (each
runs up to 8 flow runs at once), in the same run. Reported: each side's wall time and the
ratio (goal >= 1.7x with 2). Both workers run on this machine: with 2 cores, the flow-run
processes of both compete for the same CPUs, so this shows what the pool adds here, not on
two machines.

(b) Launch latency: a deploy submitted to the pool (submit to STARTED, one idle worker)
against the same deploy run in this process, alternately; reported: the medians and their
difference (goal <= 1 s: what the worker adds).

(c) A burst: ``--burst`` runs of check-image-updates submitted at once from 16 threads;
reported: submission errors and runs not Completed (goal: none). With ``--postgres`` (the
default when Debian's PostgreSQL is installed) the records and Prefect's database are on a
throw-away PostgreSQL server, as the scale-out README asks.

Run as a script it works in a throw-away home of its own (``bench/home.py``): its own lab,
Prefect server and (with ``--postgres``) PostgreSQL server, stopped and removed after.

    python bench/scale_out.py [--jobs 100] [--edges 2] [--latency-runs 3] [--burst 200]
                              [--postgres | --sqlite]
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import statistics
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.home import throwaway_home  # noqa: E402

# edgefleet (and Prefect, which reads its home when imported) are imported in the functions:
# as a script, only once the throw-away home is set
TARGET_RATIO = 1.7
TARGET_LATENCY_S = 1.0


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def wait_states(ids: list[str], done: set[str], timeout: float = 1800) -> dict[str, int]:
    """Until every deployment is in ``done`` (or ERROR); the count per final state."""
    import edgefleet

    deadline = time.monotonic() + timeout
    while True:
        states = [edgefleet.deployment_status(i)["state"] for i in ids]
        if all(s in done | {"ERROR"} for s in states):
            return {s: states.count(s) for s in set(states)}
        if time.monotonic() > deadline:
            raise RuntimeError(f"not settled in {timeout:.0f}s: "
                               f"{ {s: states.count(s) for s in set(states)} }")
        time.sleep(1)


def cpu_ticks() -> tuple[int, int]:
    """The machine's (busy, all) CPU time so far, from /proc/stat (every core)."""
    fields = [int(f) for f in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle and iowait
    return sum(fields) - idle, sum(fields)


def jobs_batch(app: str, edges: list[str], jobs: int) -> tuple[float, dict[str, Any]]:
    """``jobs`` // 2 deploys at once, then their stops at once; wall time and outcomes, with
    how busy the machine's CPUs were meanwhile (a second worker has nothing to add when they
    are busy already)."""
    import edgefleet

    count = max(1, jobs // 2)
    busy_before, all_before = cpu_ticks()
    started = time.perf_counter()
    with ThreadPoolExecutor(16) as pool:
        submitted = list(pool.map(lambda i: edgefleet.deploy(app, edges[i % len(edges)],
                                                                wait=False), range(count)))
    ids = [s["id"] for s in submitted]
    deployed = wait_states(ids, {"STARTED"})
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda i: edgefleet.stop_deployment(i, wait=False), ids))
    stopped = wait_states(ids, {"STOPPED"})
    took = time.perf_counter() - started
    busy_after, all_after = cpu_ticks()
    for dep_id in ids:
        edgefleet.delete_deployment(dep_id, force=True)
    busy = (busy_after - busy_before) / max(1, all_after - all_before)
    return took, {"deployed": deployed, "stopped": stopped, "cpu_busy": round(busy, 2)}


def timed_deploy(app: str, edge: str) -> float:
    import edgefleet

    started = time.perf_counter()
    status = edgefleet.deploy(app, edge)
    took = time.perf_counter() - started
    if status["state"] != "STARTED":
        raise RuntimeError(f"deploy ended {status['state']}: {status['last_error']}")
    edgefleet.stop_deployment(status["id"])
    edgefleet.delete_deployment(status["id"], force=True)
    return took


def latency(app: str, edge: str, runs: int) -> dict[str, Any]:
    """Served (through an idle worker) and in-process deploys, alternately."""
    from edgefleet.settings import get_settings

    served, here = [], []
    for round_ in range(runs + 1):  # round 0 warms both up; not counted
        os.environ.pop("EDGEFLEET_RUN_MODE", None)
        get_settings.cache_clear()
        one = timed_deploy(app, edge)
        os.environ["EDGEFLEET_RUN_MODE"] = "local"
        get_settings.cache_clear()
        other = timed_deploy(app, edge)
        os.environ.pop("EDGEFLEET_RUN_MODE", None)
        get_settings.cache_clear()
        say(f"latency round {round_}: served {one:.2f}s, in-process {other:.2f}s"
            f"{' (warm-up)' if round_ == 0 else ''}")
        if round_:
            served.append(one)
            here.append(other)
    s, h = statistics.median(served), statistics.median(here)
    return {"served_median_s": round(s, 2), "in_process_median_s": round(h, 2),
            "served_minus_in_process_s": round(s - h, 2), "target_s": TARGET_LATENCY_S}


def burst(api_url: str, runs: int) -> dict[str, Any]:
    """``runs`` flow runs submitted at once; submission errors and runs not Completed."""
    from prefect.client.orchestration import get_client
    from prefect.deployments import run_deployment
    from prefect.settings import PREFECT_API_URL, temporary_settings

    errors: list[str] = []

    def submit(_index: int) -> Any:
        try:
            with temporary_settings({PREFECT_API_URL: api_url}):
                run = run_deployment(name="check-image-updates/check-image-updates",
                                     timeout=0)
            return run.id  # type: ignore[union-attr]  # sync here: a FlowRun
        except Exception as exc:  # counted: the point is that there is none
            errors.append(f"{type(exc).__name__}: {exc}"[:300])
            return None

    started = time.perf_counter()
    with ThreadPoolExecutor(16) as pool:
        ids = [i for i in pool.map(submit, range(runs)) if i is not None]
    submit_s = time.perf_counter() - started
    deadline = time.monotonic() + 1800
    with temporary_settings({PREFECT_API_URL: api_url}), get_client(sync_client=True) as client:
        while True:
            states = [client.read_flow_run(i).state for i in ids]
            if all(s is not None and s.is_final() for s in states):
                break
            if time.monotonic() > deadline:
                break
            time.sleep(2)
    names = [s.name if s else "none" for s in states]
    return {"runs": runs, "submitted": len(ids), "submit_errors": len(errors),
            "first_errors": errors[:3], "submit_s": round(submit_s, 1),
            "all_s": round(time.perf_counter() - started, 1),
            "final_states": {n: names.count(n) for n in set(names)}}


def bench(jobs: int, edges: int, latency_runs: int, burst_runs: int) -> dict[str, Any]:
    import edgefleet
    from edgefleet import server
    from edgefleet.lab import lab_down, lab_status, lab_up

    os.environ["EDGEFLEET_SOAK_SECONDS"] = "3"
    say(f"lab: starting a lab of {edges} edges in the throw-away home ...")
    lab_up(edges=edges)
    try:
        state = server.up(progress=say, workers=1)
        lab = lab_status()
        names = [e.name for e in lab.edges]
        app = f"bench-{uuid.uuid4().hex[:6]}"
        edgefleet.create_application(app, "1.0.0",
                                     image=f"{lab.registry}/edgefleet/ticker:1.0.0")
        edgefleet.publish_version(app, "1.0.0")
        result: dict[str, Any] = {"edges": edges, "jobs": jobs}
        result["latency"] = latency(app, names[0], latency_runs)
        jobs_batch(app, names, 8)  # warm-up: images cached on every edge; not counted
        one, one_outcome = jobs_batch(app, names, jobs)
        say(f"{jobs} jobs through 1 worker: {one:.1f}s {one_outcome}")
        server.up(progress=say, workers=2)
        two, two_outcome = jobs_batch(app, names, jobs)
        say(f"{jobs} jobs through 2 workers: {two:.1f}s {two_outcome}")
        result["throughput"] = {"one_worker_s": round(one, 1), "two_workers_s": round(two, 1),
                                "ratio": round(one / two, 2), "target_ratio": TARGET_RATIO,
                                "one_worker": one_outcome, "two_workers": two_outcome}
        if burst_runs:
            result["burst"] = burst(str(state["api_url"]), burst_runs)
        return result
    finally:
        say("lab: stopping it ...")
        if server.state_file().exists():
            server.down(progress=lambda _m: None)
        lab_down()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=100, help="deploy/stop jobs per side")
    parser.add_argument("--edges", type=int, default=2, help="lab edges")
    parser.add_argument("--latency-runs", type=int, default=3, help="timed deploys per side")
    parser.add_argument("--burst", type=int, default=200, help="runs submitted at once (0: no)")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--postgres", dest="postgres", action="store_true", default=None,
                       help="records and Prefect on a throw-away PostgreSQL (the default "
                       "when Debian's PostgreSQL is installed)")
    where.add_argument("--sqlite", dest="postgres", action="store_false")
    args = parser.parse_args()
    postgres = bool(glob.glob("/usr/lib/postgresql/*/bin/initdb")) if args.postgres is None \
        else args.postgres
    with throwaway_home("ef-bench-scale-"):
        pg = None
        if postgres:
            from tests.postgres_server import PostgresServer

            pg = PostgresServer()
            os.environ["EDGEFLEET_DATABASE_URL"] = pg.url(pg.new_database())
        try:
            result = {"database": "postgresql" if pg else "sqlite",
                      **bench(args.jobs, args.edges, args.latency_runs, args.burst)}
        finally:
            if pg is not None:
                pg.stop()
    print(json.dumps(result, indent=2))
    t, lat = result["throughput"], result["latency"]
    print(f"throughput: {args.jobs} deploy/stop jobs, 1 worker {t['one_worker_s']}s, "
          f"2 workers {t['two_workers_s']}s: {t['ratio']}x (goal >= {TARGET_RATIO}x); "
          f"CPUs busy {t['one_worker']['cpu_busy']:.0%} and {t['two_workers']['cpu_busy']:.0%} "
          f"of {os.cpu_count()} cores")
    print(f"launch latency: served {lat['served_median_s']}s - in-process "
          f"{lat['in_process_median_s']}s = {lat['served_minus_in_process_s']}s "
          f"(goal <= {TARGET_LATENCY_S}s)")
    if "burst" in result:
        b = result["burst"]
        print(f"burst on {result['database']}: {b['submitted']}/{b['runs']} submitted, "
              f"{b['submit_errors']} submission errors, final states {b['final_states']}")


if __name__ == "__main__":
    main()
