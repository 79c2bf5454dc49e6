"""Helpers shared by the lab tests: unique names, HTTP checks, cleanup by label, pages of
the Prefect UI rendered by headless chromium."""

from __future__ import annotations

import contextlib
import html
import os
import re
import shutil
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx

from edgefleet import labels as L
from edgefleet.engine import engine_client
from edgefleet.models.connections import EngineConnection

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"  # kept after the run


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def wait_for(predicate: Callable[[], Any], timeout: float, what: str, every: float = 0.5
             ) -> Any:
    """``predicate()``'s first true value, asked every ``every`` s; fails after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def settled_pulls(flow_run_id: str, api_url: str, timeout: float = 30) -> list[Any]:
    """The ``pull ...`` task runs of a flow run once each has reached a final state.

    Prefect records task run states from events, after the flow has returned: read at once,
    the last retry may still show as AwaitingRetry with one run less.
    """
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter
    from prefect.settings import PREFECT_API_URL, temporary_settings

    def final() -> list[Any]:
        with temporary_settings({PREFECT_API_URL: api_url}), \
                get_client(sync_client=True) as client:
            pulls = [t for t in client.read_task_runs(
                flow_run_filter=FlowRunFilter(id={"any_": [flow_run_id]}))  # type: ignore[arg-type]
                if t.name.startswith("pull ")]
        done = pulls and all(t.state is not None and t.state.is_final() for t in pulls)
        return pulls if done else []

    return list(wait_for(final, timeout, f"the pull task runs of flow run {flow_run_id}"))


def get_page(url: str, timeout: float = 20) -> str:
    """The body at ``url``, retried briefly (a userland proxy may need a moment)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            resp = httpx.get(url, timeout=3, trust_env=False)
            resp.raise_for_status()
            return resp.text
        except httpx.HTTPError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def containers_of(conn: EngineConnection, deployment_id: str) -> list[Any]:
    with engine_client(conn) as client:
        return list(client.containers.list(all=True, filters=L.deployment_filter(deployment_id)))


def networks_of(conn: EngineConnection, deployment_id: str) -> list[Any]:
    with engine_client(conn) as client:
        return list(client.networks.list(filters=L.deployment_filter(deployment_id)))


def remove_managed(conn: EngineConnection) -> None:
    """Remove every container, network and stack edgefleet created on an edge."""
    with engine_client(conn) as client:
        if client.info().get("Swarm", {}).get("LocalNodeState") == "active":
            for service in client.services.list(filters={"label": f"{L.MANAGED}=true"}):
                service.remove()
        for container in client.containers.list(all=True, filters={"label": f"{L.MANAGED}=true"}):
            container.remove(force=True, v=True)
        for network in client.networks.list(filters={"label": f"{L.DEPLOYMENT}"}):
            network.remove()


def retag(conn: EngineConnection, registry: str, repo: str, source: str, target: str) -> str:
    """Push ``repo:source`` again as ``repo:target`` (a tag moving in the registry)."""
    name = f"{registry}/{repo}"
    with engine_client(conn) as client:
        image = client.images.pull(name, tag=source)
        image.tag(name, tag=target)
        for chunk in client.api.push(name, tag=target, stream=True, decode=True):
            if "error" in chunk:
                raise RuntimeError(chunk["error"])
        return str(client.images.get_registry_data(f"{name}:{target}").id)


class TcpRelay:
    """A TCP relay on 127.0.0.1 to ``target`` (host, port) that a test can cut and restore:
    an edge reached through it goes silent on `cut()` as a dead link would, while the
    engine behind it keeps running for the other tests."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = 0
        self._listener: socket.socket | None = None
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        self.restore()

    @property
    def address(self) -> str:
        return f"tcp://127.0.0.1:{self.port}"

    def restore(self) -> None:
        """Listen again (on the same port after a cut)."""
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(16)
        self.port = listener.getsockname()[1]
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def cut(self) -> None:
        """Stop listening and drop every open connection."""
        with self._lock:
            listener, self._listener = self._listener, None
            sockets, self._open = self._open, set()
        for sock in [s for s in (listener,) if s] + list(sockets):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            with self._lock:
                if self._listener is not listener:
                    client.close()
                    upstream.close()
                    return
                self._open.update((client, upstream))
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(src, dst), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                dst.shutdown(socket.SHUT_WR)


def wait_online(names: list[str], timeout: float = 60) -> None:
    """The edges are ONLINE by the heartbeat rule (what a group's plan goes by): contacted
    here each second until they are, as the served sweep would on an idle machine."""
    import pytest

    import edgefleet
    from edgefleet.record_views import edge_status

    deadline = time.monotonic() + timeout
    status: dict[str, str] = {}
    while time.monotonic() < deadline:
        status = {e.name: edge_status(e) for e in edgefleet.list_edges()}
        if all(status.get(n) == "ONLINE" for n in names):
            return
        edgefleet.collect_telemetry(names)
        time.sleep(1)
    pytest.fail(f"edges not ONLINE: {status}")


def run_process_group(api_url: str, flow_run_id: str, timeout: float = 60) -> int:
    """The process group of a flow run's process (its worker's: killing it kills the worker,
    its fork server and its runs)."""
    from uuid import UUID

    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    deadline = time.monotonic() + timeout
    with temporary_settings({PREFECT_API_URL: api_url}), get_client(sync_client=True) as client:
        while not (pid := client.read_flow_run(UUID(flow_run_id)).infrastructure_pid):
            assert time.monotonic() < deadline, f"flow run {flow_run_id} has no process"
            time.sleep(0.5)
    return os.getpgid(int(str(pid).rsplit(":", 1)[-1]))


HELLO_COMPOSE = """
services:
  web:
    image: {registry}/edgefleet/hello:{tag}
    ports: ["8080"]
{extra}"""
CRASH = '    environment: {HELLO_CRASH: "1"}\n'


def define_hello_versions(app: str, kind: str, registry: str) -> None:
    """Application ``app`` of the lab's hello image, ``compose`` or ``image`` kind, published
    at 1.0.0, 1.1.0 and 2.0.0 (which exits at once: its update is rolled back)."""
    import edgefleet

    image = f"{registry}/edgefleet/hello"
    if kind == "compose":
        for version, tag, extra in (("1.0.0", "1.0.0", ""), ("1.1.0", "1.1.0", ""),
                                    ("2.0.0", "2.0.0", CRASH)):
            compose = HELLO_COMPOSE.format(registry=registry, tag=tag, extra=extra)
            if version == "1.0.0":
                edgefleet.create_application(app, version, compose=compose)
            else:
                edgefleet.add_version(app, version, compose=compose)
    else:
        edgefleet.create_application(app, "1.0.0", image=f"{image}:1.0.0", ports=["8080"])
        edgefleet.add_version(app, "1.1.0", image=f"{image}:1.1.0", ports=["8080"])
        edgefleet.add_version(app, "2.0.0", image=f"{image}:2.0.0", ports=["8080"],
                              env=["HELLO_CRASH=1"])
    for version in ("1.0.0", "1.1.0", "2.0.0"):
        edgefleet.publish_version(app, version)


def render_dom(url: str, name: str, height: int = 1000) -> str:
    """The page's DOM once its scripts ran; its screenshot kept as
    ``test-artifacts/prefect-ui-<name>.png`` for a person to look at."""
    binary = shutil.which("chromium")
    assert binary
    flags = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--virtual-time-budget=15000", f"--window-size=1400,{height}")
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / f"prefect-ui-{name}.png"
    shot.unlink(missing_ok=True)
    subprocess.run([binary, *flags, f"--screenshot={shot}", url], capture_output=True,
                   timeout=120, check=True)
    assert shot.stat().st_size > 10_000, f"empty screenshot of {url}"
    return subprocess.run([binary, *flags, "--dump-dom", url], capture_output=True, text=True,
                          timeout=120, check=True).stdout


def page_text(dom: str) -> str:
    """What a person reads on the page: no scripts, styles or tags."""
    text = re.sub(r"<script.*?</script>|<style.*?</style>", " ", dom, flags=re.S)
    return html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", text)))


def assert_no_secret_stored(secrets: Mapping[str, str], *, home: Path, api_url: str,
                            flow_runs: Sequence[str] = (), flows: Sequence[str] = ()) -> None:
    """None of ``secrets`` (what → value) is in our records, rendered files or Prefect's
    database (``home``; the lab's own key files excepted), nor in the logs of the given flow
    runs (ids) and of the newest finished runs of ``flows`` (names), nor in any flow run's
    parameters, artifact or the newest events. Run it again after each new path a secret
    takes.

    Files are scanned by another process: opening and closing a SQLite file here would drop
    this process's POSIX locks on it.
    """
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowFilter,
        FlowFilterName,
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
        LogFilter,
        LogFilterFlowRunId,
    )
    from prefect.client.schemas.objects import TERMINAL_STATES
    from prefect.client.schemas.sorting import FlowRunSort, LogSort
    from prefect.logging.handlers import APILogWorker
    from prefect.settings import PREFECT_API_URL, temporary_settings

    for what, secret in secrets.items():
        scan = subprocess.run(["grep", "-r", "-l", "-a", "-F", "--exclude-dir=lab", secret,
                               str(home)], capture_output=True, text=True, timeout=120)
        assert scan.returncode == 1, f"{what} found in: {scan.stdout}{scan.stderr}"
    APILogWorker.drain_all(timeout=10)  # this process's run logs reach the API first
    with temporary_settings({PREFECT_API_URL: api_url}), get_client(sync_client=True) as client:
        run_ids = list(flow_runs)
        if flows:  # their newest finished runs (a served flow has many scheduled ahead)
            run_ids += [str(run.id) for run in client.read_flow_runs(
                flow_filter=FlowFilter(name=FlowFilterName(any_=list(flows))),
                flow_run_filter=FlowRunFilter(state=FlowRunFilterState(
                    type=FlowRunFilterStateType(any_=list(TERMINAL_STATES)))),
                sort=FlowRunSort.END_TIME_DESC, limit=20)]
        logs = [log.message for log in client.read_logs(log_filter=LogFilter(
            flow_run_id=LogFilterFlowRunId(any_=run_ids)), sort=LogSort.TIMESTAMP_DESC,
        )] if run_ids else []  # the newest: a page holds at most 200
        assert logs or not run_ids, f"no logs of the flow runs {run_ids} to scan"
        texts = logs + [str(run.parameters) for run in client.read_flow_runs(limit=200)]
        texts += [f"{a.data} {a.description}" for a in client.read_artifacts(limit=200)]
        page = client.read_events(limit=50)  # the newest; the database scan covers the rest
        texts += [event.model_dump_json() for event in page.events]
    for what, secret in secrets.items():
        assert not [t for t in texts if secret in t], f"{what} in Prefect's logs/runs/events"
