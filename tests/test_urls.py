"""Named URLs on the real lab: a template renders with the edge's --address and the port the
engine published, and an update to a version that changed only its URLs recreates no
container while `status` shows the new URL at once."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from typing import Any

import pytest
from typer.testing import CliRunner

import edgefleet
from edgefleet.cli.main import app as cli
from edgefleet.settings import get_settings
from tests.lab_helpers import get_page, unique

pytestmark = [pytest.mark.lab, pytest.mark.usefixtures("quick_local_runs")]

TWO_SERVICES = """
services:
  web:
    image: {registry}/edgefleet/hello:1.0.0
    ports: ["8080"]
  worker:
    image: {registry}/edgefleet/ticker:1.0.0
"""


@pytest.fixture
def vpn_edge(edges: dict[str, Any]) -> Iterator[str]:
    """lab-2's engine registered again as an edge whose users reach it as `localhost` (the
    name stands for a VPN address: it resolves here, so its URLs can be fetched)."""
    lab2 = edges["lab-2"]
    name = unique("vpn")
    edgefleet.add_edge(name, lab2.docker_host, address="localhost", tls_ca=lab2.tls_ca,
                       tls_cert=lab2.tls_cert, tls_key=lab2.tls_key)
    yield name
    for dep in edgefleet.list_deployments():
        if dep["edge"] == name:
            with contextlib.suppress(Exception):
                edgefleet.delete_deployment(dep["id"], force=True)
    edgefleet.remove_edge(name)


def ids(status: dict[str, Any]) -> dict[str, str]:
    return {c["service"]: c["container_id"] for c in status["containers"]}


def host_port(status: dict[str, Any], service: str) -> str:
    [container] = [c for c in status["containers"] if c["service"] == service]
    return str(container["ports"][0].split(":")[0])


def cli_status(deployment_id: str) -> tuple[dict[str, Any], str]:
    as_json = CliRunner().invoke(cli, ["status", deployment_id, "--json"])
    assert as_json.exit_code == 0, as_json.output
    text = CliRunner().invoke(cli, ["status", deployment_id])
    assert text.exit_code == 0, text.output
    return json.loads(as_json.output), text.output


def test_image_url_renders_and_a_url_only_update_recreates_nothing(
        lab: Any, vpn_edge: str) -> None:
    app = unique("url")
    image = f"{lab.registry}/edgefleet/hello:1.0.0"
    edgefleet.create_application(app, "1.0.0", image=image, ports=["8080"],
                                 urls=["admin=http://${host}:${port:8080}/"])
    edgefleet.add_version(app, "1.0.1", image=image, ports=["8080"],
                          urls=["admin=http://${host}:${port:8080}/?v=2",
                                "raw=tcp://${host}:${port:" + app + ":8080}"])
    edgefleet.publish_version(app, "1.0.0")
    first = edgefleet.deploy(app, vpn_edge)
    assert first["state"] == "STARTED", first["last_error"]
    port = host_port(first, app)
    assert first["named_urls"] == {"admin": f"http://localhost:{port}/"}
    assert "hello from edgefleet/hello 1.0.0" in get_page(first["named_urls"]["admin"])
    assert first["urls"] == [f"http://localhost:{port}"]  # today's list stays, on the address

    edgefleet.publish_version(app, "1.0.1")
    after = edgefleet.update_deployment(first["id"], to="1.0.1")
    assert after["state"] == "STARTED" and after["version"] == "1.0.1", after["last_error"]
    assert ids(after) == ids(first)  # nothing recreated
    data, text = cli_status(first["id"])
    assert data["named_urls"] == {"admin": f"http://localhost:{port}/?v=2",
                                  "raw": f"tcp://localhost:{port}"}
    assert f"admin: http://localhost:{port}/?v=2" in text
    assert "hello from edgefleet/hello 1.0.0" in get_page(data["named_urls"]["admin"])
    edgefleet.delete_deployment(first["id"], force=True)
    edgefleet.delete_application(app)


def test_compose_url_only_update_keeps_every_service(lab: Any, vpn_edge: str) -> None:
    app = unique("urlc")
    compose = TWO_SERVICES.format(registry=lab.registry)
    edgefleet.create_application(app, "1.0.0", compose=compose,
                                 urls=["web=http://${host}:${port:web:8080}/"])
    edgefleet.add_version(app, "1.1.0", compose=compose,
                          urls=["web=http://${host}:${port:8080}/${service}/",
                                "home=https://${host}/"])
    edgefleet.publish_version(app, "1.0.0")
    first = edgefleet.deploy(app, vpn_edge)
    assert first["state"] == "STARTED", first["last_error"]
    port = host_port(first, "web")
    assert first["named_urls"] == {"web": f"http://localhost:{port}/"}
    edgefleet.publish_version(app, "1.1.0")
    after = edgefleet.update_deployment(first["id"], to="1.1.0")
    assert after["state"] == "STARTED" and after["version"] == "1.1.0", after["last_error"]
    assert ids(after) == ids(first)
    assert after["named_urls"] == {"web": f"http://localhost:{port}/web/",
                                   "home": "https://localhost/"}
    edgefleet.delete_deployment(first["id"], force=True)
    edgefleet.delete_application(app)


STACK = """
services:
  web:
    image: {registry}/edgefleet/hello:1.0.0
    ports:
      - target: 8080
        published: {port}
        mode: host
  worker:
    image: {registry}/edgefleet/ticker:1.0.0
"""


def test_stack_url_names_its_service_and_a_url_only_update_keeps_the_tasks(
        lab: Any, edges: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    from edgefleet.lab.daemons import free_port

    monkeypatch.setenv("EDGEFLEET_SOAK_SECONDS", "8")  # longer than swarm's restart delay
    monkeypatch.setenv("EDGEFLEET_DEPLOY_TIMEOUT", "40")
    get_settings.cache_clear()
    swarm = next(e for e in lab.edges if e.swarm)
    port = free_port(set())
    app = unique("urls")
    stack = STACK.format(registry=lab.registry, port=port)
    edgefleet.create_application(app, "1.0.0", stack=stack,
                                 urls=["web=http://${host}:${port:web:8080}/"])
    edgefleet.add_version(app, "1.0.1", stack=stack,
                          urls=["web=http://${host}:${port:8080}/${service}"])
    edgefleet.publish_version(app, "1.0.0")
    first = edgefleet.deploy(app, swarm.name)
    assert first["state"] == "STARTED", first["last_error"]
    assert first["named_urls"] == {"web": f"http://127.0.0.1:{port}/"}
    edgefleet.publish_version(app, "1.0.1")
    after = edgefleet.update_deployment(first["id"], to="1.0.1")
    assert after["state"] == "STARTED" and after["version"] == "1.0.1", after["last_error"]
    assert ids(after) == ids(first)
    assert after["named_urls"] == {"web": f"http://127.0.0.1:{port}/web"}
    edgefleet.delete_deployment(first["id"], force=True)
    edgefleet.delete_application(app)
