"""Host-level privileges on the real lab: refused without --allow-privileged (nothing
stored); with it the version deploys, and the allowance shows in `app show --json`, in the
publish notification (through the real trigger) and in the deploy flow's log."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
from prefect.settings import PREFECT_API_URL, temporary_settings
from typer.testing import CliRunner

import edgefleet
from edgefleet import jobs
from edgefleet.cli.main import app as cli
from edgefleet.engine import engine_client
from tests.lab_helpers import assert_no_secret_stored, containers_of, get_page, unique

pytestmark = pytest.mark.lab

PLAIN = """
services:
  web:
    image: {registry}/edgefleet/hello:1.0.0
    ports: ["8080"]
"""
# `privileged: true` is refused at the door like these (tests/test_privileges.py), but this
# machine's engines cannot start a privileged container (runc: "unable to apply caps")
PRIVILEGED = """
services:
  web:
    image: {registry}/edgefleet/hello:1.1.0
    ports: ["8080"]
    pid: host
    cap_add: [NET_ADMIN]
    security_opt: ["seccomp=unconfined"]
    volumes: ["{shared}:/from-the-host:ro"]
"""
ASKED = ["services.web.pid: host", 'services.web.cap_add: ["NET_ADMIN"]',
         'services.web.security_opt: ["seccomp=unconfined"]']


def flow_run_logs(api_url: str, flow_run_id: str, wanted: str) -> list[str]:
    """The run's log messages, once one contains ``wanted`` (logs travel in batches)."""
    from prefect.logging.handlers import APILogWorker

    APILogWorker.drain_all(timeout=10)
    deadline = time.monotonic() + 30
    with temporary_settings({PREFECT_API_URL: api_url}), get_client(sync_client=True) as client:
        while True:
            logs = [log.message for log in client.read_logs(log_filter=LogFilter(
                flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])))]
            if any(wanted in message for message in logs) or time.monotonic() > deadline:
                return logs
            time.sleep(0.5)


def test_privileged_version_needs_the_allowance_and_it_shows_everywhere(
        lab: Any, edges: dict[str, Any], prefect_api: str, local_runs: None,
        tmp_path: Path) -> None:
    name = unique("priv")
    edgefleet.create_application(name, "1.0.0", compose=PLAIN.format(registry=lab.registry))
    edgefleet.publish_version(name, "1.0.0")
    old = edgefleet.deploy(name, "lab-2")
    assert old["state"] == "STARTED", old["last_error"]

    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "note.txt").write_text("from the host\n")
    path = tmp_path / "privileged.yaml"
    path.write_text(PRIVILEGED.format(registry=lab.registry, shared=shared))
    runner = CliRunner()

    # without the flag: one line naming each offending key, and nothing stored
    refused = runner.invoke(cli, ["app", "version", name, "1.1.0", "--compose", str(path)])
    assert refused.exit_code == 1
    (line,) = refused.output.strip().splitlines()
    for key in (*ASKED, f"services.web.volumes[0]: bind mount of host path {shared}",
                "--allow-privileged"):
        assert key in line, line
    assert [v["version"] for v in edgefleet.show_application(name)["versions"]] == ["1.0.0"]

    # with it: recorded, and shown by `app show --json`
    allowed = runner.invoke(cli, ["app", "version", name, "1.1.0", "--compose", str(path),
                                  "--allow-privileged"])
    assert allowed.exit_code == 0, allowed.output
    shown = json.loads(runner.invoke(cli, ["app", "show", name, "--json"]).output)
    version = shown["versions"][1]
    assert version["version"] == "1.1.0" and version["allow_privileged"] is True
    assert version["privileges"] == [
        *ASKED, f"services.web.volumes[0]: bind mount of host path {shared}"]
    assert shown["versions"][0]["allow_privileged"] is False

    # the publish notification: written by the served notify flow the event triggers, or
    # (event delivery is best effort, and this machine is shared) by the reconcile
    published = runner.invoke(cli, ["app", "publish", name, "1.1.0"])
    assert published.exit_code == 0 and "--allow-privileged" in published.output

    def notes() -> list[dict[str, Any]]:
        return [n for n in edgefleet.list_notifications()
                if n["deployment_id"] == old["id"] and n["reason"] == "version"]

    deadline = time.monotonic() + 45
    while not notes() and time.monotonic() < deadline:
        time.sleep(0.5)
    if not notes():
        jobs.run_here("reconcile-notifications")
    (note,) = notes()
    assert "Created with --allow-privileged" in note["message"]
    assert "services.web.pid: host" in note["message"]

    # it deploys on a lab edge with the privileges it asked for; the deploy log says so
    new = edgefleet.deploy(name, "lab-2")
    assert new["state"] == "STARTED", new["last_error"]
    (live,) = containers_of(edges["lab-2"].connection, new["id"])
    assert live.status == "running", live.attrs["State"]
    assert "hello from edgefleet/hello 1.1.0" in get_page(new["urls"][0])
    host_config = live.attrs["HostConfig"]
    assert host_config["PidMode"] == "host"
    assert [cap for cap in host_config["CapAdd"] or [] if cap.endswith("NET_ADMIN")]
    assert "seccomp=unconfined" in (host_config["SecurityOpt"] or [])
    with engine_client(edges["lab-2"].connection) as client:
        seen = client.containers.get(live.id).exec_run(["cat", "/from-the-host/note.txt"])
    assert seen.output.decode().strip() == "from the host"
    logs = flow_run_logs(prefect_api, new["flow_run_id"], "--allow-privileged")
    (allowance,) = [m for m in logs if "--allow-privileged" in m]
    assert f"{name} 1.1.0" in allowance and all(key in allowance for key in ASKED)
    assert "lab-2" in allowance

    for dep in (old["id"], new["id"]):
        edgefleet.delete_deployment(dep, force=True)


TOKEN = "cp-token-7d1e0c9b5a"  # a secret of the control plane's own environment
SENSITIVE = "op-api-key-4c2f9e81d7"  # an operator's value of a sensitive parameter
PROBE = """
services:
  web:
    image: {registry}/edgefleet/hello:1.0.0
    environment:
      - "PROBE=${{EDGEFLEET_PROBE_TOKEN:-unset}}"
      - "API_KEY=key:${{API_KEY:?the API key}}"
"""


def test_no_key_or_control_plane_secret_in_files_logs_artifacts_events_or_parameters(
        lab: Any, edges: dict[str, Any], prefect_api: str, local_runs: None,
        edgefleet_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGEFLEET_PROBE_TOKEN", TOKEN)
    name = unique("probe")
    edgefleet.create_application(name, "1.0.0", compose=PROBE.format(registry=lab.registry),
                                 params=[{"name": "API_KEY", "sensitive": True}])
    edgefleet.publish_version(name, "1.0.0")
    status = edgefleet.deploy(name, "lab-2", env={"API_KEY": SENSITIVE})
    assert status["state"] == "STARTED", status["last_error"]
    (live,) = containers_of(edges["lab-2"].connection, status["id"])
    assert "PROBE=unset" in live.attrs["Config"]["Env"]  # compose never saw the token
    assert f"API_KEY=key:{SENSITIVE}" in live.attrs["Config"]["Env"]  # the edge did
    shown = CliRunner().invoke(cli, ["status", status["id"], "--json"])
    assert shown.exit_code == 0 and json.loads(shown.output)["env"] == {"API_KEY": "********"}
    key_path = Path(str(edges["lab-2"].connection.tls_key))
    key_line = max(key_path.read_text().splitlines(), key=len)  # a line of key material
    secrets = {"control-plane token": TOKEN, "edge TLS key": key_line,
               "sensitive parameter": SENSITIVE}
    assert not [what for what, secret in secrets.items() if secret in shown.output]

    # a group of it on both edges: the value in the group's Secret block, its members'
    # containers see it, `group status` masks it
    group = unique("probe")
    edgefleet.collect_telemetry(["lab-1", "lab-2"])  # contacted now: ONLINE, not deferred
    launched = edgefleet.create_group(group, name, edges=["lab-1", "lab-2"], version="1.0.0",
                                      env={"API_KEY": SENSITIVE})
    assert launched["state"] == "STARTED", launched
    assert launched["env"] == {"API_KEY": "********"} and SENSITIVE not in json.dumps(launched)
    for member in launched["edges"]:
        (live,) = containers_of(edges[member["edge"]].connection, member["deployment_id"])
        assert f"API_KEY=key:{SENSITIVE}" in live.attrs["Config"]["Env"], member

    assert_no_secret_stored(secrets, home=edgefleet_home, api_url=prefect_api,
                            flow_runs=[status["flow_run_id"]])
    from prefect.blocks.system import Secret

    from edgefleet.crud import get_group
    from edgefleet.db import session_scope
    from edgefleet.parameters import secret_block_name

    edgefleet.delete_deployment(status["id"], force=True)
    with temporary_settings({PREFECT_API_URL: prefect_api}), pytest.raises(ValueError):
        Secret.load(secret_block_name(status["id"], "API_KEY"))  # gone with its deployment
    with session_scope() as session:
        group_block = secret_block_name(get_group(session, name=group).id, "API_KEY")
    edgefleet.delete_group(group, force=True)  # its members first: the block outlives them
    with temporary_settings({PREFECT_API_URL: prefect_api}), pytest.raises(ValueError):
        Secret.load(group_block)  # gone with its group
