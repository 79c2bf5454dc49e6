"""How to reach an edge's Docker engine: plain settings copied from its record.

Safe to pass to tasks and to show in the Prefect UI (no live client, no secret: the TLS
fields are paths). The client built from it is made in ``edgefleet.engine``.
"""

from __future__ import annotations

import os
from typing import Any, Literal
from urllib.parse import urlparse

from pydantic import BaseModel

# Set in a pull edge's agent (and so in each step it runs): the edge it serves.
AGENT_EDGE_ENV = "EDGEFLEET_AGENT_EDGE"
# The engine a pull edge's agent talks to unless its record names another socket.
DEFAULT_LOCAL_ENGINE = "unix:///var/run/docker.sock"


def agent_edge() -> str | None:
    """The edge this process is the agent of (None on the control plane)."""
    return os.environ.get(AGENT_EDGE_ENV) or None


def agent_command_line(edge: str, docker_host: str | None, api_url: str | None) -> str:
    """What ``edge add --pull`` prints: the command to run on the edge."""
    api = f"PREFECT_API_URL={api_url} " if api_url else ""
    host = f" --docker-host {docker_host}" if docker_host and \
        docker_host != DEFAULT_LOCAL_ENGINE else ""
    return f"{api}edgefleet agent --edge {edge}{host}"


class EngineConnection(BaseModel):
    """How to reach one edge's engine (copied from the Edge record, safe to pass to tasks)."""

    name: str
    docker_host: str
    # push: we connect to docker_host; pull: the edge's agent runs each step (edge_calls)
    mode: Literal["push", "pull"] = "push"
    address: str | None = None
    tls_ca: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None

    @property
    def host(self) -> str:
        """The host name URLs of published ports use (``http://<host>:<port>``): the edge's
        address where it has one, else the host of its docker host."""
        if self.address:
            return f"[{self.address}]" if ":" in self.address else self.address
        parsed = urlparse(self.docker_host)
        if parsed.scheme == "tcp" and parsed.hostname:
            return parsed.hostname
        return "127.0.0.1"

    @property
    def reached_here(self) -> bool:
        """Whether this process may talk to the engine: a push edge's from anywhere, a pull
        edge's only on its agent (elsewhere its socket path would be another engine)."""
        return self.mode == "push" or agent_edge() == self.name

    @property
    def uses_tls(self) -> bool:
        return bool(self.tls_ca and self.tls_cert and self.tls_key)


def connection_of(edge: Any) -> EngineConnection:
    """The connection settings of an edge record (anything with the Edge fields)."""
    return EngineConnection(
        name=edge.name,
        docker_host=edge.docker_host,
        mode=getattr(edge, "mode", None) or "push",
        address=getattr(edge, "address", None),
        tls_ca=edge.tls_ca,
        tls_cert=edge.tls_cert,
        tls_key=edge.tls_key,
    )
