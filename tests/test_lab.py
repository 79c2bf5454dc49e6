"""The lab: pure pieces without engines, then the real lab (dockerd edges, registry, images)."""

from __future__ import annotations

import json
import os
import signal
import ssl
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import docker
import docker.errors
import httpx
import pytest
import requests.exceptions
import yaml
from typer.testing import CliRunner

from edgefleet.api.edges import list_edges
from edgefleet.cli.lab import lab_app
from edgefleet.engine import engine_client
from edgefleet.errors import LabError
from edgefleet.lab import LabStatus, certs, daemons, images, lab_down, lab_status, lab_up
from edgefleet.lab.state import EdgeState, LabState, load_state, run_dir_for, save_state
from edgefleet.models.connections import EngineConnection

HELLO_TAGS = ("1.0.0", "1.1.0", "2.0.0", "latest")
TEST_LABEL = "edgefleet.test"


# ---------------------------------------------------------------- pure pieces (no lab)


def test_certificate_extensions_name_usage_and_address() -> None:
    server = certs.leaf_extensions("server")
    client = certs.leaf_extensions("client")
    assert "extendedKeyUsage = serverAuth" in server
    assert "subjectAltName = IP:127.0.0.1" in server
    assert "extendedKeyUsage = clientAuth" in client
    assert "subjectAltName" not in client
    assert "CA:TRUE" in certs.ca_config() and "keyCertSign" in certs.ca_config()


def test_openssl_makes_a_verifiable_chain(tmp_path: Path) -> None:
    server, client = certs.ensure_edge_certs(tmp_path, "lab-9")
    assert sorted(p.name for p in client.glob("*.pem")) == ["ca.pem", "cert.pem", "key.pem"]
    for folder, usage in ((server, "TLS Web Server Authentication"),
                          (client, "TLS Web Client Authentication")):
        verify = subprocess.run(
            ["openssl", "verify", "-CAfile", str(folder / "ca.pem"), str(folder / "cert.pem")],
            capture_output=True, text=True, timeout=30, check=False,
        )
        assert verify.returncode == 0, verify.stderr
        text = subprocess.run(
            ["openssl", "x509", "-noout", "-text", "-in", str(folder / "cert.pem")],
            capture_output=True, text=True, timeout=30, check=True,
        ).stdout
        assert usage in text
    san = subprocess.run(
        ["openssl", "x509", "-noout", "-ext", "subjectAltName", "-in", str(server / "cert.pem")],
        capture_output=True, text=True, timeout=30, check=True,
    ).stdout
    assert "IP Address:127.0.0.1" in san
    assert oct((client / "key.pem").stat().st_mode & 0o777) == "0o600"
    before = (server / "cert.pem").read_bytes()
    certs.ensure_edge_certs(tmp_path, "lab-9")  # made once, then reused
    assert (server / "cert.pem").read_bytes() == before


def _edge(tmp: Path, name: str = "lab-1") -> EdgeState:
    return EdgeState(
        name=name, index=1, port=23456, pid=4321, data_root=str(tmp / "data"),
        exec_root="/run/x/lab-1", socket="/run/x/lab-1/docker.sock",
        pidfile="/run/x/lab-1/dockerd.pid", log=str(tmp / "lab-1.log"),
        config_file=str(tmp / "daemon.json"), server_certs=str(tmp / "server"),
        client_certs=str(tmp / "client"), address_pool="10.11.0.0/16",
    )


def test_state_file_round_trip(tmp_path: Path) -> None:
    assert load_state(tmp_path) is None
    state = LabState(lab_dir=str(tmp_path), run_dir="/run/x", edges=[_edge(tmp_path)])
    save_state(state)
    loaded = load_state(tmp_path)
    assert loaded == state
    assert loaded is not None and loaded.edges[0].docker_host == "tcp://127.0.0.1:23456"
    assert loaded.edges[0].tls_cert == str(tmp_path / "client" / "cert.pem")
    assert not list(tmp_path.glob(".state-*"))  # the temp file was renamed, not left
    (tmp_path / "state.json").write_text("{not json")
    with pytest.raises(LabError, match="unreadable"):
        load_state(tmp_path)


def test_run_dir_stays_short_for_long_lab_paths(tmp_path: Path) -> None:
    deep = tmp_path / ("x" * 120) / "lab"
    run = run_dir_for(deep)
    assert len(str(run / "lab-10" / "containerd" / "containerd.sock")) < 108
    assert run == run_dir_for(deep) and run != run_dir_for(tmp_path / "lab")


def test_registry_config_and_dockerd_command(tmp_path: Path) -> None:
    config = yaml.safe_load(daemons.registry_config(tmp_path / "data", 5123, "s3cret"))
    assert config["storage"]["delete"]["enabled"] is True
    assert config["storage"]["filesystem"]["rootdirectory"] == str(tmp_path / "data")
    assert config["http"]["addr"] == "127.0.0.1:5123"
    cmd = daemons.dockerd_command(_edge(tmp_path))
    for flag in ("--tlsverify", "--iptables=false", "--bridge=none", "--ip-masq=false"):
        assert flag in cmd
    assert cmd[cmd.index("--default-address-pool") + 1] == "base=10.11.0.0/16,size=24"
    assert "tcp://127.0.0.1:23456" in cmd and "unix:///run/x/lab-1/docker.sock" in cmd


def test_stale_containerd_finds_a_dead_dockerd_s_containerd_not_its_shims(
        tmp_path: Path) -> None:
    exec_root = str(tmp_path / "run" / "lab-1")
    started = []
    for name in ("containerd", "containerd-shim-runc-v2"):  # stand-ins: sh under that name
        (tmp_path / name).symlink_to("/bin/sh")
        started.append(subprocess.Popen([str(tmp_path / name), "-c", "sleep 30",
                                         f"{exec_root}/containerd/containerd.toml"]))
    try:
        found = wait_until_found(lambda: daemons.stale_containerd(exec_root))
        # the stand-in sh may fork for `sleep` (a moment with its parent's command line)
        assert started[0].pid in found and started[1].pid not in found
        assert daemons.stale_containerd(str(tmp_path / "run" / "lab-2")) == []
        assert daemons.stale_containerd(exec_root + "0") == []  # lab-10 is not lab-1
    finally:
        for proc in started:
            proc.kill()
            proc.wait()


def wait_until_found(find: Callable[[], list[int]]) -> list[int]:
    deadline = time.monotonic() + 5
    while not (found := find()) and time.monotonic() < deadline:
        time.sleep(0.05)
    return found


def test_sample_images_are_distinct_and_latest_is_2_0_0() -> None:
    samples = images.sample_images()
    hello = [s for s in samples if s.repo == "edgefleet/hello"]
    assert [s.version for s in hello] == ["1.0.0", "1.1.0", "2.0.0"]
    assert {t for s in hello for t in s.tags} == set(HELLO_TAGS)
    assert next(s for s in hello if "latest" in s.tags).version == "2.0.0"
    assert len({json.dumps(s.files, sort_keys=True) for s in samples}) == len(samples)
    for s in hello:
        assert f"hello from edgefleet/hello {s.version}" in s.files["index.html"]
        assert "HEALTHCHECK --interval=2s --timeout=2s --retries=3" in s.files["Dockerfile"]
        assert "EXPOSE 8080" in s.files["Dockerfile"]
    assert any(s.repo == "edgefleet/ticker" and s.tags == ("1.0.0",) for s in samples)
    assert images.samples_hash(samples) == images.samples_hash(images.sample_images())


@pytest.mark.skipif(not Path("/bin/busybox").exists(), reason="busybox-static not installed")
def test_rootfs_tar_holds_busybox_and_its_applets() -> None:
    import io
    import tarfile

    data = images.rootfs_tar()
    assert data == images.rootfs_tar()  # byte-identical: the base layer never changes
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        names = set(tar.getnames())
        assert {"bin/busybox", "bin/sh", "bin/httpd", "bin/wget", "tmp", "www"} <= names
        assert tar.getmember("bin/sh").linkname == "busybox"


def test_no_lab_means_empty_status_and_clear_errors(
    tmp_path: Path, switch_home: Callable[[Path], AbstractContextManager[Path]]
) -> None:
    with switch_home(tmp_path):  # never the session home: the session lab may be up there
        status = lab_status()
        assert status.registry is None and status.edges == []
        result = CliRunner().invoke(lab_app, ["status", "--json"])
        assert result.exit_code == 0 and json.loads(result.stdout)["edges"] == []
        with pytest.raises(LabError, match="--swarm-edges"):
            lab_up(edges=1, swarm_edges=2)
        with pytest.raises(LabError, match="--edges"):
            lab_up(edges=0)
        lab_down()  # nothing recorded: a no-op, not an error


def test_missing_packages_give_a_clear_error_without_apt_or_root(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from edgefleet.lab import packages

    monkeypatch.setattr(packages, "missing_packages", lambda: ["docker.io", "busybox-static"])
    monkeypatch.setattr(packages.shutil, "which", lambda name: None)
    with pytest.raises(LabError, match="apt-get is not available"):
        packages.ensure_packages(lambda _: None)
    monkeypatch.setattr(packages.shutil, "which", lambda name: f"/usr/bin/{name}")
    monkeypatch.setattr(packages.os, "geteuid", lambda: 1000)
    with pytest.raises(LabError, match="run as root.*docker.io busybox-static"):
        packages.ensure_packages(lambda _: None)


# ---------------------------------------------------------------- the real lab


@pytest.mark.lab
def test_two_edges_answer_docker_info_over_mtls(lab: LabStatus) -> None:
    assert [e.name for e in lab.edges] == ["lab-1", "lab-2"]
    ports = set()
    for edge in lab.edges:
        assert edge.answering and edge.pid
        assert edge.docker_host.startswith("tcp://127.0.0.1:")
        ports.add(edge.docker_host)
        assert Path(edge.tls_ca).name == "ca.pem" and Path(edge.tls_cert).name == "cert.pem"
        with engine_client(edge.connection, timeout=10) as client:
            info = client.info()
        assert info["ServerVersion"] and info["DockerRootDir"].startswith(lab.lab_dir)
    assert len(ports) == 2
    assert [e.swarm for e in lab.edges] == [True, False]


@pytest.mark.lab
def test_edges_refuse_clients_without_a_certificate(lab: LabStatus) -> None:
    for edge in lab.edges:
        port = edge.docker_host.rsplit(":", 1)[1]
        # plain HTTP: the TLS listener answers 400, never the API
        try:
            resp = httpx.get(f"http://127.0.0.1:{port}/version", timeout=5, trust_env=False)
            assert resp.status_code == 400 and "ApiVersion" not in resp.text
        except httpx.HTTPError:
            pass
        # TLS that trusts the lab CA but presents no client certificate: handshake refused
        ctx = ssl.create_default_context(cafile=edge.tls_ca)
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"https://127.0.0.1:{port}/version", verify=ctx, timeout=5,
                      trust_env=False)
        # the docker SDK without TLS
        client = docker.DockerClient(base_url=edge.docker_host, version="1.41", timeout=5)
        client.api.trust_env = False
        with pytest.raises((docker.errors.DockerException, requests.exceptions.RequestException)):
            client.version()
        client.close()


@pytest.mark.lab
def test_registry_serves_the_sample_tags_with_distinct_digests(lab: LabStatus) -> None:
    assert lab.registry and lab.registry_answering
    digests = {}
    for tag in HELLO_TAGS:
        resp = httpx.head(
            f"http://{lab.registry}/v2/edgefleet/hello/manifests/{tag}",
            headers={"Accept": images.MANIFEST_ACCEPT}, timeout=10, trust_env=False,
        )
        assert resp.status_code == 200, tag
        digests[tag] = resp.headers["Docker-Content-Digest"]
    ticker = images.manifest_digest(lab.registry, "edgefleet/ticker", "1.0.0")
    assert ticker and ticker.startswith("sha256:")
    assert digests["latest"] == digests["2.0.0"]
    distinct = {digests[t] for t in ("1.0.0", "1.1.0", "2.0.0")} | {ticker}
    assert len(distinct) == 4


@pytest.mark.lab
def test_second_up_reuses_what_runs_and_edges_are_registered(lab: LabStatus) -> None:
    lines: list[str] = []
    started = time.monotonic()
    again = lab_up(edges=2, swarm_edges=1, progress=lines.append)
    assert time.monotonic() - started < 20
    assert again.registry == lab.registry and again.registry_pid == lab.registry_pid
    assert [e.name for e in again.edges] == ["lab-1", "lab-2"]
    assert [(e.name, e.pid, e.docker_host) for e in again.edges] == [
        (e.name, e.pid, e.docker_host) for e in lab.edges
    ]
    assert any("already in the registry" in line for line in lines)
    assert not any("started" in line for line in lines)
    records = {e.name: e for e in list_edges()}
    for edge in lab.edges:
        assert records[edge.name].docker_host == edge.docker_host
        assert records[edge.name].tls_cert == edge.tls_cert


@pytest.mark.lab
def test_status_json_reports_registry_and_edges(lab: LabStatus) -> None:
    result = CliRunner().invoke(lab_app, ["status", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["registry"] == lab.registry
    assert [edge["name"] for edge in data["edges"]] == ["lab-1", "lab-2"]
    for edge in data["edges"]:
        assert {"name", "pid", "docker_host", "swarm", "answering", "tls_ca", "tls_cert",
                "tls_key", "mode", "agent_pid"} <= set(edge)
        assert edge["answering"] is True
        assert (edge["mode"], edge["agent_pid"]) == ("push", None)


@pytest.fixture
def labelled(lab: LabStatus) -> Iterator[tuple[EngineConnection, str]]:
    """lab-1 and a per-test label value; everything carrying it is removed afterwards."""
    conn = lab.edge("lab-1").connection
    value = uuid.uuid4().hex[:8]
    yield conn, value
    mine = {"label": f"{TEST_LABEL}={value}"}
    with engine_client(conn, timeout=30) as client:
        for container in client.containers.list(all=True, filters=mine):
            container.remove(force=True)
        for network in client.networks.list(filters=mine):
            network.remove()


def _wait(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


def _health(container: Any) -> str:
    container.reload()
    return str(container.attrs["State"].get("Health", {}).get("Status", ""))


@pytest.mark.lab
def test_hello_serves_its_page_and_health_follows_the_env_switches(
    lab: LabStatus, labelled: tuple[EngineConnection, str]
) -> None:
    conn, value = labelled
    labels = {TEST_LABEL: value}
    with engine_client(conn, timeout=30) as client:
        # lab edges run with --bridge=none: published ports need a user-defined network
        net = client.networks.create(f"t-{value}", driver="bridge", labels=labels)
        ok = client.containers.run(
            f"{lab.registry}/edgefleet/hello:1.1.0", detach=True, labels=labels,
            network=net.name, ports={"8080/tcp": ("127.0.0.1", None)}, name=f"hello-{value}",
        )
        sick = client.containers.run(
            f"{lab.registry}/edgefleet/hello:1.0.0", detach=True, labels=labels,
            network=net.name, environment={"HELLO_UNHEALTHY": "1"},
        )
        crash = client.containers.run(
            f"{lab.registry}/edgefleet/hello:2.0.0", detach=True, labels=labels,
            environment={"HELLO_CRASH": "1"},
        )
        assert crash.wait(timeout=15)["StatusCode"] == 1
        ok.reload()
        port = ok.attrs["NetworkSettings"]["Ports"]["8080/tcp"][0]["HostPort"]
        page = _wait(lambda: _get(f"http://127.0.0.1:{port}/"), 15, "the hello page")
        assert "hello from edgefleet/hello 1.1.0" in page
        _wait(lambda: _health(ok) == "healthy", 20, "hello to be healthy")
        _wait(lambda: _health(sick) == "unhealthy", 30, "HELLO_UNHEALTHY to be unhealthy")
        sick.reload()
        assert sick.status == "running"  # still serving, only the healthcheck fails
        started = time.monotonic()
        ok.stop(timeout=10)
        assert time.monotonic() - started < 5  # the entrypoint handles SIGTERM


def _get(url: str) -> str | None:
    try:
        resp = httpx.get(url, timeout=3, trust_env=False)
    except httpx.HTTPError:
        return None
    return resp.text if resp.status_code == 200 else None


@pytest.mark.lab
def test_ticker_prints_a_numbered_line_per_second(
    lab: LabStatus, labelled: tuple[EngineConnection, str]
) -> None:
    conn, value = labelled
    with engine_client(conn, timeout=30) as client:
        ticker = client.containers.run(
            f"{lab.registry}/edgefleet/ticker:1.0.0", detach=True, labels={TEST_LABEL: value}
        )
        logs = _wait(lambda: "tick 3" in ticker.logs().decode() and ticker.logs().decode(), 10,
                     "three ticks")
    assert logs.splitlines()[:3] == ["tick 1", "tick 2", "tick 3"]


def _lab_processes(marker: str) -> list[int]:
    return [
        pid for pid in daemons.processes_with(marker)
        if any(name in daemons.cmdline(pid) for name in ("dockerd", "docker-registry",
                                                          "containerd"))
    ]


@pytest.mark.lab
def test_down_leaves_no_process_of_the_lab(
    lab: LabStatus, tmp_path: Path, switch_home: Callable[[Path], AbstractContextManager[Path]]
) -> None:
    """A separate 2-edge lab in its own home (own ports), so the session lab stays up.

    lab-1 goes down the normal way; lab-2's dockerd is killed first (SIGKILL) with a
    container running, so ``down`` must also stop its containerd, shim and container.
    """
    with switch_home(tmp_path / "home"):
        small = lab_up(edges=2)
        assert small.registry != lab.registry
        assert not {e.docker_host for e in small.edges} & {e.docker_host for e in lab.edges}
        state = load_state(Path(small.lab_dir))
        assert state is not None and state.registry is not None
        pids = [state.registry.pid] + [e.pid for e in state.edges]
        for edge in small.edges:
            with engine_client(edge.connection, timeout=30) as client:
                ticker = client.containers.run(f"{small.registry}/edgefleet/ticker:1.0.0",
                                               detach=True, labels={TEST_LABEL: "down"})
                ticker.reload()
                pids.append(ticker.attrs["State"]["Pid"])  # the container's own process
        assert _lab_processes(small.lab_dir) and _lab_processes(state.run_dir)
        killed = small.edges[1].pid
        assert killed
        os.kill(killed, signal.SIGKILL)
        _wait(lambda: not daemons.pid_running(killed, small.lab_dir), 10, "dockerd to die")
        lab_down()
        for pid in pids:
            assert pid and not daemons.pid_running(pid, ""), pid
        assert _lab_processes(small.lab_dir) == []
        assert _lab_processes(state.run_dir) == []  # containerd and its shims too
        assert not Path(small.lab_dir).exists() and not Path(state.run_dir).exists()
        assert [e.name for e in list_edges()] == []
        assert lab_status().edges == []
    # the session lab is untouched
    assert lab_status().edges[0].answering
    assert os.environ["EDGEFLEET_HOME"] != str(tmp_path / "home")
