"""A burst on the real lab: 12 deploys submitted at once while `edgefleet up` runs.

All must end STARTED, and "database is locked" must reach no user: not a submitting call,
not a deployment's last error, not the serving process's log. Prefect's own SQLite database
(the server's log) is checked and reported apart: it is not edgefleet's records.
"""

from __future__ import annotations

import contextlib
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

import edgefleet
from edgefleet import server
from edgefleet.db import get_engine
from edgefleet.lab import LabStatus
from tests.lab_helpers import unique

pytestmark = pytest.mark.lab
BURST = 12
LOCKED = "database is locked"


def log_text(name: str) -> str:
    """The log ``name`` of this home's run folder; ``worker-*.log`` joins every worker's."""
    paths = sorted(server.run_dir().glob(name))
    return "".join(path.read_text(errors="replace") for path in paths)


def test_twelve_deploys_at_once_all_end_started(lab: LabStatus, prefect_api: str) -> None:
    with get_engine().connect() as conn:  # the records: WAL and a busy timeout
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert int(conn.exec_driver_sql("PRAGMA busy_timeout").scalar() or 0) >= 5000
    name = unique("burst")
    edgefleet.create_application(name, "1.0.0", ports=["8080"],
                                 image=f"{lab.registry}/edgefleet/hello:1.0.0")
    edgefleet.publish_version(name, "1.0.0")
    edges = [e.name for e in lab.edges]
    workers_before = len(log_text("worker-*.log"))
    server_before = len(log_text("prefect-server.log"))
    started = time.monotonic()

    def submit(index: int) -> dict[str, Any]:
        return edgefleet.deploy(name, edges[index % len(edges)], wait=False)

    with ThreadPoolExecutor(BURST) as pool:
        submitted = list(pool.map(submit, range(BURST)))  # any error here fails the test
    ids = [s["id"] for s in submitted]
    try:
        def settled() -> list[dict[str, Any]] | None:
            rows = [edgefleet.deployment_status(i) for i in ids]
            return rows if all(r["state"] not in ("CREATED", "STARTING") for r in rows) else None

        deadline = time.monotonic() + 900
        while (final := settled()) is None:
            assert time.monotonic() < deadline, "the burst did not settle in 15 min"
            time.sleep(2)
        took = time.monotonic() - started
        states = {r["id"][:12]: (r["state"], r["last_error"]) for r in final}
        print(f"\n{BURST} deploys at once: all settled in {took:.0f}s: {states}")
        assert all(r["state"] == "STARTED" for r in final), states
        assert not [r for r in final if LOCKED in (r["last_error"] or "")]
        workers_log = log_text("worker-*.log")[workers_before:]
        assert LOCKED not in workers_log, [line for line in workers_log.splitlines()
                                         if LOCKED in line][:5]
        server_locked = [line for line in log_text("prefect-server.log")[server_before:]
                         .splitlines() if LOCKED in line]
        print(f"Prefect server log lines with {LOCKED!r} during the burst: {len(server_locked)}"
              + (f"; first: {server_locked[0][:300]}" if server_locked else ""))
    finally:
        with ThreadPoolExecutor(BURST) as pool:  # a burst of stops too, then delete
            list(pool.map(lambda i: _quietly(edgefleet.stop_deployment, i, wait=False), ids))
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline and any(
                edgefleet.deployment_status(i)["state"] in ("STARTING", "STARTED", "STOPPING")
                for i in ids):
            time.sleep(2)
        for dep_id in ids:
            _quietly(edgefleet.delete_deployment, dep_id, force=True)
        _quietly(edgefleet.delete_application, name)


def _quietly(call: Any, *args: Any, **kwargs: Any) -> None:
    with contextlib.suppress(Exception):
        call(*args, **kwargs)
