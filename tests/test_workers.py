"""The ``edgefleet`` process work pool and its workers, on the real lab and a real Prefect server.

`edgefleet up` (the session's) registers every flow as a deployment of the pool and starts
one worker (A). A second worker (B) runs as `edgefleet worker` would on another machine: a
home of its own, only the records' database URL and the Prefect API given. A deployment
applied by A is updated, and rolled back, by B; then a worker killed, with its run, while
it updates a deployment costs nothing: the other worker's reconcile settles the record.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import pytest
from prefect.client.orchestration import get_client
from prefect.settings import PREFECT_API_URL, temporary_settings

import edgefleet
from edgefleet import server
from edgefleet.settings import get_settings
from tests.lab_helpers import (
    containers_of,
    define_hello_versions,
    get_page,
    run_process_group,
    unique,
    wait_for,
)

pytestmark = pytest.mark.lab

CLI = [sys.executable, "-c", "from edgefleet.cli.main import app; app()"]
TRANSIENT = {"STARTING", "UPDATING", "STOPPING"}


def read_run(api_url: str, run_id: str) -> Any:
    with temporary_settings({PREFECT_API_URL: api_url}), get_client(sync_client=True) as client:
        return client.read_flow_run(UUID(run_id))


def took_run(log: Path, run_id: str) -> bool:
    """Whether the worker writing ``log`` submitted flow run ``run_id``."""
    return log.exists() and f"submitting flow run '{run_id}'" in log.read_text(errors="replace")


def events_about(api_url: str, resource: str, since: datetime) -> list[str]:
    """Names of the events about ``resource`` since ``since``, read back from Prefect."""
    body = {"filter": {"occurred": {"since": since.isoformat()},
                       "resource": {"id": [resource]}}, "limit": 50}
    resp = httpx.post(f"{api_url}/events/filter", json=body, timeout=10, trust_env=False)
    resp.raise_for_status()
    return [e["event"] for e in resp.json()["events"]]


def session_worker() -> dict[str, Any]:
    (worker,) = server.alive_workers(server.read_state())
    return worker


@contextlib.contextmanager
def other_worker(tmp_path: Path, api_url: str) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
    """Worker B: `edgefleet worker` in a home of its own, given only the records' URL and the
    Prefect API (and the session's short timings); killed with its group at the end."""
    name = unique("worker-b")
    log = tmp_path / "worker-b.log"
    env = {**os.environ, "EDGEFLEET_HOME": str(tmp_path / "home-b"),
           "EDGEFLEET_DATABASE_URL": get_settings().database_url, "PREFECT_API_URL": api_url}
    with log.open("ab") as out:
        proc = subprocess.Popen([*CLI, "worker", "--name", name], stdout=out,
                                stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        wait_for(lambda: name in server.online_workers(api_url), 90, f"worker {name} online")
        yield proc, log
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)


def test_up_registers_every_flow_in_the_process_pool_and_prefect_deployment_run_works(
        lab: Any, prefect_api: str) -> None:
    with temporary_settings({PREFECT_API_URL: prefect_api}), \
            get_client(sync_client=True) as client:
        pool = client.read_work_pool("edgefleet")
        deployments = client.read_deployments()
    assert pool.type == "process"
    in_pool = {d.name for d in deployments if d.work_pool_name == "edgefleet"}
    assert set(server.SERVED_FLOWS) <= in_pool
    assert session_worker()["name"] in server.online_workers(prefect_api)

    done = subprocess.run([sys.executable, "-m", "prefect", "deployment", "run",
                           "check-image-updates/check-image-updates"],
                          env={**os.environ, "PREFECT_API_URL": prefect_api},
                          capture_output=True, text=True, timeout=120, check=True)
    run_id = next(line.split()[-1] for line in done.stdout.splitlines() if "UUID:" in line)
    run = wait_for(lambda: (r := read_run(prefect_api, run_id)).state.is_final() and r, 120,
                   "the run submitted with `prefect deployment run`")
    assert run.state.is_completed(), run.state
    assert took_run(Path(session_worker()["log"]), run_id)


@pytest.mark.disruptive  # stops and kills the session's worker; `up` brings it back
def test_workers_of_two_homes_share_a_deployment_and_a_killed_worker_costs_nothing(
        lab: Any, prefect_api: str, tmp_path: Path) -> None:
    edge = lab.edge("lab-2")
    app = unique("workers")
    define_hello_versions(app, "compose", lab.registry)
    worker_a = session_worker()
    log_a = Path(worker_a["log"])
    began = datetime.now(UTC)
    dep_id = None
    try:
        first = edgefleet.deploy(app, "lab-2", version="1.0.0")
        dep_id = first["id"]
        assert first["state"] == "STARTED", first["last_error"]
        assert took_run(log_a, first["flow_run_id"])  # applied by worker A

        with other_worker(tmp_path, prefect_api) as (proc_b, log_b):
            server._terminate(int(worker_a["pid"]))  # now B is the pool's only worker
            after = edgefleet.update_deployment(dep_id, to="2.0.0")  # crashes: rolled back
            assert took_run(log_b, after["flow_run_id"])
            assert after["state"] == "STARTED", after["last_error"]
            assert after["version"] == "1.0.0" and "rolled back" in after["last_error"]
            assert after["applied_spec"]["id"] == first["applied_spec"]["id"]
            (web,) = [c for c in after["containers"] if c["urls"]]
            assert "hello from edgefleet/hello 1.0.0" in get_page(web["urls"][0])
            assert not (tmp_path / "home-b" / "deployments").exists()  # B keeps no file
            # B has no `edgefleet up` of its own, yet its run's notice reached the pool's server
            wait_for(lambda: "edgefleet.update.rolled-back" in events_about(
                prefect_api, f"edgefleet.deployment.{dep_id}", began), 30,
                "the rolled-back event from worker B's run")

            server.up(progress=lambda _m: None)  # A again, beside B
            worker_a = session_worker()
            edgefleet.update_deployment(dep_id, to="1.1.0", wait=False)
            # the run notes its id on the record as it moves it to UPDATING
            run_id = wait_for(lambda: (s := edgefleet.deployment_status(dep_id))["state"]
                              == "UPDATING" and s["flow_run_id"] != after["flow_run_id"]
                              and s["flow_run_id"], 120, "the update run under way")
            run_group = run_process_group(prefect_api, run_id)
            by_a = took_run(Path(worker_a["log"]), run_id)
            assert by_a or took_run(log_b, run_id)
            killed_worker = int(worker_a["pid"]) if by_a else proc_b.pid
            assert edgefleet.deployment_status(dep_id)["state"] == "UPDATING"
            for group in (run_group, killed_worker):  # the machine dies: both
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(group, signal.SIGKILL)
            killed = time.monotonic()
            final = wait_for(lambda: (s := edgefleet.deployment_status(dep_id))["state"]
                             not in TRANSIENT and s, 360, "the deployment to leave UPDATING")
            print(f"\nworker {'A' if by_a else 'B'} killed mid-update → {final['state']} on "
                  f"{final['version']} in {time.monotonic() - killed:.0f}s: "
                  f"{final['last_error']}")
            left = containers_of(edge.connection, dep_id)
            print("containers left:", [(c.name, c.status, c.labels.get("io.edgefleet.version"))
                                       for c in left])
            # killed before, during or after the apply: the old version, rolled back to, or
            # the new one, healthy; never a half-applied edge
            assert final["state"] == "STARTED", final
            assert "stopped without a result" in final["last_error"]
            (web,) = left  # one web, running the version the record says, nothing stray
            assert web.status == "running"
            assert web.labels["io.edgefleet.version"] == final["version"]
    finally:
        server.up(progress=lambda _m: None)  # the session's worker first: it runs the stop
        if dep_id is not None:
            with contextlib.suppress(Exception):
                edgefleet.delete_deployment(dep_id, force=True)
        with contextlib.suppress(Exception):
            edgefleet.delete_application(app)
