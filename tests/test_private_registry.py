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

import edgefleet
from edgefleet.engine import engine_client
from edgefleet.lab.daemons import free_port
from edgefleet.registry_secrets import save_registry_login
from tests.lab_helpers import assert_no_secret_stored, remove_managed, unique

pytestmark = pytest.mark.lab

USER, PASSWORD = "robot", "s3cret-Pa55word-7f3a"
WRONG_PASSWORD = "wr0ng-Pa55word-c41e"


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

    assert_no_secret_stored({"registry password": PASSWORD}, home=edgefleet_home,
                            api_url=prefect_api, flow_runs=[status["flow_run_id"]])
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
                                                     prefect_api: str, local_runs: None,
                                                     edgefleet_home: Path) -> None:
    """A moved tag in a private registry is found with the version's login; a reference whose
    login is gone, or whose login the registry refuses (a wrong password), is reported on that
    reference only; no password reaches a record, log, run parameter, artifact or event."""
    from edgefleet import jobs
    from edgefleet.registry_secrets import _api

    moving, other, wrong = unique("moving"), unique("other"), unique("wrong")
    for tag in (moving, other, wrong):
        push_private(lab, private_registry, "1.0.0", tag)
    deployed = {}
    for tag in (moving, other, wrong):
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
    # the third login now holds a password the registry refuses
    save_registry_login(deployed[wrong][1], username=USER, password=WRONG_PASSWORD,
                        registry=private_registry)
    push_private(lab, private_registry, "1.1.0", moving)  # the tag moves

    summary = jobs.run_here("check-image-updates")
    errors = summary["errors"]
    assert len(errors) == 2, errors
    assert [e for e in errors if deployed[other][1] in e], errors  # its login is gone
    refused = [e for e in errors if f"team/hello:{wrong}" in e]
    assert refused and "401" in refused[0], errors  # the registry refused the login
    assert not [e for e in errors if moving in e], errors
    found = {f["deployment_id"] for f in summary["updates_available"]}
    assert deployed[moving][0] in found
    assert deployed[other][0] not in found and deployed[wrong][0] not in found
    assert edgefleet.deployment_status(deployed[moving][0])["update_available"]
    assert not edgefleet.deployment_status(deployed[wrong][0])["update_available"]

    # the check read both passwords from their blocks and sent them: still nowhere stored
    assert_no_secret_stored({"registry password": PASSWORD,
                             "wrong registry password": WRONG_PASSWORD},
                            home=edgefleet_home, api_url=prefect_api,
                            flows=["check-image-updates"])
    for dep, _secret in deployed.values():
        edgefleet.delete_deployment(dep, force=True)
