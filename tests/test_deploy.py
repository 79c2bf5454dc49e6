"""The deployment workflow on the real lab: every kind, failures, stop, delete, logs."""

from __future__ import annotations

import time
from typing import Any

import pytest
from prefect.client.orchestration import get_client
from prefect.settings import PREFECT_API_URL, temporary_settings

import edgefleet
from edgefleet import labels as L
from edgefleet import server
from edgefleet.api.logs import fetch_logs
from edgefleet.errors import InvalidTransition
from edgefleet.lab.daemons import free_port
from edgefleet.settings import get_settings
from tests.lab_helpers import containers_of, get_page, networks_of, settled_pulls, unique

pytestmark = pytest.mark.lab


def test_image_app_reaches_started_serves_its_page_and_is_labelled(
        lab: Any, edges: dict[str, Any], local_runs: None) -> None:
    app = unique("img")
    edgefleet.create_application(app, "1.0.0", image=f"{lab.registry}/edgefleet/hello:1.0.0",
                                 ports=["8080"])
    edgefleet.publish_version(app, "1.0.0")
    status = edgefleet.deploy(app, "lab-2")
    assert status["state"] == "STARTED", status["last_error"]
    (container,) = status["containers"]
    assert container["state"] == "running" and container["health"] == "healthy"
    assert container["digest"] and container["digest"].startswith("sha256:")
    assert "hello from edgefleet/hello 1.0.0" in get_page(container["urls"][0])
    (live,) = containers_of(edges["lab-2"].connection, status["id"])
    assert live.labels[L.DEPLOYMENT] == status["id"]
    assert live.labels[L.APPLICATION] == app
    assert live.labels[L.VERSION] == "1.0.0"
    assert live.labels[L.IMAGE_DIGEST] == container["digest"]
    assert len(live.labels[L.CONFIG_HASH]) == 16

    with pytest.raises(InvalidTransition, match="delete is allowed from"):
        edgefleet.delete_deployment(status["id"])
    stopped = edgefleet.stop_deployment(status["id"])
    assert stopped["state"] == "STOPPED" and stopped["containers"] == []
    assert containers_of(edges["lab-2"].connection, status["id"]) == []
    assert networks_of(edges["lab-2"].connection, status["id"]) == []
    edgefleet.delete_deployment(status["id"])
    assert status["id"] not in [d["id"] for d in edgefleet.list_deployments()]


COMPOSE = """
services:
  web:
    image: {registry}/edgefleet/hello:1.1.0
    ports: ["8080"]
  worker:
    image: {registry}/edgefleet/ticker:1.0.0
    depends_on:
      web:
        condition: service_healthy
"""


def test_compose_app_waits_for_health_and_logs_resume(
        lab: Any, edges: dict[str, Any], local_runs: None) -> None:
    app = unique("cmp")
    edgefleet.create_application(app, "1.0.0", compose=COMPOSE.format(registry=lab.registry))
    edgefleet.publish_version(app, "1.0.0")
    status = edgefleet.deploy(app, "lab-2")
    assert status["state"] == "STARTED", status["last_error"]
    by_service = {c["service"]: c for c in status["containers"]}
    assert set(by_service) == {"web", "worker"}
    # STARTED only after web's healthcheck passed (the worker depends on it being healthy).
    assert by_service["web"]["health"] == "healthy"
    assert by_service["worker"]["state"] == "running"
    assert "hello from edgefleet/hello 1.1.0" in get_page(by_service["web"]["urls"][0])
    lives = containers_of(edges["lab-2"].connection, status["id"])
    assert sorted(live.labels[L.SERVICE] for live in lives) == ["web", "worker"]
    for live in lives:
        assert live.labels[L.APPLICATION] == app
        assert live.labels[L.IMAGE_DIGEST].startswith("sha256:")

    time.sleep(3)
    first = fetch_logs(status["id"], service="worker", lines=2)["worker"]
    time.sleep(1.5)
    second = fetch_logs(status["id"], service="worker")["worker"]
    numbers = [int(line.rsplit(" ", 1)[-1]) for line in first + second]
    assert len(first) == 2 and len(second) >= 2
    assert numbers == list(range(numbers[0], numbers[0] + len(numbers))), numbers
    time.sleep(1.5)
    third = fetch_logs(status["id"], service="worker")["worker"]
    later = [int(line.rsplit(" ", 1)[-1]) for line in third]  # new lines only, none skipped
    assert later and later == list(range(numbers[-1] + 1, numbers[-1] + 1 + len(later))), later

    edgefleet.delete_deployment(status["id"], force=True)
    assert containers_of(edges["lab-2"].connection, status["id"]) == []


QUIET_COMPOSE = """
services:
  quiet:
    image: {registry}/edgefleet/hello:1.0.0
    healthcheck: {{disable: true}}
  checked:
    image: {registry}/edgefleet/hello:1.1.0
"""


def test_a_service_with_its_healthcheck_switched_off_deploys(
        lab: Any, edges: dict[str, Any], local_runs: None) -> None:
    """compose's own `--wait` refuses `healthcheck: disable: true` on an image that has one;
    the deploy still waits for the other service's health and ends STARTED."""
    app = unique("quiet")
    edgefleet.create_application(app, "1.0.0",
                                 compose=QUIET_COMPOSE.format(registry=lab.registry))
    edgefleet.publish_version(app, "1.0.0")
    status = edgefleet.deploy(app, "lab-2")
    try:
        assert status["state"] == "STARTED", status["last_error"]
        by_service = {c["service"]: c for c in status["containers"]}
        assert by_service["quiet"]["state"] == "running"
        assert by_service["quiet"]["health"] in (None, "", "none")
        assert by_service["checked"]["health"] == "healthy"
    finally:
        edgefleet.delete_deployment(status["id"], force=True)


def test_swarm_stack_reaches_started(lab: Any, edges: dict[str, Any], local_runs: None) -> None:
    swarm_edge = next(e for e in lab.edges if e.swarm)
    port = free_port(set())
    stack = f"""
services:
  web:
    image: {lab.registry}/edgefleet/hello:2.0.0
    ports:
      - target: 8080
        published: {port}
        mode: host
"""
    app = unique("stk")
    edgefleet.create_application(app, "1.0.0", stack=stack)
    edgefleet.publish_version(app, "1.0.0")
    status = edgefleet.deploy(app, swarm_edge.name)
    assert status["state"] == "STARTED", status["last_error"]
    assert "hello from edgefleet/hello 2.0.0" in get_page(f"http://127.0.0.1:{port}/")
    (live,) = containers_of(swarm_edge.connection, status["id"])
    assert live.labels[L.APPLICATION] == app
    stopped = edgefleet.stop_deployment(status["id"])
    assert stopped["state"] == "STOPPED"


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("missing-image", "cannot pull"),
        ("crash", "exit code 1"),
        ("unhealthy", "did not become healthy"),
    ],
)
def test_failures_end_in_error_with_a_reason_and_nothing_left(
        lab: Any, edges: dict[str, Any], prefect_api: str, local_runs: None,
        monkeypatch: pytest.MonkeyPatch, case: str, reason: str) -> None:
    monkeypatch.setenv("EDGEFLEET_DEPLOY_TIMEOUT", "15")
    get_settings.cache_clear()
    app = unique(case)
    image = f"{lab.registry}/edgefleet/hello:1.0.0"
    env: list[str] = []
    if case == "missing-image":
        image = f"{lab.registry}/edgefleet/does-not-exist:9.9.9"
    elif case == "crash":
        env = ["HELLO_CRASH=1"]
    else:
        env = ["HELLO_UNHEALTHY=1"]
    edgefleet.create_application(app, "1.0.0", image=image, ports=["8080"], env=env)
    edgefleet.publish_version(app, "1.0.0")
    status = edgefleet.deploy(app, "lab-2")
    assert status["state"] == "ERROR"
    assert reason in status["last_error"]
    assert containers_of(edges["lab-2"].connection, status["id"]) == []
    assert networks_of(edges["lab-2"].connection, status["id"]) == []
    assert status["containers"] == []
    if case == "missing-image":
        pulls = settled_pulls(status["flow_run_id"], prefect_api)
        assert pulls[0].run_count == 3  # two retries, visible as task runs
    edgefleet.delete_deployment(status["id"], force=True)


def test_unreachable_edge_ends_in_error(lab: Any, prefect_api: str, local_runs: None) -> None:
    edge = unique("gone")
    edgefleet.add_edge(edge, f"tcp://127.0.0.1:{free_port(set())}", check=False)
    app = unique("far")
    edgefleet.create_application(app, "1.0.0", image=f"{lab.registry}/edgefleet/hello:1.0.0")
    edgefleet.publish_version(app, "1.0.0")
    status = edgefleet.deploy(app, edge)
    assert status["state"] == "ERROR"
    assert "did not answer" in status["last_error"]
    pulls = settled_pulls(status["flow_run_id"], prefect_api)
    assert pulls[0].run_count == 3
    with pytest.raises(InvalidTransition):
        edgefleet.delete_deployment(status["id"])
    warning = edgefleet.delete_deployment(status["id"], force=True)
    assert warning and "could not be stopped" in warning
    assert status["id"] not in [d["id"] for d in edgefleet.list_deployments()]
    edgefleet.remove_edge(edge)


def test_prefect_deployment_run_deploys(lab: Any, edges: dict[str, Any], prefect_api: str
                                        ) -> None:
    """`prefect deployment run` (the Prefect CLI) runs the same job while `edgefleet up` runs."""
    import os
    import subprocess
    import sys

    app = unique("cli")
    edgefleet.create_application(app, "1.0.0", image=f"{lab.registry}/edgefleet/hello:1.0.0",
                                 ports=["8080"])
    edgefleet.publish_version(app, "1.0.0")
    dep = edgefleet.create_deployment(app, "lab-2")
    env = {**os.environ, "PREFECT_API_URL": prefect_api}
    subprocess.run([sys.executable, "-m", "prefect", "deployment", "run",
                    "deploy-application/deploy-application", "--param",
                    f'deployment_id="{dep.id}"'], env=env, check=True, timeout=120,
                   capture_output=True)
    deadline = time.monotonic() + 90
    while edgefleet.deployment_status(dep.id)["state"] in ("CREATED", "STARTING"):
        assert time.monotonic() < deadline, "the flow run never finished"
        time.sleep(0.5)
    status = edgefleet.deployment_status(dep.id)
    assert status["state"] == "STARTED", status["last_error"]
    assert "hello from edgefleet/hello 1.0.0" in get_page(status["urls"][0])
    edgefleet.delete_deployment(dep.id, force=True)


def test_served_deployment_runs_the_job(lab: Any, edges: dict[str, Any], prefect_api: str
                                        ) -> None:
    """While `edgefleet up` runs, a deploy is a flow run of the deployment in the work pool
    `edgefleet`, run by its worker."""
    assert server.served_api_url() == prefect_api
    app = unique("srv")
    edgefleet.create_application(app, "1.0.0", image=f"{lab.registry}/edgefleet/hello:1.1.0",
                                 ports=["8080"])
    edgefleet.publish_version(app, "1.0.0")
    status = edgefleet.deploy(app, "lab-1")
    assert status["state"] == "STARTED", status["last_error"]
    with temporary_settings({PREFECT_API_URL: prefect_api}), \
            get_client(sync_client=True) as client:
        run = client.read_flow_run(status["flow_run_id"])
        assert run.deployment_id is not None
        assert run.state is not None and run.state.is_completed()
        assert run.work_pool_name == "edgefleet"  # run by a worker of the pool
        assert client.read_deployment(run.deployment_id).work_pool_name == "edgefleet"
    assert "1.1.0" in get_page(status["urls"][0])
    edgefleet.delete_deployment(status["id"], force=True)


def test_stop_keeps_volumes_unless_asked(lab: Any, edges: dict[str, Any], local_runs: None
                                         ) -> None:
    compose = f"""
services:
  worker:
    image: {lab.registry}/edgefleet/ticker:1.0.0
    volumes: ["data:/data"]
volumes:
  data: {{}}
"""
    app = unique("vol")
    edgefleet.create_application(app, "1.0.0", compose=compose)
    edgefleet.publish_version(app, "1.0.0")
    conn = edges["lab-2"].connection

    def volumes(dep_id: str) -> list[str]:
        from edgefleet.engine import engine_client
        from edgefleet.labels import project_name

        with engine_client(conn) as client:
            return [v.name for v in client.volumes.list(
                filters={"label": f"com.docker.compose.project={project_name(dep_id)}"})]

    kept = edgefleet.deploy(app, "lab-2")
    assert kept["state"] == "STARTED", kept["last_error"]
    assert len(volumes(kept["id"])) == 1
    edgefleet.stop_deployment(kept["id"])
    assert len(volumes(kept["id"])) == 1
    again = edgefleet.start_deployment(kept["id"])
    assert again["state"] == "STARTED", again["last_error"]
    edgefleet.stop_deployment(kept["id"], remove_volumes=True)
    assert volumes(kept["id"]) == []
    edgefleet.delete_deployment(kept["id"])


def test_deploy_overhead_benchmark_runs_in_short_mode(lab: Any, prefect_api: str) -> None:
    """The benchmark proves it works here; its ratio is reported, never asserted."""
    from bench.deploy_overhead import run_benchmark

    result = run_benchmark(runs=1, edge="lab-2")
    for key in ("raw_compose_median_s", "edgefleet_in_process_median_s",
                "ratio_in_process_vs_raw", "served_launch_median_s"):
        assert result[key] > 0
