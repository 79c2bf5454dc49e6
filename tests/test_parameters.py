"""Parameters on the real lab: a required one refused before anything exists, given ones
reach the container, defaults apply, and compose refuses a bad file at `app create` in its
own words. (Sensitive values: tests/test_privileged_deploy.py's secret scan.)"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowFilter, FlowFilterName
from prefect.client.schemas.sorting import FlowRunSort
from prefect.settings import PREFECT_API_URL, temporary_settings
from typer.testing import CliRunner

import edgefleet
from edgefleet.cli.main import app as cli
from edgefleet.errors import InvalidInput
from tests.lab_helpers import containers_of, unique

pytestmark = pytest.mark.lab

GREETING = """
services:
  web:
    image: {registry}/edgefleet/hello:1.0.0
    ports: ["8080"]
    environment:
      GREETING: ${{GREETING:?set GREETING}}
      MOOD: ${{MOOD:-calm}}
"""
BAD = """
services:
  web:
    image: {registry}/edgefleet/hello:1.0.0
    ports: "8080"
"""


def newest_deploy_run(api_url: str) -> str | None:
    with temporary_settings({PREFECT_API_URL: api_url}), get_client(sync_client=True) as client:
        runs = client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=["deploy-application"])),
            sort=FlowRunSort.EXPECTED_START_TIME_DESC, limit=1)
    return str(runs[0].id) if runs else None


def env_of(container: Any) -> dict[str, str]:
    return dict(item.split("=", 1) for item in container.attrs["Config"]["Env"])


def test_a_required_parameter_is_refused_before_anything_exists_then_reaches_the_container(
        lab: Any, edges: dict[str, Any], prefect_api: str, local_runs: None,
        tmp_path: Path) -> None:
    name = unique("param")
    path = tmp_path / "greeting.yaml"
    path.write_text(GREETING.format(registry=lab.registry))
    runner = CliRunner()
    made = runner.invoke(cli, ["app", "create", name, "--version", "1.0.0", "--compose",
                               str(path), "--param", "GREETING", "--description",
                               "what the page says"])
    assert made.exit_code == 0, made.output
    runner.invoke(cli, ["app", "publish", name, "1.0.0"])
    shown = json.loads(runner.invoke(cli, ["app", "show", name, "--json"]).output)
    params = {p["name"]: p for p in shown["versions"][0]["parameters"]}
    assert params["GREETING"] | {"message": None} == {
        "name": "GREETING", "default": None, "required": True,
        "description": "what the page says", "sensitive": False, "message": None,
        "discovered": True}
    assert params["MOOD"]["default"] == "calm" and not params["MOOD"]["required"]

    # refused before a record or a flow run exists, naming the parameter and its message
    before = newest_deploy_run(prefect_api)
    records = len(edgefleet.list_deployments())
    refused = runner.invoke(cli, ["deploy", name, "--edge", "lab-1"])
    assert refused.exit_code == 1
    (line,) = refused.output.strip().splitlines()
    assert "required parameter GREETING is not set (set GREETING)" in line, line
    with pytest.raises(InvalidInput, match="does not know --env GREETNG; did you mean GREETING"):
        edgefleet.deploy(name, "lab-1", env={"GREETNG": "hi"})
    assert len(edgefleet.list_deployments()) == records
    assert newest_deploy_run(prefect_api) == before

    # given: the container sees it; not given: the default applies
    status = edgefleet.deploy(name, "lab-1", env={"GREETING": "hi"})
    assert status["state"] == "STARTED", status["last_error"]
    (live,) = containers_of(edges["lab-1"].connection, status["id"])
    seen = env_of(live)
    assert seen["GREETING"] == "hi" and seen["MOOD"] == "calm"
    edgefleet.delete_deployment(status["id"], force=True)


def test_a_declared_default_of_an_image_applies(lab: Any, edges: dict[str, Any],
                                                 prefect_api: str, local_runs: None) -> None:
    name = unique("pimg")
    edgefleet.create_application(name, "1.0.0", image=f"{lab.registry}/edgefleet/hello:1.0.0",
                                 ports=["8080"], params=[{"name": "HELLO_MODE",
                                                          "default": "quiet"}])
    edgefleet.publish_version(name, "1.0.0")
    status = edgefleet.deploy(name, "lab-2")
    assert status["state"] == "STARTED", status["last_error"]
    (live,) = containers_of(edges["lab-2"].connection, status["id"])
    assert env_of(live)["HELLO_MODE"] == "quiet"
    edgefleet.delete_deployment(status["id"], force=True)


def test_compose_refuses_a_bad_file_at_app_create_in_its_own_words(
        lab: Any, tmp_path: Path) -> None:
    name = unique("pbad")
    path = tmp_path / "bad.yaml"
    path.write_text(BAD.format(registry=lab.registry))
    refused = CliRunner().invoke(cli, ["app", "create", name, "--version", "1.0.0",
                                       "--compose", str(path)], env={"COLUMNS": "300"})
    assert refused.exit_code == 1
    (line,) = refused.output.strip().splitlines()
    assert line == ("error: compose file refused by compose: services.web.ports must be a "
                    "array (service web)"), line
    assert name not in [a["name"] for a in edgefleet.list_applications()]


CRASHING = """
services:
  web:
    image: {registry}/edgefleet/hello:1.0.0
    environment:
      HELLO_CRASH: "${{CRASH:-1}}"
"""


def test_a_failed_up_reads_as_compose_said_it(lab: Any, edges: dict[str, Any],
                                               prefect_api: str, local_runs: None) -> None:
    name = unique("pcrash")
    edgefleet.create_application(name, "1.0.0", compose=CRASHING.format(registry=lab.registry))
    edgefleet.publish_version(name, "1.0.0")
    status = edgefleet.deploy(name, "lab-1")
    assert status["state"] == "ERROR"
    first = status["last_error"].splitlines()[0]
    assert first.startswith("compose up failed: ") and first.endswith("(service web)"), first
    assert "exited" in first and "Expecting value" not in status["last_error"], first
    edgefleet.delete_deployment(status["id"], force=True)
