"""The Prefect UI as the launch console, on the real lab with `edgefleet up` running: a launch
created through the Prefect API as the UI's run form sends it, the second step that asks for
a missing required parameter, a refusal in `edgefleet deploy`'s words with the sensitive
values masked, `prefect deployment run` as the README shows it, and the run form rendered by
headless chromium with its fields' titles and a password field for a sensitive value
(screenshots kept under ``test-artifacts/``)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote
from uuid import UUID

import pytest
from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterKey,
    FlowRunFilter,
    FlowRunFilterName,
)
from prefect.client.schemas.objects import FlowRun
from prefect.settings import PREFECT_API_URL, temporary_settings
from pydantic import SecretStr

import edgefleet
from edgefleet.errors import InvalidInput
from edgefleet.models.parameters import MASK
from tests.lab_helpers import containers_of, get_page, page_text, render_dom, unique

pytestmark = pytest.mark.lab

LAUNCH = "launch-application/launch-application"
ENDED = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}
SENSITIVE = "launch-token-5e0b7c2a91"  # an operator's value of a sensitive parameter
GREETING = """
services:
  web:
    image: {registry}/edgefleet/hello:1.0.0
    ports: ["8080"]
    environment:
      GREETING: ${{GREETING:?say hello}}
      TOKEN: ${{TOKEN:?the API token}}
      MOOD: ${{MOOD:-calm}}
"""


@contextmanager
def prefect(api_url: str) -> Iterator[SyncPrefectClient]:
    with temporary_settings({PREFECT_API_URL: api_url}), \
            get_client(sync_client=True) as client:
        yield client


def launch(api_url: str, parameters: dict[str, Any]) -> UUID:
    """A flow run of the served launch deployment, as the UI's run form creates it."""
    with prefect(api_url) as client:
        deployment = client.read_deployment_by_name(LAUNCH)
        return client.create_flow_run_from_deployment(deployment.id,
                                                      parameters=parameters).id


def wait_run(api_url: str, run_id: UUID, states: set[str], timeout: float = 600) -> FlowRun:
    deadline = time.monotonic() + timeout
    while True:
        with prefect(api_url) as client:
            run = client.read_flow_run(run_id)
        if run.state_type is not None and run.state_type.value in states:
            return run
        if time.monotonic() > deadline:
            raise AssertionError(f"run {run.name} is {run.state_type} after {timeout:.0f}s, "
                                 f"not {states}")
        time.sleep(1)


def wait_input(client: SyncPrefectClient, run_id: UUID, key: str, timeout: float = 30) -> str:
    """A run input (the pause saves its form's schema just after the run is PAUSED)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return client.read_flow_run_input(run_id, key)
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def launched(application: str) -> list[dict[str, Any]]:
    return sorted((d for d in edgefleet.list_deployments() if d["application"] == application),
                  key=lambda d: d["edge"])


def clean(application: str) -> None:
    for dep in launched(application):
        edgefleet.delete_deployment(dep["id"], force=True)


def published_hello(lab: Any, versions: tuple[str, ...] = ("1.0.0", "1.1.0")) -> str:
    app = unique("launch")
    for i, version in enumerate(versions):
        make = edgefleet.create_application if i == 0 else edgefleet.add_version
        make(app, version, image=f"{lab.registry}/edgefleet/hello:{version}", ports=["8080"])
        edgefleet.publish_version(app, version)
    return app


def test_a_launch_from_the_run_form_deploys_to_two_edges(
        lab: Any, edges: dict[str, Any], prefect_api: str) -> None:
    app = published_hello(lab)
    try:
        run_id = launch(prefect_api, {"application": app, "edges": ["lab-1", "lab-2"],
                                      "policy": {"notify": "minor", "prereleases": False}})
        run = wait_run(prefect_api, run_id, ENDED)
        assert run.state_type.value == "COMPLETED", run.state.message if run.state else run
        assert run.name == f"launch {app} 1.1.0 → lab-1, lab-2"  # newest published
        deps = launched(app)
        assert [(d["edge"], d["state"], d["version"], d["policy"]["notify"]) for d in deps] == [
            ("lab-1", "STARTED", "1.1.0", "minor"), ("lab-2", "STARTED", "1.1.0", "minor")]
        for dep in deps:
            assert "hello from edgefleet/hello 1.1.0" in get_page(dep["urls"][0])
        with prefect(prefect_api) as client:
            subflows = client.read_flow_runs(flow_run_filter=FlowRunFilter(
                name=FlowRunFilterName(any_=[f"deploy {app} 1.1.0 → lab-1",
                                             f"deploy {app} 1.1.0 → lab-2"])))
            assert sorted(r.state_type.value for r in subflows if r.state_type) == [
                "COMPLETED", "COMPLETED"]
            assert {str(d["flow_run_id"]) for d in deps} == {str(r.id) for r in subflows}
            (artifact,) = client.read_artifacts(artifact_filter=ArtifactFilter(
                key=ArtifactFilterKey(any_=[f"launch-{app}"])))
        text = str(artifact.data)
        assert f"# launch {app} 1.1.0" in text and "2 of 2 deployments STARTED" in text
        for dep in deps:
            assert f"| {dep['edge']} | `{dep['id'][:12]}` | STARTED |" in text
            assert dep["urls"][0] in text
    finally:
        clean(app)


def test_a_missing_required_parameter_pauses_the_launch_until_given(
        lab: Any, edges: dict[str, Any], prefect_api: str) -> None:
    app = unique("launch-ask")
    edgefleet.create_application(app, "1.0.0", compose=GREETING.format(registry=lab.registry),
                                 params=[{"name": "TOKEN", "sensitive": True}])
    edgefleet.publish_version(app, "1.0.0")
    try:
        run_id = launch(prefect_api, {"application": app, "edges": ["lab-2"],
                                      "env": {"MOOD": "sunny"}})
        run = wait_run(prefect_api, run_id, ENDED | {"PAUSED"})
        assert run.state_type.value == "PAUSED", run.state.message if run.state else run
        assert launched(app) == []  # nothing created while it waits
        with prefect(prefect_api) as client:
            schema = json.loads(wait_input(client, run_id, "paused-parameters-schema"))
            assert schema["required"] == ["GREETING", "TOKEN"]
            assert schema["properties"]["GREETING"]["description"] == "say hello"
            assert schema["properties"]["TOKEN"]["format"] == "password"
            client.resume_flow_run(run_id, run_input={"GREETING": "hello there",
                                                      "TOKEN": SENSITIVE})
        run = wait_run(prefect_api, run_id, ENDED)
        assert run.state_type.value == "COMPLETED", run.state.message if run.state else run
        assert run.name == f"launch {app} 1.0.0 → lab-2"
        (dep,) = launched(app)
        assert dep["state"] == "STARTED", dep["last_error"]
        assert dep["env"] == {"MOOD": "sunny", "GREETING": "hello there", "TOKEN": MASK}
        (live,) = containers_of(edges["lab-2"].connection, dep["id"])
        env = live.attrs["Config"]["Env"]
        assert {"GREETING=hello there", f"TOKEN={SENSITIVE}", "MOOD=sunny"} <= set(env)
        with prefect(prefect_api) as client:
            inputs = client.filter_flow_run_input(run_id, key_prefix="paused-", limit=50,
                                                  exclude_keys=set())
            assert not [i for i in inputs if i.key.endswith("-response")]  # the answer went
            assert SENSITIVE not in str(client.read_flow_run(run_id).parameters)
    finally:
        clean(app)


def test_a_refused_launch_fails_in_deploys_words_with_its_secrets_masked(
        lab: Any, edges: dict[str, Any], prefect_api: str) -> None:
    app = unique("launch-no")
    edgefleet.create_application(app, "1.0.0", compose=GREETING.format(registry=lab.registry),
                                 params=[{"name": "TOKEN", "sensitive": True}])
    edgefleet.publish_version(app, "1.0.0")
    env = {"GREETING": "hi", "MODE": "x"}
    with pytest.raises(InvalidInput) as caught:
        edgefleet.create_deployment(app, "lab-1", env={**env, "TOKEN": "t"})
    run_id = launch(prefect_api, {"application": app, "edges": ["lab-1"], "env": env,
                                  "secrets": [{"name": "TOKEN", "value": SENSITIVE}]})
    run = wait_run(prefect_api, run_id, ENDED)
    assert run.state_type.value == "FAILED"
    assert run.state is not None and str(caught.value) in str(run.state.message)
    assert "did you mean MOOD" in str(caught.value)
    assert run.parameters["secrets"] == [{"name": "TOKEN", "value": MASK}]
    assert run.parameters["env"] == {"GREETING": MASK, "MODE": MASK}  # refused: all masked
    assert SENSITIVE not in json.dumps(run.parameters)
    assert launched(app) == []


def test_prefect_deployment_run_launches_as_the_readme_shows(
        lab: Any, edges: dict[str, Any], prefect_api: str) -> None:
    app = published_hello(lab, ("1.0.0",))
    prefect_cli = Path(os.environ.get("VIRTUAL_ENV", "/work/main/.venv")) / "bin" / "prefect"
    binary = str(prefect_cli) if prefect_cli.exists() else shutil.which("prefect")
    assert binary
    try:
        done = subprocess.run(
            [binary, "deployment", "run", LAUNCH, "--param", f'application="{app}"',
             "--param", 'edges=["lab-1"]', "--param", 'version="1.0.0"'],
            env={**os.environ, "PREFECT_API_URL": prefect_api}, capture_output=True,
            text=True, timeout=120)
        assert done.returncode == 0, done.stderr + done.stdout
        found = re.search(r"UUID:\s*([0-9a-f-]{36})", done.stdout)
        assert found, done.stdout
        run = wait_run(prefect_api, UUID(found.group(1)), ENDED)
        assert run.state_type.value == "COMPLETED", run.state.message if run.state else run
        assert run.name == f"launch {app} 1.0.0 → lab-1"
        assert [(d["edge"], d["state"]) for d in launched(app)] == [("lab-1", "STARTED")]
    finally:
        clean(app)


@pytest.mark.skipif(shutil.which("chromium") is None,
                    reason="chromium is not installed (scripts/test.sh installs it)")
def test_the_run_form_shows_the_fields_titles_and_descriptions(
        lab: Any, prefect_api: str) -> None:
    with prefect(prefect_api) as client:
        deployment = client.read_deployment_by_name(LAUNCH)
    ui = prefect_api.removesuffix("/api")
    page = page_text(render_dom(f"{ui}/deployments/deployment/{deployment.id}/run",
                                "launch-form", height=2200))
    assert "Can't connect" not in page
    for title in ("Application", "Version", "Edges", "Edge selector", "Parameters",
                  "Sensitive parameters", "Allow unpublished"):
        assert title in page, f"{title!r} not on the run form (test-artifacts/)"
    assert "the newest published one" in page  # a description
    # Prefect's newer UI (its default for a browser entering at /) draws a sensitive
    # entry's value as a password field; the form opened with one entry, as a link can
    given = quote(json.dumps({"application": "hello",
                              "secrets": [{"name": "TOKEN", "value": ""}]}))
    dom = render_dom(f"{ui}/v2/deployments/deployment/{deployment.id}/run?parameters={given}",
                     "launch-form-v2", height=2200)
    assert "Sensitive parameters" in page_text(dom)
    assert re.search(r"<input[^>]*type=\"password\"", dom), \
        "no password field on the run form (test-artifacts/prefect-ui-launch-form-v2.png)"


def _secret_block_exists(api_url: str, name: str) -> bool:
    from prefect.exceptions import ObjectNotFound

    with prefect(api_url) as client:
        try:
            client.read_block_document_by_name(name, block_type_slug="secret")
        except ObjectNotFound:
            return False
    return True


def test_a_launch_whose_secrets_fail_half_way_leaves_no_block_and_no_deployment(
        lab: Any, prefect_api: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The second deployment's block cannot be saved (the server refuses, say): the first
    one's block, saved already, goes too, and nothing is recorded."""
    from prefect.blocks.system import Secret

    from edgefleet.models.launch import LaunchPlan
    from edgefleet.models.policies import UpdatePolicy
    from edgefleet.tasks.launch import create_launch_deployments

    app = unique("launch-half")
    edgefleet.create_application(app, "1.0.0", compose=GREETING.format(registry=lab.registry),
                                 params=[{"name": "TOKEN", "sensitive": True}])
    edgefleet.publish_version(app, "1.0.0")
    saves: list[str] = []
    real_save = Secret.save

    def second_fails(self: Secret, name: str, *args: Any, **kwargs: Any) -> Any:
        saves.append(name)
        if len(saves) == 2:
            assert _secret_block_exists(prefect_api, saves[0])  # the first one is stored
            raise RuntimeError("the Prefect server refused the block (injected)")
        return real_save(self, name, *args, **kwargs)

    monkeypatch.setattr(Secret, "save", second_fails)
    plan = LaunchPlan(application=app, version="1.0.0", edges=["lab-1", "lab-2"],
                      sensitive=["TOKEN"])
    try:
        with pytest.raises(RuntimeError, match="injected"):
            create_launch_deployments.fn(plan, env={"GREETING": "hi"},
                                         secrets={"TOKEN": SecretStr(SENSITIVE)},
                                         policy=UpdatePolicy())
        assert len(saves) == 2 and saves[0].startswith("edgefleet-param-")  # one saved
        assert not _secret_block_exists(prefect_api, saves[0])  # and deleted again
        assert launched(app) == []
    finally:
        monkeypatch.undo()
        clean(app)
