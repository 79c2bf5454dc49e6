"""Helpers shared by the lab tests: unique names, HTTP checks, cleanup by label."""

from __future__ import annotations

import time
import uuid
from typing import Any

import httpx

from edgefleet import labels as L
from edgefleet.engine import engine_client
from edgefleet.models.connections import EngineConnection


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


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
