"""Swarm stacks on the lab's swarm edge: update, untouched services, rollback, force, stop.

Swarm keeps the tasks it shut down on purpose (an update replaces a task) as exited
containers; every check here compares the record with what the edge really runs, so a
judgement that counts that history as a crash fails here.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from prefect.settings import (
    PREFECT_API_URL,
    PREFECT_FLOWS_HEARTBEAT_FREQUENCY,
    temporary_settings,
)

import edgefleet
from edgefleet import labels as L
from edgefleet.engine import engine_client
from edgefleet.flows.telemetry import collect_telemetry
from edgefleet.lab.daemons import free_port
from edgefleet.settings import get_settings
from tests.lab_helpers import retag, unique

pytestmark = pytest.mark.lab

STACK = """
services:
  web:
    image: {registry}/edgefleet/hello:{web}
    ports:
      - target: 8080
        published: {port}
        mode: host
{web_env}
  worker:
    image: {registry}/edgefleet/ticker:1.0.0
"""
CRASH_ENV = "    environment:\n      HELLO_CRASH: \"1\""


@pytest.fixture(autouse=True)
def quick_local_runs(local_runs: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """In-process runs (reporting to the lab's Prefect server) with a short soak."""
    monkeypatch.setenv("EDGEFLEET_SOAK_SECONDS", "8")  # longer than swarm's 5 s restart delay
    monkeypatch.setenv("EDGEFLEET_DEPLOY_TIMEOUT", "40")
    get_settings.cache_clear()
    yield
    monkeypatch.undo()
    get_settings.cache_clear()


@pytest.fixture
def swarm_edge(lab: Any, edges: dict[str, Any]) -> Any:
    return next(e for e in lab.edges if e.swarm)


def running_tasks(edge: Any, deployment_id: str) -> dict[str, dict[str, str]]:
    """Per service, what swarm runs now (desired state running): container, image, version."""
    with engine_client(edge.connection) as client:
        services = client.services.list(filters={"label": f"{L.DEPLOYMENT}={deployment_id}"})
        found: dict[str, dict[str, str]] = {}
        for service in services:
            labels = service.attrs["Spec"]["Labels"]
            for task in service.tasks(filters={"desired-state": "running"}):
                if task["Status"]["State"] != "running":
                    continue
                spec = task["Spec"]["ContainerSpec"]
                found[labels[L.SERVICE]] = {
                    "container": task["Status"]["ContainerStatus"]["ContainerID"][:12],
                    "image": spec["Image"],
                    "version": spec["Labels"][L.VERSION],
                }
        return found


def served(edge: Any, deployment_id: str) -> str:
    """The page the web service's current task serves (asked inside its container: in a full
    test session the host-mode port answered 403 from something else, not yet explained)."""
    container = running_tasks(edge, deployment_id)["web"]["container"]
    with engine_client(edge.connection) as client:
        result = client.containers.get(container).exec_run(
            ["wget", "-q", "-O", "-", "http://127.0.0.1:8080/"])
    assert result.exit_code == 0, result.output
    return str(result.output.decode())


def define(lab: Any, port: int, versions: dict[str, tuple[str, bool]]) -> str:
    """An app whose versions run web at a hello tag (crashing where asked), all published."""
    app = unique("swm")
    for i, (version, (web, crash)) in enumerate(versions.items()):
        stack = STACK.format(registry=lab.registry, web=web, port=port,
                             web_env=CRASH_ENV if crash else "")
        if i == 0:
            edgefleet.create_application(app, version, stack=stack)
        else:
            edgefleet.add_version(app, version, stack=stack)
        edgefleet.publish_version(app, version)
    return app


def test_stack_update_replaces_only_the_changed_service_and_ends_started(
        lab: Any, swarm_edge: Any) -> None:
    port = free_port(set())
    app = define(lab, port, {"1.0.0": ("1.0.0", False), "1.1.0": ("1.1.0", False)})
    first = edgefleet.deploy(app, swarm_edge.name, version="1.0.0")
    assert first["state"] == "STARTED", first["last_error"]
    before = running_tasks(swarm_edge, first["id"])
    assert set(before) == {"web", "worker"}
    assert "hello from edgefleet/hello 1.0.0" in served(swarm_edge, first["id"])

    after = edgefleet.update_deployment(first["id"], to="1.1.0")
    assert after["state"] == "STARTED", after["last_error"]
    assert after["version"] == "1.1.0" and after["last_error"] is None
    now = running_tasks(swarm_edge, first["id"])
    assert now["worker"]["container"] == before["worker"]["container"]  # untouched
    assert now["web"]["container"] != before["web"]["container"]
    assert now["web"]["version"] == "1.1.0" and "hello:1.1.0@sha256:" in now["web"]["image"]
    assert "hello from edgefleet/hello 1.1.0" in served(swarm_edge, first["id"])
    # the record names exactly the containers swarm runs now, not the ones it shut down
    recorded = {c["service"]: c["container_id"] for c in after["containers"]}
    assert recorded == {s: t["container"] for s, t in now.items()}
    assert all(c["state"] == "running" for c in after["containers"])

    stopped = edgefleet.stop_deployment(first["id"])
    assert stopped["state"] == "STOPPED"
    assert running_tasks(swarm_edge, first["id"]) == {}
    edgefleet.delete_deployment(first["id"])


def test_crashing_stack_version_rolls_back_to_the_exact_previous_spec(
        lab: Any, swarm_edge: Any, prefect_api: str) -> None:
    port = free_port(set())
    app = define(lab, port, {"1.0.0": ("1.0.0", False), "1.1.0": ("1.1.0", False),
                             "2.0.0": ("2.0.0", True)})
    first = edgefleet.deploy(app, swarm_edge.name, version="1.0.0")
    assert first["state"] == "STARTED", first["last_error"]
    good = edgefleet.update_deployment(first["id"], to="1.1.0")
    assert good["state"] == "STARTED" and good["version"] == "1.1.0", good["last_error"]
    before = running_tasks(swarm_edge, first["id"])

    after = edgefleet.update_deployment(first["id"], to="2.0.0")
    assert after["state"] == "STARTED", after["last_error"]
    assert after["version"] == "1.1.0"
    assert "rolled back" in after["last_error"] and "exit" in after["last_error"]
    assert "rollback failed" not in after["last_error"]
    now = running_tasks(swarm_edge, first["id"])
    assert now["web"]["version"] == "1.1.0"
    assert now["web"]["image"] == before["web"]["image"]  # the same pinned digest
    assert now["worker"]["container"] == before["worker"]["container"]
    assert "hello from edgefleet/hello 1.1.0" in served(swarm_edge, first["id"])
    recorded = {c["service"]: c["container_id"] for c in after["containers"]}
    assert recorded == {s: t["container"] for s, t in now.items()}
    # telemetry judges the same current tasks: the shut-down and crashed history (1.0.0,
    # 1.1.0's first task, 2.0.0's failures) neither degrades it nor shows in its status
    with temporary_settings({PREFECT_API_URL: prefect_api,
                             PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
        collect_telemetry(edges=[swarm_edge.name], force=True)
    status = edgefleet.deployment_status(first["id"])
    assert status["degraded"] is None, status["degraded"]
    assert {c["service"]: c["container_id"] for c in status["containers"]} == recorded
    edgefleet.delete_deployment(first["id"], force=True)
    assert running_tasks(swarm_edge, first["id"]) == {}


def test_forced_stack_update_after_a_tag_moved(lab: Any, swarm_edge: Any) -> None:
    tag = unique("swmove")
    retag(swarm_edge.connection, lab.registry, "edgefleet/hello", "1.0.0", tag)
    port = free_port(set())
    app = define(lab, port, {"1.0.0": (tag, False)})
    first = edgefleet.deploy(app, swarm_edge.name)
    assert first["state"] == "STARTED", first["last_error"]
    before = running_tasks(swarm_edge, first["id"])

    same = edgefleet.update_deployment(first["id"], force=True)
    assert same["state"] == "STARTED", same["last_error"]
    assert running_tasks(swarm_edge, first["id"]) == before  # nothing moved: nothing restarted

    retag(swarm_edge.connection, lab.registry, "edgefleet/hello", "1.1.0", tag)
    moved = edgefleet.update_deployment(first["id"], force=True)
    assert moved["state"] == "STARTED", moved["last_error"]
    now = running_tasks(swarm_edge, first["id"])
    assert now["worker"]["container"] == before["worker"]["container"]
    assert now["web"]["container"] != before["web"]["container"]
    assert "hello from edgefleet/hello 1.1.0" in served(swarm_edge, first["id"])
    edgefleet.delete_deployment(first["id"], force=True)


def test_a_stack_swarm_cannot_schedule_ends_error_in_swarm_s_words(
        lab: Any, swarm_edge: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    port = free_port(set())
    app = define(lab, port, {"1.0.0": ("1.0.0", False)})
    first = edgefleet.deploy(app, swarm_edge.name)
    assert first["state"] == "STARTED", first["last_error"]
    monkeypatch.setenv("EDGEFLEET_DEPLOY_TIMEOUT", "15")
    get_settings.cache_clear()
    second = None
    try:
        # the same host-mode port on the same node: swarm keeps the task pending
        second = edgefleet.deploy(app, swarm_edge.name)
        assert second["state"] == "ERROR"
        assert "service web is pending: no suitable node" in second["last_error"], \
            second["last_error"]
        assert "port" in second["last_error"]
        with engine_client(swarm_edge.connection) as client:
            assert client.services.list(
                filters={"label": f"{L.DEPLOYMENT}={second['id']}"}) == []
        assert set(running_tasks(swarm_edge, first["id"])) == {"web", "worker"}
    finally:
        edgefleet.delete_deployment(first["id"], force=True)
        if second is not None:
            edgefleet.delete_deployment(second["id"], force=True)
