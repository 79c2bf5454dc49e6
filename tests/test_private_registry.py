"""A private registry (htpasswd auth): the login travels as a secret, never in plain text."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import bcrypt
import httpx
import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, LogFilter, LogFilterFlowRunId
from prefect.settings import PREFECT_API_URL, temporary_settings

import edgefleet
from edgefleet.engine import engine_client
from edgefleet.lab.daemons import free_port
from edgefleet.registry_secrets import save_registry_login
from tests.lab_helpers import remove_managed, unique

pytestmark = pytest.mark.lab

USER, PASSWORD = "robot", "s3cret-Pa55word-7f3a"


@pytest.fixture(scope="module")
def private_registry(lab: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A second real registry that demands a login; hello 1.0.0 pushed into it."""
    folder = tmp_path_factory.mktemp("private-registry")
    port = free_port(set())
    (folder / "htpasswd").write_text(
        f"{USER}:{bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt()).decode()}\n")
    (folder / "config.yml").write_text(
        "version: 0.1\n"
        f"storage: {{filesystem: {{rootdirectory: {folder / 'data'}}}}}\n"
        f"http: {{addr: '127.0.0.1:{port}'}}\n"
        f"auth: {{htpasswd: {{realm: edgefleet-test, path: {folder / 'htpasswd'}}}}}\n")
    binary = shutil.which("docker-registry") or "/usr/bin/docker-registry"
    proc = subprocess.Popen([binary, "serve", str(folder / "config.yml")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    address = f"127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                if httpx.get(f"http://{address}/v2/", timeout=1, trust_env=False
                             ).status_code == 401:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "the private registry did not start"
            time.sleep(0.2)
        lab1 = lab.edge("lab-1").connection
        with engine_client(lab1) as client:
            image = client.images.pull(f"{lab.registry}/edgefleet/hello", tag="1.0.0")
            image.tag(f"{address}/team/hello", tag="1.0.0")
            for chunk in client.api.push(f"{address}/team/hello", tag="1.0.0", stream=True,
                                         decode=True,
                                         auth_config={"username": USER, "password": PASSWORD}):
                assert "error" not in chunk, chunk
        yield address
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        for edge in lab.edges:
            remove_managed(edge.connection)




def test_private_image_deploys_with_the_secret_and_the_password_stays_secret(
        lab: Any, private_registry: str, prefect_api: str, local_runs: None,
        edgefleet_home: Path) -> None:
    image = f"{private_registry}/team/hello:1.0.0"
    without = unique("nologin")
    edgefleet.create_application(without, "1.0.0", image=image, ports=["8080"])
    edgefleet.publish_version(without, "1.0.0")
    refused = edgefleet.deploy(without, "lab-2")
    assert refused["state"] == "ERROR"
    assert "cannot pull" in refused["last_error"]

    secret = unique("team-registry")
    save_registry_login(secret, username=USER, password=PASSWORD, registry=private_registry)
    app = unique("private")
    edgefleet.create_application(app, "1.0.0", image=image, ports=["8080"],
                                 registry_secret=secret)
    edgefleet.publish_version(app, "1.0.0")
    status = edgefleet.deploy(app, "lab-2")
    assert status["state"] == "STARTED", status["last_error"]

    # Our records, rendered files and Prefect's database. Scanned by another process: opening
    # and closing a SQLite file here would drop this process's POSIX locks on it.
    scan = subprocess.run(["grep", "-r", "-l", "-a", "--exclude-dir=lab", PASSWORD,
                           str(edgefleet_home)], capture_output=True, text=True, timeout=120)
    assert scan.returncode == 1, f"password found in: {scan.stdout}"
    with temporary_settings({PREFECT_API_URL: prefect_api}), \
            get_client(sync_client=True) as client:
        run_id = status["flow_run_id"]
        logs = client.read_logs(log_filter=LogFilter(
            flow_run_id=LogFilterFlowRunId(any_=[run_id])))
        assert logs and all(PASSWORD not in log.message for log in logs)
        runs = client.read_flow_runs(flow_run_filter=FlowRunFilter(id={"any_": [run_id]}))
        assert PASSWORD not in str(runs[0].parameters)
    for dep in (refused["id"], status["id"]):
        edgefleet.delete_deployment(dep, force=True)


def push_private(lab: Any, address: str, source: str, target: str) -> None:
    """hello:``source`` from the lab registry pushed to the private one as team/hello:``target``."""
    with engine_client(lab.edge("lab-1").connection) as client:
        image = client.images.pull(f"{lab.registry}/edgefleet/hello", tag=source)
        image.tag(f"{address}/team/hello", tag=target)
        for chunk in client.api.push(f"{address}/team/hello", tag=target, stream=True,
                                     decode=True,
                                     auth_config={"username": USER, "password": PASSWORD}):
            assert "error" not in chunk, chunk


def test_private_images_are_checked_with_their_login(lab: Any, private_registry: str,
                                                     prefect_api: str, local_runs: None) -> None:
    """A moved tag in a private registry is found with the version's login; a reference whose
    login is gone is reported on that reference only."""
    from edgefleet import jobs
    from edgefleet.registry_secrets import _api

    moving, other = unique("moving"), unique("other")
    for tag in (moving, other):
        push_private(lab, private_registry, "1.0.0", tag)
    deployed = {}
    for tag in (moving, other):
        secret = unique("login")
        save_registry_login(secret, username=USER, password=PASSWORD, registry=private_registry)
        app = unique("chk")
        edgefleet.create_application(app, "1.0.0", image=f"{private_registry}/team/hello:{tag}",
                                     ports=["8080"], registry_secret=secret)
        edgefleet.publish_version(app, "1.0.0")
        status = edgefleet.deploy(app, "lab-2")
        assert status["state"] == "STARTED", status["last_error"]
        deployed[tag] = (status["id"], secret)
    from prefect.blocks.system import Secret

    with _api(), get_client(sync_client=True) as client:  # the second login goes away
        client.delete_block_document(Secret.load(deployed[other][1])._block_document_id)
    push_private(lab, private_registry, "1.1.0", moving)  # the tag moves

    summary = jobs.run_here("check-image-updates")
    assert [e for e in summary["errors"] if deployed[other][1] in e], summary["errors"]
    assert len(summary["errors"]) == 1, summary["errors"]
    found = {f["deployment_id"] for f in summary["updates_available"]}
    assert deployed[moving][0] in found and deployed[other][0] not in found
    assert edgefleet.deployment_status(deployed[moving][0])["update_available"]
    for dep, _secret in deployed.values():
        edgefleet.delete_deployment(dep, force=True)
