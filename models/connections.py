"""How to reach an edge's Docker engine: plain settings copied from its record.

Safe to pass to tasks and to show in the Prefect UI (no live client, no secret: the TLS
fields are paths). The client built from it is made in ``edgefleet.engine``.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlparse

from pydantic import BaseModel


class EngineConnection(BaseModel):
    """How to reach one edge's engine (copied from the Edge record, safe to pass to tasks)."""

    name: str
    docker_host: str
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
    def uses_tls(self) -> bool:
        return bool(self.tls_ca and self.tls_cert and self.tls_key)


def connection_of(edge: Any) -> EngineConnection:
    """The connection settings of an edge record (anything with the Edge fields)."""
    return EngineConnection(
        name=edge.name,
        docker_host=edge.docker_host,
        address=getattr(edge, "address", None),
        tls_ca=edge.tls_ca,
        tls_cert=edge.tls_cert,
        tls_key=edge.tls_key,
    )
