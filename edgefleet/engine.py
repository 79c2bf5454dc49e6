"""Connections to an edge's Docker engine: the one place a docker SDK client is made.

Tasks take an :class:`EngineConnection` (plain settings), never a live client, and open a
client inside ``with engine_client(conn) as client`` so every call has a timeout and TLS is
checked against the edge's own CA (``trust_env`` is off: ``REQUESTS_CA_BUNDLE`` set on many
machines would otherwise replace that CA and fail verification).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import docker
import docker.errors
import requests.exceptions
from docker.tls import TLSConfig
from pydantic import BaseModel

from edgefleet.errors import EdgeUnreachable
from edgefleet.settings import get_settings

# Debian bookworm's dockerd 20.10 speaks API 1.41; newer engines still accept it.
API_VERSION = "1.41"


class EngineConnection(BaseModel):
    """How to reach one edge's engine (copied from the Edge record, safe to pass to tasks)."""

    name: str
    docker_host: str
    tls_ca: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None

    @property
    def host(self) -> str:
        """The host name URLs of published ports use (``http://<host>:<port>``)."""
        parsed = urlparse(self.docker_host)
        if parsed.scheme == "tcp" and parsed.hostname:
            return parsed.hostname
        return "127.0.0.1"

    @property
    def uses_tls(self) -> bool:
        return bool(self.tls_ca and self.tls_cert and self.tls_key)


def connection_of(edge: Any) -> EngineConnection:
    return EngineConnection(
        name=edge.name,
        docker_host=edge.docker_host,
        tls_ca=edge.tls_ca,
        tls_cert=edge.tls_cert,
        tls_key=edge.tls_key,
    )


def make_client(conn: EngineConnection, timeout: float | None = None) -> docker.DockerClient:
    timeout = timeout or get_settings().engine_timeout
    tls: TLSConfig | bool = False
    if conn.uses_tls:
        for path in (conn.tls_ca, conn.tls_cert, conn.tls_key):
            if not Path(str(path)).is_file():
                raise EdgeUnreachable(f"edge {conn.name}: TLS file {path} does not exist")
        tls = TLSConfig(
            client_cert=(str(conn.tls_cert), str(conn.tls_key)),
            ca_cert=str(conn.tls_ca),
            verify=True,
        )
    client = docker.DockerClient(
        base_url=conn.docker_host, version=API_VERSION, timeout=int(timeout), tls=tls
    )
    client.api.trust_env = False
    return client


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
            f"edge {conn.name} ({conn.docker_host}) did not answer: {_short(exc)}"
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
            f"edge {conn.name} ({conn.docker_host}) did not answer: {_short(exc)}"
        ) from exc


def cli_environment(conn: EngineConnection) -> dict[str, str]:
    """Environment for the docker/compose CLIs: DOCKER_HOST and, with TLS, a cert folder.

    The CLIs want ``ca.pem``/``cert.pem``/``key.pem`` in one folder; when the edge's files
    are named otherwise we link them into ``<home>/certs/<edge>/``.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
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


def _short(exc: BaseException) -> str:
    text = str(exc)
    if "CERTIFICATE_VERIFY_FAILED" in text or "SSLError" in text:
        return "TLS verification failed (check the edge's CA and client certificate)"
    if "Connection refused" in text:
        return "connection refused (is dockerd running and listening there?)"
    if "timed out" in text.lower():
        return "timed out"
    return text.splitlines()[0][:300] if text else type(exc).__name__
