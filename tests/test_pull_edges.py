"""A pull edge on the real lab: its dockerd has no TCP listener, its agent no database URL.

The edge and its agent belong to a small lab of their own home (as an operator's edge would
be another machine); the session's control plane (records, Prefect server, worker) drives
it. Everything the control plane does there goes through the agent's flow runs.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path

import pytest
from prefect.settings import PREFECT_API_URL, temporary_settings

import edgefleet
from edgefleet.agent import WITHHELD
from edgefleet.api.logs import fetch_logs
from edgefleet.lab import LabEdge, LabStatus, lab_down, lab_up
from tests.lab_helpers import (
    containers_of,
    define_hello_versions,
    get_page,
    unique,
    wait_for,
)

pytestmark = pytest.mark.lab


@pytest.fixture
def pull_lab(lab: LabStatus, prefect_api: str, tmp_path: Path,
             switch_home: Callable[[Path], AbstractContextManager[Path]],
             monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[], LabEdge]]:
    """``up()``: (re)starts a one-pull-edge lab of its own home (its records, no server of its
    own), its agent reporting to the session's Prefect API, with a records URL in the
    environment the agent must not get."""
    home = tmp_path / "edge-home"

    def up() -> LabEdge:
        # Prefect's own setting (read once at import: an environment variable set now is
        # not seen), as a user's PREFECT_API_URL is: the lab's agent reports there
        with switch_home(home), monkeypatch.context() as env, \
                temporary_settings({PREFECT_API_URL: prefect_api}):
            env.setenv("EDGEFLEET_DATABASE_URL", f"sqlite:///{home}/records.db")
            return lab_up(edges=1, pull_edges=1).edge("pull-1")

    try:
        yield up
    finally:
        with switch_home(home), contextlib.suppress(Exception):
            lab_down()


def environ_of(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(item.decode().split("=", 1) for item in raw if b"=" in item)


def edge_status(name: str) -> str:
    return str(edgefleet.show_edge(name).status)


def test_a_pull_edge_deploys_updates_logs_and_reports_through_its_agent(
        lab: LabStatus, prefect_api: str, pull_lab: Callable[[], LabEdge]) -> None:
    pull = pull_lab()
    assert pull.mode == "pull" and pull.agent_pid and pull.answering
    assert pull.docker_host.startswith("unix://")
    dockerd = Path(f"/proc/{pull.pid}/cmdline").read_bytes().split(b"\0")
    hosts = [dockerd[i + 1].decode() for i, arg in enumerate(dockerd) if arg == b"--host"]
    assert hosts and all(h.startswith("unix://") for h in hosts), hosts  # no TCP listener
    agent_env = environ_of(pull.agent_pid)
    assert not set(WITHHELD) & set(agent_env), sorted(set(WITHHELD) & set(agent_env))
    assert agent_env["PREFECT_API_URL"] == prefect_api

    name = "pull-1"
    app = unique("pulled")
    edgefleet.add_edge(name, pull.docker_host, mode="pull", heartbeat_interval=2,
                       telemetry_interval=3)
    dep_id = None
    try:
        wait_for(lambda: edge_status(name) == "ONLINE", 60, "pull-1 ONLINE by its agent")
        define_hello_versions(app, "image", lab.registry)
        first = edgefleet.deploy(app, name, version="1.0.0")
        dep_id = first["id"]
        assert first["state"] == "STARTED", first["last_error"]
        (web,) = first["containers"]
        assert "hello from edgefleet/hello 1.0.0" in get_page(web["urls"][0])

        # a crashing version: health-gated on the edge, rolled back, reported back
        after = edgefleet.update_deployment(dep_id, to="2.0.0")
        assert after["state"] == "STARTED" and after["version"] == "1.0.0", after
        assert "rolled back" in after["last_error"] and "crash" in after["last_error"]
        (running,) = [c for c in containers_of(pull.connection, dep_id)
                      if c.status == "running"]
        assert running.labels["io.edgefleet.version"] == "1.0.0"

        logs = fetch_logs(dep_id)
        assert any("hello 1.0.0" in line for lines in logs.values() for line in lines), logs

        def sampled_with_container() -> bool:
            (view,) = edgefleet.edge_telemetry(name, since="5m")
            latest = view["latest"] or {}
            return any(c.get("deployment_id") == dep_id for c in latest.get("containers", []))
        wait_for(sampled_with_container, 60, "a sample of pull-1 that shows the deployment")

        # the agent's heartbeats are the edge's: gone, OFFLINE; back, ONLINE
        os.killpg(pull.agent_pid, signal.SIGKILL)
        wait_for(lambda: edge_status(name) == "OFFLINE", 90, "pull-1 OFFLINE")
        assert "agent" in str(edgefleet.show_edge(name).last_error)
        assert pull_lab().agent_pid
        wait_for(lambda: edge_status(name) == "ONLINE", 90, "pull-1 ONLINE again")

        stopped = edgefleet.stop_deployment(dep_id)
        assert stopped["state"] == "STOPPED", stopped
        assert not containers_of(pull.connection, dep_id)
    finally:
        if dep_id:
            with contextlib.suppress(Exception):
                edgefleet.delete_deployment(dep_id, force=True)
        with contextlib.suppress(Exception):
            edgefleet.delete_application(app)
        with contextlib.suppress(Exception):
            edgefleet.remove_edge(name)
