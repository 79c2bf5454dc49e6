"""What a group rollout costs: a whole lab fleet against one edge's update, and the
bookkeeping of a 1,000-edge group.

(a) On a lab of its own (4 edges by default), the same version change is made, in the same
run and alternately, by one deployment's update on one edge (the baseline) and by a group
rollout over every lab edge (one wave, members in parallel). Both run in-process, report to
the same Prefect server and use the same health-gated update with the same short soak
(``--soak``: the soak would otherwise make both sides one fixed wait and the ratio
meaningless). Reported: the median of each and their ratio (goal <= 1.5x: fanning out to
the fleet costs the control plane little beyond the slowest edge). Machines here are noisy:
a ratio in one process, never an absolute time.

(b) THE 1,000-EDGE GROUP IS A FAKE FOR SCALE: no engine, no records, no Prefect. Simulated
edges (3% OFFLINE, 10 canaries, 2% already on the target) and members go through the pure
bookkeeping a rollout does: the plan (``group_plan.plan_group``), the waves
(``rollouts.plan_waves``, ``1,5%,25%,100%``), a ``decide`` after each wave over simulated
results (1% failing, threshold 5%), the plan made again and ``summarize``d, and the table
artifact's rows (``rollouts.group_table``). Reported as CPU ms per edge.

(a) runs twice when PostgreSQL is installed (``--database both``, the default then): with the
records and the Prefect server on SQLite (the default), and with both on a throw-away
PostgreSQL server (Debian's binaries, as the tests start it). Measured here: on SQLite the
members' API calls queue behind the Prefect server's one writer (the machine stays mostly
idle while they wait), on PostgreSQL they do not.

Run as a script it works in a throw-away home of its own (``bench/home.py``): its own lab and
its own Prefect server, stopped and removed after; a user's records, lab and server are never
read.

    python bench/fleet_rollout.py [--runs 3] [--edges 4] [--soak 3] [--simulated 1000]
                                  [--simulated-only] [--database sqlite|postgresql|both]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import uuid
import zlib
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.home import throwaway_home  # noqa: E402

# edgefleet (and Prefect, which reads its home when imported) are imported in the functions:
# as a script, only once the throw-away home is set
TARGET_RATIO = 1.5


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# ------------------------------------------------------------------ (a) the lab


def _fresh(edges: list[str]) -> None:
    """Every edge ONLINE by the heartbeat rule (no served sweep here): the plan defers an
    edge it has not heard of lately. Not timed."""
    import edgefleet

    edgefleet.collect_telemetry(edges)


def _timed(what: str, func: Any) -> float:
    started = time.perf_counter()
    result = func()
    elapsed = time.perf_counter() - started
    state = result["state"]
    if state != "STARTED":
        raise RuntimeError(f"{what} ended {state}: {result.get('reason') or result}")
    return elapsed


def run_lab(runs: int) -> dict[str, Any]:
    """In the current home and its lab (every lab edge), flows run in this process."""
    import edgefleet
    from edgefleet.lab import lab_status

    lab = lab_status()
    edges = [e.name for e in lab.edges]
    image = f"{lab.registry}/edgefleet/hello"
    app, group = f"bench-{uuid.uuid4().hex[:6]}", f"bench-{uuid.uuid4().hex[:6]}"
    edgefleet.create_application(app, "1.0.0", image=f"{image}:1.0.0", ports=["8080"])
    edgefleet.add_version(app, "1.1.0", image=f"{image}:1.1.0", ports=["8080"])
    for version in ("1.0.0", "1.1.0"):
        edgefleet.publish_version(app, version)
    _fresh(edges)
    single = edgefleet.create_deployment(app, edges[0], version="1.0.0")
    edgefleet.start_deployment(single.id)
    edgefleet.create_group(group, app, edges=edges, version="1.0.0", waves="100%",
                           max_parallel=len(edges))
    alone, fleet = [], []
    try:
        # round 0 warms up (1.1.0 pulled on every edge, imports, first runs); not counted
        for round_ in range(runs + 1):
            to = "1.1.0" if round_ % 2 == 0 else "1.0.0"
            _fresh(edges)
            one = _timed("the single update", lambda to=to: edgefleet.update_deployment(
                single.id, to=to))
            _fresh(edges)
            many = _timed("the group rollout", lambda to=to: edgefleet.update_group(
                group, to=to))
            say(f"round {round_}: {to}: one edge {one:.2f}s, group of {len(edges)} "
                f"{many:.2f}s{' (warm-up)' if round_ == 0 else ''}")
            if round_:
                alone.append(one)
                fleet.append(many)
    finally:
        edgefleet.delete_group(group, force=True)
        edgefleet.delete_deployment(single.id, force=True)
    one_s, many_s = statistics.median(alone), statistics.median(fleet)
    return {"edges": len(edges), "runs": runs,
            "single_update_median_s": round(one_s, 2),
            "group_rollout_median_s": round(many_s, 2),
            "ratio_group_vs_single": round(many_s / one_s, 2),
            "target_ratio": TARGET_RATIO}


def bench_lab(runs: int, edges: int, soak: float) -> dict[str, Any]:
    """A lab of its own (in the throw-away home), stopped after; flows run in-process."""
    from edgefleet import server
    from edgefleet.lab import lab_down, lab_up
    from edgefleet.settings import get_settings

    os.environ.update({"EDGEFLEET_RUN_MODE": "local", "EDGEFLEET_SOAK_SECONDS": str(soak)})
    get_settings.cache_clear()
    say(f"lab: starting a lab of {edges} edges in the throw-away home ...")
    lab_up(edges=edges)
    try:
        return {**run_lab(runs), "soak_s": soak}
    finally:
        from prefect.events.worker import EventsWorker
        from prefect.logging.handlers import APILogWorker

        # the runs' logs and events, before their server goes: at exit, Prefect would
        # otherwise wait on a server that is gone
        APILogWorker.drain_all(timeout=30)
        EventsWorker.drain_all(timeout=30)
        say("lab: stopping it ...")
        if server.state_file().exists():
            server.down(progress=lambda _m: None)
        lab_down()


# ------------------------------------------------------------------ (b) simulated


def simulated_group(n: int) -> tuple[Any, list[Any], list[Any]]:
    """A FAKE group of ``n`` edges for scale (no engine, no records)."""
    from edgefleet.group_plan import GroupEdge, GroupMember, GroupTarget
    from edgefleet.models.states import Availability, DeploymentState

    target = GroupTarget(application="hello", version="2.0.0", spec_hash="h")
    edges, members = [], []
    for i in range(n):
        name = f"edge-{i:05d}"
        offline = i % 33 == 7  # ~3%
        edges.append(GroupEdge(
            name=name, labels={"tier": "canary"} if i < 10 else {"site": f"s{i % 50}"},
            availability=Availability.OFFLINE if offline else Availability.ONLINE))
        members.append(GroupMember(edge=name, deployment_id=uuid.uuid4().hex,
                                   version="2.0.0" if i % 50 == 3 else "1.0.0",
                                   state=DeploymentState.STARTED, spec_hash="h"))
    return target, edges, members


def bookkeeping(target: Any, edges: list[Any], members: list[Any]) -> dict[str, Any]:
    """Plan, waves, decide after each wave, plan again and summarize, the table's rows:
    what a rollout's control plane computes, without executing anything."""
    from edgefleet.group_plan import plan_group
    from edgefleet.models.groups import RolloutOptions
    from edgefleet.models.states import DeploymentState
    from edgefleet.rollouts import EdgeResult, Outcome, decide, group_table, plan_waves, summarize

    options = RolloutOptions(waves="1,5%,25%,100%", failure_threshold="5%",
                             on_failure="continue")
    plan = plan_group(target, edges, members, prune=False)
    waves = plan_waves(plan.rollout_edges(), options.waves)
    results: list[EdgeResult] = []
    decision = None
    for wave in waves:
        for name in wave:
            failed = zlib.crc32(name.encode()) % 100 == 0  # ~1%, the same every run
            results.append(EdgeResult(edge=name, outcome=Outcome.FAILED if failed
                                      else Outcome.SUCCEEDED, reason="simulated"
                                      if failed else None))
        decision = decide(options, results)
    done = {r.edge for r in results if r.outcome is Outcome.SUCCEEDED}
    after = [m.model_copy(update={"version": target.version}) if m.edge in done else m
             for m in members]
    outcome = summarize(plan_group(target, edges, after, prune=False), decision)
    availability = {e.name: e.availability.value if e.availability else None for e in edges}
    failed = {r.edge for r in results} - done
    rows = [{"edge": m.edge, "deployment_id": m.deployment_id, "version": m.version,
             "state": DeploymentState.ERROR.value if m.edge in failed else m.state.value,
             "last_error": "simulated" if m.edge in failed else None} for m in after]
    table = group_table(rows, availability, target.version)
    return {"waves": [len(w) for w in waves], "attempted": len(results),
            "state": outcome.state.value, "rows": len(table)}


def bench_simulated(n: int, runs: int) -> dict[str, Any]:
    target, edges, members = simulated_group(n)
    bookkeeping(target, edges, members)  # warm-up: imports, pydantic's first validations
    times, last = [], {}
    for _ in range(max(1, runs)):
        started = time.process_time()
        last = bookkeeping(target, edges, members)
        times.append(time.process_time() - started)
    cpu = statistics.median(times)
    return {"edges": n, "fake": True, "runs": len(times), **last,
            "cpu_ms_total": round(cpu * 1000, 1), "cpu_ms_per_edge": round(cpu * 1000 / n, 3)}


def bench_lab_on_postgres(runs: int, edges: int, soak: float) -> dict[str, Any]:
    """(a) with the records and the Prefect server on a throw-away PostgreSQL server."""
    from tests.postgres_server import PostgresServer

    server = PostgresServer()
    try:
        with throwaway_home("ef-bench-fleet-pg-"):
            # the local Prefect server gets a database of its own beside the records
            os.environ["EDGEFLEET_DATABASE_URL"] = server.url(server.new_database())
            return {**bench_lab(runs, edges, soak), "database": "postgresql"}
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="timed rounds per side (median)")
    parser.add_argument("--edges", type=int, default=4, help="lab edges (the group's fleet)")
    parser.add_argument("--soak", type=float, default=3.0,
                        help="seconds each update watches its new containers (both sides)")
    parser.add_argument("--simulated", type=int, default=1000,
                        help="edges of the simulated (fake) group")
    parser.add_argument("--simulated-only", action="store_true", help="skip the lab part")
    parser.add_argument("--database", choices=["sqlite", "postgresql", "both"], default=None,
                        help="where the records and the Prefect server live for the lab part "
                        "(default: both when PostgreSQL is installed, else sqlite)")
    args = parser.parse_args()
    from tests.postgres_server import installed as postgres_installed

    databases = args.database or ("both" if postgres_installed() else "sqlite")
    if databases == "sqlite" and args.database is None:
        say("PostgreSQL is not installed: the lab part runs on SQLite only "
            "(`apt-get install postgresql` to compare)")
    result: dict[str, Any] = {"simulated": bench_simulated(args.simulated, 5)}
    if not args.simulated_only:
        if databases in ("sqlite", "both"):
            with throwaway_home("ef-bench-fleet-"):
                result["lab"] = {**bench_lab(args.runs, args.edges, args.soak),
                                 "database": "sqlite"}
        if databases in ("postgresql", "both"):
            result["lab_postgresql"] = bench_lab_on_postgres(args.runs, args.edges, args.soak)
    print(json.dumps(result, indent=2))
    sim = result["simulated"]
    print(f"simulated (fake) group of {sim['edges']} edges: plan + waves + decide + summarize "
          f"+ table = {sim['cpu_ms_per_edge']} CPU ms per edge ({sim['cpu_ms_total']} ms)")
    for key in ("lab", "lab_postgresql"):
        if key in result:
            lab = result[key]
            print(f"ratio (group rollout on {lab['edges']} edges / one edge's update), "
                  f"records and Prefect server on {lab['database']}: "
                  f"{lab['ratio_group_vs_single']}x (goal <= {lab['target_ratio']}x; "
                  f"medians {lab['group_rollout_median_s']} s / "
                  f"{lab['single_update_median_s']} s)")


if __name__ == "__main__":
    main()
