"""Bundled files on the real lab: a compose file naming a file not bundled is refused at
`app create` (nothing stored); bundled ones reach the containers of a remote engine (an
env_file as environment, a `configs: file:` and a bind mount as files); an update whose
version changed one service's file, or one service's parameter default, recreates only that
service, and the publish notice says what changed."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import edgefleet
from edgefleet import jobs
from edgefleet.cli.main import app as cli
from edgefleet.engine import engine_client
from tests.lab_helpers import containers_of, unique

pytestmark = [pytest.mark.lab, pytest.mark.usefixtures("quick_local_runs")]

APP = """
services:
  web:
    image: {registry}/edgefleet/hello:1.0.0
    ports: ["8080"]
    env_file: app.env
    environment:
      MOOD: ${{MOOD:-calm}}
    configs:
      - source: motd
        target: /etc/motd.txt
  worker:
    image: {registry}/edgefleet/ticker:1.0.0
    volumes: ["./worker.conf:/etc/worker.conf:ro"]
configs:
  motd:
    file: ./motd.txt
"""


def ids(status: dict[str, Any]) -> dict[str, str]:
    return {c["service"]: c["container_id"] for c in status["containers"]}


def seen(edge: Any, deployment_id: str) -> dict[str, dict[str, str]]:
    """Per service: its environment and the files it was given, read in the container."""
    found: dict[str, dict[str, str]] = {}
    with engine_client(edge.connection) as client:
        for live in containers_of(edge.connection, deployment_id):
            service = live.labels["io.edgefleet.service"]
            env = dict(e.split("=", 1) for e in live.attrs["Config"]["Env"])
            path = "/etc/motd.txt" if service == "web" else "/etc/worker.conf"
            out = client.containers.get(live.id).exec_run(["cat", path])
            found[service] = {**env, path: out.output.decode()}
    return found


def notice_of(deployment_id: str, version: str) -> str:
    def notes() -> list[dict[str, Any]]:
        return [n for n in edgefleet.list_notifications()
                if n["deployment_id"] == deployment_id and n["to_version"] == version]

    deadline = time.monotonic() + 45
    while not notes() and time.monotonic() < deadline:
        time.sleep(0.5)
    if not notes():
        jobs.run_here("reconcile-notifications")
    (note,) = notes()
    return str(note["message"])


def test_bundled_files_reach_the_containers_and_an_update_recreates_only_their_users(
        lab: Any, edges: dict[str, Any], prefect_api: str, tmp_path: Path) -> None:
    name = unique("files")
    compose = tmp_path / "compose.yaml"
    compose.write_text(APP.format(registry=lab.registry))
    (tmp_path / "app.env").write_text("GREETING=from the env file\n")
    (tmp_path / "motd.txt").write_text("price: $5\n")
    (tmp_path / "worker-1.conf").write_text("interval=1\n")
    (tmp_path / "worker-2.conf").write_text("interval=2\n")
    runner = CliRunner()
    create = ["app", "create", name, "--version", "1.0.0", "--compose", str(compose)]

    # a file the compose file names but the version does not bundle: refused, nothing stored
    refused = runner.invoke(cli, [*create, "--file", str(tmp_path / "app.env")],
                            env={"COLUMNS": "300"})
    assert refused.exit_code == 1
    assert "./motd.txt (configs.motd.file)" in refused.output, refused.output
    assert "./worker.conf (services.worker.volumes)" in refused.output
    assert name not in [a["name"] for a in edgefleet.list_applications()]

    common = ["--file", str(tmp_path / "app.env"), "--file", str(tmp_path / "motd.txt")]
    made = runner.invoke(cli, [*create, *common, "--file",
                               f"{tmp_path / 'worker-1.conf'}=worker.conf"])
    assert made.exit_code == 0, made.output
    more = runner.invoke(cli, ["app", "version", name, "1.1.0", "--compose", str(compose),
                               *common, "--file", f"{tmp_path / 'worker-2.conf'}=worker.conf"])
    assert more.exit_code == 0, more.output
    edgefleet.add_version(name, "1.2.0", compose=compose.read_text(),
                          params=[{"name": "MOOD", "default": "happy"}],
                          files={"app.env": "GREETING=from the env file\n",
                                 "motd.txt": "price: $5\n", "worker.conf": "interval=2\n"})
    edgefleet.publish_version(name, "1.0.0")

    edge = edges["lab-1"]
    first = edgefleet.deploy(name, "lab-1")
    assert first["state"] == "STARTED", first["last_error"]
    inside = seen(edge, first["id"])
    assert inside["web"]["GREETING"] == "from the env file" and inside["web"]["MOOD"] == "calm"
    assert inside["web"]["/etc/motd.txt"] == "price: $5\n"
    assert inside["worker"]["/etc/worker.conf"] == "interval=1\n"

    # only the worker's file changed: the notice says so, the update recreates the worker
    edgefleet.publish_version(name, "1.1.0")
    assert "Changed: files: worker.conf" in notice_of(first["id"], "1.1.0")
    second = edgefleet.update_deployment(first["id"], to="1.1.0")
    assert second["state"] == "STARTED" and second["version"] == "1.1.0", second["last_error"]
    assert ids(second)["web"] == ids(first)["web"]
    assert ids(second)["worker"] != ids(first)["worker"]
    assert seen(edge, first["id"])["worker"]["/etc/worker.conf"] == "interval=2\n"

    # only a default the web service uses changed: the update recreates the web service
    edgefleet.publish_version(name, "1.2.0")
    assert "Changed: parameter defaults: MOOD 'calm' → 'happy'" in notice_of(first["id"],
                                                                          "1.2.0")
    third = edgefleet.update_deployment(first["id"], to="1.2.0")
    assert third["state"] == "STARTED" and third["version"] == "1.2.0", third["last_error"]
    assert ids(third)["worker"] == ids(second)["worker"]
    assert ids(third)["web"] != ids(second)["web"]
    inside = seen(edge, first["id"])
    assert inside["web"]["MOOD"] == "happy" and inside["web"]["/etc/motd.txt"] == "price: $5\n"

    edgefleet.delete_deployment(first["id"], force=True)
    edgefleet.delete_application(name)
