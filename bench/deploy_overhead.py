"""What edgefleet's deploy costs over a raw `docker compose up`, on the same lab edge.

The same 3-service compose app (images cached) is deployed N times by edgefleet in-process
and N times by the compose binary directly, alternating, and the medians are compared as a
ratio (machines here are noisy: a ratio in one process, never an absolute time). Both sides
end at the same condition: every service running (healthchecks are disabled in this app, so
`up -d` returns once the containers run; compose's `--wait` refuses a disabled healthcheck).
Also reported: the launch latency through `edgefleet up` (submit → STARTED as a served flow
run) minus the raw time.

Run as a script it works in a throw-away home of its own (``bench/home.py``): its own lab
of one edge and its own Prefect server, stopped and removed after; a user's records, lab
and server are never read.

    python bench/deploy_overhead.py [--runs 7] [--edge lab-1]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.home import throwaway_home  # noqa: E402

# edgefleet (and Prefect, which reads its home when imported) are imported in the functions:
# as a script, only once the throw-away home is set

COMPOSE = """
services:
  front:
    image: {registry}/edgefleet/hello:1.0.0
    healthcheck: {{disable: true}}
  back:
    image: {registry}/edgefleet/hello:1.1.0
    healthcheck: {{disable: true}}
  worker:
    image: {registry}/edgefleet/ticker:1.0.0
"""


def _set_mode(mode: str) -> None:
    from edgefleet.settings import get_settings

    os.environ["EDGEFLEET_RUN_MODE"] = mode
    get_settings.cache_clear()


def raw_compose_up(edge_name: str, compose_text: str, folder: Path) -> float:
    """Seconds for `docker compose up -d` of the app; brought down afterwards."""
    import edgefleet
    from edgefleet import compose_cli
    from edgefleet.models.connections import connection_of

    conn = connection_of(edgefleet.show_edge(edge_name))
    path = folder / "raw-compose.yaml"
    path.write_text(compose_text)
    started = time.perf_counter()
    compose_cli.compose(conn, "efbench-raw", path, "up", "-d", timeout=300)
    elapsed = time.perf_counter() - started
    compose_cli.compose(conn, "efbench-raw", path, "down", "--timeout", "2", timeout=300)
    return elapsed


def edgefleet_deploy(app: str, edge_name: str, mode: str) -> float:
    """Seconds from asking edgefleet to deploy until the record says STARTED."""
    import edgefleet

    _set_mode(mode)
    dep = edgefleet.create_deployment(app, edge_name, version="1.0.0", allow_unpublished=True)
    started = time.perf_counter()
    status = edgefleet.start_deployment(dep.id, wait=True)
    elapsed = time.perf_counter() - started
    if status["state"] != "STARTED":
        raise RuntimeError(f"benchmark deploy failed: {status['last_error']}")
    _set_mode("local")
    edgefleet.delete_deployment(dep.id, force=True)
    return elapsed


def run_benchmark(runs: int, edge: str) -> dict[str, Any]:
    """In the current home (a test's, or the script's throw-away one) and its lab."""
    import edgefleet
    from edgefleet import server
    from edgefleet.lab import lab_status
    from edgefleet.settings import get_settings

    registry = lab_status().registry
    app = f"bench-{int(time.time())}"
    text = COMPOSE.format(registry=registry)
    edgefleet.create_application(app, "1.0.0", compose=text)
    started_server = server.served_api_url() is None
    server.up(progress=lambda _m: None)
    folder = get_settings().home / "bench"
    folder.mkdir(parents=True, exist_ok=True)
    previous_mode = os.environ.get("EDGEFLEET_RUN_MODE")
    try:
        raw_compose_up(edge, text, folder)  # warm-up: caches, compose plugin start
        edgefleet_deploy(app, edge, "local")
        raw_times, ef_times, served_times = [], [], []
        for _ in range(runs):
            raw_times.append(raw_compose_up(edge, text, folder))
            ef_times.append(edgefleet_deploy(app, edge, "local"))
            served_times.append(edgefleet_deploy(app, edge, "served"))
    finally:
        if previous_mode is None:
            os.environ.pop("EDGEFLEET_RUN_MODE", None)
        else:
            os.environ["EDGEFLEET_RUN_MODE"] = previous_mode
        get_settings.cache_clear()
        if started_server:
            server.down(progress=lambda _m: None)
    raw, ef, served = (statistics.median(t) for t in (raw_times, ef_times, served_times))
    return {
        "runs": runs,
        "edge": edge,
        "raw_compose_median_s": round(raw, 3),
        "edgefleet_in_process_median_s": round(ef, 3),
        "ratio_in_process_vs_raw": round(ef / raw, 2),
        "served_launch_median_s": round(served, 3),
        "served_latency_minus_raw_s": round(served - raw, 3),
        "target_ratio": 1.2,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7, help="deploys per side (median taken)")
    parser.add_argument("--edge", default="lab-1", help="lab edge to deploy to")
    args = parser.parse_args()
    with throwaway_home("ef-bench-deploy-"):
        from edgefleet.lab import lab_down, lab_up

        lab_up(edges=1)
        try:
            result = run_benchmark(args.runs, args.edge)
        finally:
            lab_down()
    print(json.dumps(result, indent=2))
    print(f"ratio (edgefleet in-process / raw compose): {result['ratio_in_process_vs_raw']}x "
          f"(target <= {result['target_ratio']}x)")


if __name__ == "__main__":
    main()
