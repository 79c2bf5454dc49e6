"""The update workflow on the real lab: only what changed, force, rollback, bad requests."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from prefect.client.orchestration import get_client
from prefect.settings import PREFECT_API_URL, temporary_settings

import edgefleet
from edgefleet.errors import InvalidInput, InvalidTransition, NotFound
from edgefleet.tasks.limits import update_limit_name
from tests.lab_helpers import get_page, retag, settled_pulls, unique

pytestmark = [pytest.mark.lab, pytest.mark.usefixtures("quick_local_runs")]

TWO_SERVICES = """
services:
  web:
    image: {registry}/edgefleet/hello:{web}
    ports: ["8080"]
  worker:
    image: {registry}/edgefleet/ticker:1.0.0
"""




def containers(status: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["service"]: c for c in status["containers"]}


def started_at(edge: Any, container_id: str) -> str:
    from edgefleet.engine import engine_client

    with engine_client(edge.connection) as client:
        return str(client.containers.get(container_id).attrs["State"]["StartedAt"])


def report(api_url: str, deployment_id: str) -> list[dict[str, str]]:
    with temporary_settings({PREFECT_API_URL: api_url}), get_client(sync_client=True) as client:
        artifact = client.read_latest_artifacts()
        found = [a for a in artifact if a.key == f"update-{deployment_id[:12]}"]
        assert found, "no update report artifact"
        data = found[0].data
    import json

    rows = json.loads(data) if isinstance(data, str) else data
    assert isinstance(rows, list)
    return rows


def test_compose_update_recreates_only_the_changed_service(
        lab: Any, edges: dict[str, Any], prefect_api: str) -> None:
    app = unique("upd")
    edgefleet.create_application(app, "1.0.0", compose=TWO_SERVICES.format(
        registry=lab.registry, web="1.0.0"))
    edgefleet.add_version(app, "1.1.0", compose=TWO_SERVICES.format(
        registry=lab.registry, web="1.1.0"))
    edgefleet.publish_version(app, "1.0.0")
    before = edgefleet.deploy(app, "lab-2")
    assert before["state"] == "STARTED", before["last_error"]
    worker = containers(before)["worker"]["container_id"]
    worker_start = started_at(edges["lab-2"], worker)

    with pytest.raises(InvalidInput, match="not published"):
        edgefleet.update_deployment(before["id"], to="1.1.0")
    edgefleet.publish_version(app, "1.1.0")
    after = edgefleet.update_deployment(before["id"], to="1.1.0")
    assert after["state"] == "STARTED", after["last_error"]
    assert after["version"] == "1.1.0" and after["last_error"] is None
    new = containers(after)
    assert new["worker"]["container_id"] == worker
    assert started_at(edges["lab-2"], worker) == worker_start
    assert new["web"]["container_id"] != containers(before)["web"]["container_id"]
    assert "hello from edgefleet/hello 1.1.0" in get_page(new["web"]["urls"][0])
    rows = {r["service"]: r for r in report(prefect_api, before["id"])}
    assert rows["web"]["outcome"] == "updated"
    assert rows["web"]["digest before"] != rows["web"]["digest after"]
    assert rows["worker"]["outcome"] == "unchanged"
    with temporary_settings({PREFECT_API_URL: prefect_api}), \
            get_client(sync_client=True) as client:
        assert client.read_global_concurrency_limit_by_name(
            update_limit_name(before["id"])).limit == 1
    edgefleet.delete_deployment(before["id"], force=True)


def test_force_update_restarts_only_what_moved(lab: Any, edges: dict[str, Any]) -> None:
    tag = unique("moving")
    retag(edges["lab-1"].connection, lab.registry, "edgefleet/hello", "1.0.0", tag)
    app = unique("frc")
    edgefleet.create_application(app, "1.0.0", compose=TWO_SERVICES.format(
        registry=lab.registry, web=tag))
    edgefleet.publish_version(app, "1.0.0")
    first = edgefleet.deploy(app, "lab-2")
    assert first["state"] == "STARTED", first["last_error"]
    ids = {s: c["container_id"] for s, c in containers(first).items()}

    with pytest.raises(InvalidInput, match="--force"):
        edgefleet.update_deployment(first["id"])
    same = edgefleet.update_deployment(first["id"], force=True)
    assert {s: c["container_id"] for s, c in containers(same).items()} == ids

    retag(edges["lab-1"].connection, lab.registry, "edgefleet/hello", "1.1.0", tag)
    moved = edgefleet.update_deployment(first["id"], force=True)
    assert moved["state"] == "STARTED", moved["last_error"]
    now = {s: c["container_id"] for s, c in containers(moved).items()}
    assert now["worker"] == ids["worker"] and now["web"] != ids["web"]
    assert "hello from edgefleet/hello 1.1.0" in get_page(containers(moved)["web"]["urls"][0])
    edgefleet.delete_deployment(first["id"], force=True)


@pytest.mark.parametrize("kind", ["image-crash", "compose-unhealthy"])
def test_failed_update_rolls_back(lab: Any, edges: dict[str, Any], prefect_api: str,
                                  kind: str) -> None:
    app = unique("rb")
    image = f"{lab.registry}/edgefleet/hello"
    if kind == "image-crash":
        edgefleet.create_application(app, "1.0.0", image=f"{image}:1.0.0", ports=["8080"])
        edgefleet.add_version(app, "1.1.0", image=f"{image}:1.1.0", ports=["8080"],
                              env=["HELLO_CRASH=1"])
    else:
        edgefleet.create_application(app, "1.0.0", compose=TWO_SERVICES.format(
            registry=lab.registry, web="1.0.0"))
        bad = TWO_SERVICES.format(registry=lab.registry, web="1.1.0").replace(
            'ports: ["8080"]', 'ports: ["8080"]\n    environment: {HELLO_UNHEALTHY: "1"}')
        edgefleet.add_version(app, "1.1.0", compose=bad)
    edgefleet.publish_version(app, "1.0.0")
    edgefleet.publish_version(app, "1.1.0")
    first = edgefleet.deploy(app, "lab-2", version="1.0.0")
    assert first["state"] == "STARTED", first["last_error"]

    after = edgefleet.update_deployment(first["id"], to="1.1.0")
    assert after["state"] == "STARTED"
    assert after["version"] == "1.0.0"
    assert "rolled back" in after["last_error"]
    web = [c for c in after["containers"] if c["urls"]][0]
    assert "hello from edgefleet/hello 1.0.0" in get_page(web["urls"][0])
    rows = report(prefect_api, first["id"])
    assert any(r["outcome"] == "rolled back" for r in rows)
    notes = [n for n in edgefleet.list_notifications()
             if n["deployment_id"] == first["id"] and n["reason"] == "rollback"]
    assert len(notes) == 1 and "rolled back" in notes[0]["message"]
    edgefleet.delete_deployment(first["id"], force=True)


def test_unreachable_registry_touches_nothing(lab: Any, edges: dict[str, Any],
                                             prefect_api: str) -> None:
    app = unique("noreg")
    edgefleet.create_application(app, "1.0.0", image=f"{lab.registry}/edgefleet/hello:1.0.0",
                                 ports=["8080"])
    edgefleet.add_version(app, "1.1.0", image="127.0.0.1:1/edgefleet/hello:1.1.0",
                          ports=["8080"])
    edgefleet.publish_version(app, "1.0.0")
    edgefleet.publish_version(app, "1.1.0")
    first = edgefleet.deploy(app, "lab-2", version="1.0.0")
    after = edgefleet.update_deployment(first["id"], to="1.1.0")
    assert after["state"] == "STARTED" and after["version"] == "1.0.0"
    assert "nothing was changed" in after["last_error"]
    assert containers(after)[app]["container_id"] == containers(first)[app]["container_id"]
    pulls = settled_pulls(after["flow_run_id"], prefect_api)
    assert pulls[0].run_count == 3  # retried twice, visible as task runs
    edgefleet.delete_deployment(first["id"], force=True)


def test_bad_update_requests_change_nothing(lab: Any, edges: dict[str, Any]) -> None:
    app = unique("bad")
    edgefleet.create_application(app, "1.0.0", image=f"{lab.registry}/edgefleet/hello:1.0.0")
    edgefleet.add_version(app, "1.1.0", image=f"{lab.registry}/edgefleet/hello:1.1.0")
    edgefleet.publish_version(app, "1.0.0")
    dep = edgefleet.deploy(app, "lab-1")
    with pytest.raises(NotFound, match="no version '9.9.9'"):
        edgefleet.update_deployment(dep["id"], to="9.9.9")
    with pytest.raises(InvalidInput, match="not published"):
        edgefleet.update_deployment(dep["id"], to="1.1.0")
    assert edgefleet.deployment_status(dep["id"])["state"] == "STARTED"

    edgefleet.publish_version(app, "1.1.0")
    worker = threading.Thread(target=edgefleet.update_deployment, args=(dep["id"],),
                              kwargs={"to": "1.1.0"})
    worker.start()
    deadline = time.monotonic() + 30
    while edgefleet.deployment_status(dep["id"])["state"] != "UPDATING":
        assert time.monotonic() < deadline, "the update never started"
        time.sleep(0.05)
    with pytest.raises(InvalidTransition, match="UPDATING"):
        edgefleet.update_deployment(dep["id"], to="1.1.0")
    worker.join(timeout=120)
    assert edgefleet.deployment_status(dep["id"])["version"] == "1.1.0"

    edgefleet.stop_deployment(dep["id"])
    with pytest.raises(InvalidTransition, match="STOPPED"):
        edgefleet.update_deployment(dep["id"], to="1.0.0")
    edgefleet.delete_deployment(dep["id"])
