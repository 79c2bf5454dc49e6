"""Connections to an edge's Docker engine: the one place a docker SDK client is made.

Tasks take an :class:`EngineConnection` (plain settings, ``edgefleet.models.connections``),
never a live client, and open a client inside ``with engine_client(conn) as client`` so every
call has a timeout and TLS is checked against the edge's own CA (``trust_env`` is off:
``REQUESTS_CA_BUNDLE`` set on many machines would otherwise replace that CA and fail
verification).
"""

from __future__ import annotations

import os
import ssl
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any

import docker
import docker.errors
import requests.adapters
import requests.exceptions

from edgefleet import labels as L
from edgefleet.errors import EdgeUnreachable
from edgefleet.models.connections import EngineConnection
from edgefleet.models.plans import ObservedContainer
from edgefleet.observed import to_observed
from edgefleet.settings import get_settings
from edgefleet.swarm_tasks import SWARM_TASK_LABEL, current_tasks, waiting_reasons

# Debian bookworm's dockerd 20.10 speaks API 1.41; newer engines still accept it.
API_VERSION = "1.41"
# What the docker and compose CLIs keep of the control plane's environment (and LC_*,
# COMPOSE_*): a vendor's compose file is interpolated from it.
CLI_ENV_KEPT = frozenset({
    "PATH", "HOME", "USER", "LOGNAME", "LANG", "TZ", "TMPDIR", "XDG_RUNTIME_DIR",
    "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy",
})


def make_client(conn: EngineConnection, timeout: float | None = None) -> docker.DockerClient:
    check_reachable_here(conn)
    timeout = timeout or get_settings().engine_timeout
    context = ssl_context_of(conn)
    client = docker.DockerClient(
        base_url=conn.docker_host, version=API_VERSION, timeout=int(timeout),
        tls=context is not None,
    )
    if context is not None:
        client.api.mount("https://", _ContextAdapter(context))
    client.api.trust_env = False
    return client


def check_reachable_here(conn: EngineConnection) -> None:
    """A pull edge's engine is reached by its agent only: its docker host names a socket
    on the edge, which here would be another engine (this machine's own)."""
    if not conn.reached_here:
        raise EdgeUnreachable(
            f"edge {conn.name} is a pull edge: only its agent reaches its engine, and this "
            "step does not run on the agent")


def ssl_context_of(conn: EngineConnection) -> ssl.SSLContext | None:
    """The edge's mutual-TLS context (None without TLS files); a missing or unusable file is
    ``EdgeUnreachable`` naming it."""
    if not conn.uses_tls:
        return None
    paths = (str(conn.tls_ca), str(conn.tls_cert), str(conn.tls_key))
    stamps = []
    for path in paths:
        try:
            found = os.stat(path)
        except OSError:
            found = None
        if found is None or not stat.S_ISREG(found.st_mode):
            raise EdgeUnreachable(f"edge {conn.name}: TLS file {path} does not exist")
        stamps.append(found.st_mtime_ns)
    try:
        return tls_context(*paths, tuple(stamps))
    except (OSError, ssl.SSLError) as exc:
        raise EdgeUnreachable(f"edge {conn.name}: TLS files unusable: {exc}") from exc


@lru_cache(maxsize=1024)
def tls_context(ca: str, cert: str, key: str, stamp: tuple[int, ...]) -> ssl.SSLContext:
    """Verified mutual TLS for one edge's files (the edge's CA only, hostname checked).

    Cached by paths and modification times: loading CA, certificate and key costs more CPU
    than the handshake, and requests would otherwise do it for every new connection.
    """
    context = ssl.create_default_context(cafile=ca)
    context.load_cert_chain(cert, key)
    return context


class _ContextAdapter(requests.adapters.HTTPAdapter):
    """HTTPS through one prepared SSL context (requests' own ``verify``/``cert`` unused)."""

    def __init__(self, context: ssl.SSLContext) -> None:
        self._context = context
        super().__init__(pool_connections=25, pool_maxsize=10)

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs["ssl_context"] = self._context
        super().init_poolmanager(*args, **kwargs)

    def cert_verify(self, conn: Any, url: str, verify: Any, cert: Any) -> None:
        # requests would load its CA bundle into the context here: the edge's CA only
        conn.cert_reqs = "CERT_REQUIRED"
        conn.ca_certs = conn.ca_cert_dir = None


@contextmanager
def engine_client(conn: EngineConnection, timeout: float | None = None) -> Iterator[
    docker.DockerClient
]:
    """A client for one edge; connection failures become ``EdgeUnreachable`` naming the edge."""
    client = make_client(conn, timeout)
    try:
        yield client
    except (requests.exceptions.ConnectionError, requests.exceptions.Timeout) as exc:
        raise EdgeUnreachable(
            f"edge {conn.name} ({conn.docker_host}) did not answer: {describe_failure(exc)}"
        ) from exc
    finally:
        client.close()


def ping(conn: EngineConnection, timeout: float = 5.0) -> dict[str, Any]:
    """``docker version`` of the edge, or ``EdgeUnreachable`` with the reason."""
    try:
        with engine_client(conn, timeout) as client:
            return dict(client.version())
    except docker.errors.DockerException as exc:
        raise EdgeUnreachable(
            f"edge {conn.name} ({conn.docker_host}) did not answer: {describe_failure(exc)}"
        ) from exc


def observe(client: Any, conn: EngineConnection, deployment_id: str) -> list[ObservedContainer]:
    """Every container of the deployment (stopped ones too), rebuilt from labels; ``client``
    is one :func:`engine_client` opened.

    Of a swarm stack, only the containers that stand for its services now: the tasks swarm
    shut down on purpose stay in its history as exited containers and are left out.
    """
    found = client.containers.list(all=True, filters=L.deployment_filter(deployment_id))
    observed = [to_observed(c.attrs, conn.host) for c in found]
    if any(SWARM_TASK_LABEL in o.labels for o in observed):
        observed = _current_swarm_containers(client, deployment_id, observed)
    return sorted(observed, key=lambda o: o.name)


def _current_swarm_containers(client: Any, deployment_id: str,
                              observed: list[ObservedContainer]) -> list[ObservedContainer]:
    """Keep each swarm slot's current container, its restarts counted from swarm's tasks."""
    services, tasks = _stack_tasks(client, deployment_id)
    current = {cid[:12]: task for cid, task in
               current_tasks(services, tasks, L.CONFIG_HASH).items()}
    kept = []
    for obs in observed:
        if SWARM_TASK_LABEL not in obs.labels:
            kept.append(obs)
        elif obs.container_id in current:
            kept.append(obs.model_copy(update={
                "restart_count": obs.restart_count + current[obs.container_id].restarts}))
    return kept


def swarm_waiting(client: Any, deployment_id: str) -> list[str]:
    """Swarm's reasons why a service of the deployment has no container yet (nothing on an
    engine that is not a swarm manager)."""
    try:
        services, tasks = _stack_tasks(client, deployment_id)
    except docker.errors.APIError:
        return []
    return waiting_reasons(services, tasks, L.CONFIG_HASH)


def _stack_tasks(client: Any, deployment_id: str) -> tuple[list[Any], list[Any]]:
    """The deployment's swarm services and all their tasks (history included)."""
    services = client.api.services(filters=L.deployment_filter(deployment_id))
    tasks = (client.api.tasks(filters={"service": [s["ID"] for s in services]})
             if services else [])
    return services, tasks


def cli_environment(conn: EngineConnection) -> dict[str, str]:
    """Environment for the docker/compose CLIs: DOCKER_HOST and, with TLS, a cert folder.

    Of this process's own environment only what the CLIs need to run is passed on: compose
    interpolates ``${VAR}`` in a vendor's file from it, and the control plane's database
    URL or API keys must never land in a container on an edge (or in a resolved file).

    The CLIs want ``ca.pem``/``cert.pem``/``key.pem`` in one folder; when the edge's files
    are named otherwise we link them into ``<home>/certs/<edge>/``.
    """
    env = {k: v for k, v in os.environ.items()
           if k in CLI_ENV_KEPT or k.startswith(("LC_", "COMPOSE_"))}
    env["DOCKER_HOST"] = conn.docker_host
    env["DOCKER_API_VERSION"] = API_VERSION
    if conn.uses_tls:
        env["DOCKER_TLS_VERIFY"] = "1"
        env["DOCKER_CERT_PATH"] = str(cert_folder(conn))
    return env


def cert_folder(conn: EngineConnection) -> Path:
    files = {"ca.pem": conn.tls_ca, "cert.pem": conn.tls_cert, "key.pem": conn.tls_key}
    paths = {name: Path(str(p)) for name, p in files.items()}
    folders = {p.parent for p in paths.values()}
    if len(folders) == 1 and all(p.name == name for name, p in paths.items()):
        return folders.pop()
    folder = get_settings().home / "certs" / conn.name
    folder.mkdir(parents=True, exist_ok=True)
    for name, src in paths.items():
        link = folder / name
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(src.resolve())
    return folder


def describe_failure(exc: BaseException) -> str:
    """A connection failure in one short line an operator can act on."""
    text = str(exc)
    if (isinstance(exc, ssl.SSLCertVerificationError) or "CERTIFICATE_VERIFY_FAILED" in text
            or "SSLError" in text):
        return "TLS verification failed (check the edge's CA and client certificate)"
    if isinstance(exc, ssl.SSLError):
        return f"TLS failed: {exc.reason or text}"
    if isinstance(exc, ConnectionRefusedError) or "Connection refused" in text:
        return "connection refused (is dockerd running and listening there?)"
    if isinstance(exc, TimeoutError) or "timed out" in text.lower():
        return "timed out"
    return text.splitlines()[0][:300] if text else type(exc).__name__
