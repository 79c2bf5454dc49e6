"""A container as the engine reports it, rebuilt from its inspect data and our labels.

Pure: the engine's JSON in, an :class:`ObservedContainer` out. The deploy and update tasks
(docker SDK) and the telemetry reader (its own Engine API client) share it.
"""

from __future__ import annotations

from typing import Any

from edgefleet import labels as L
from edgefleet.models.plans import ObservedContainer


def to_observed(attrs: dict[str, Any], host: str) -> ObservedContainer:
    state = attrs.get("State", {})
    config = attrs.get("Config", {})
    labels = config.get("Labels") or {}
    ports: list[str] = []
    urls: list[str] = []
    for container_port, bindings in sorted((attrs.get("NetworkSettings", {}).get("Ports")
                                            or {}).items()):
        for host_port in host_ports(bindings or []):
            ports.append(f"{host_port}:{container_port}")
            if container_port.endswith("/tcp"):
                urls.append(f"http://{host}:{host_port}")
    service = (labels.get(L.SERVICE) or labels.get("com.docker.compose.service")
               or labels.get("com.docker.swarm.service.name") or attrs.get("Name", "").lstrip("/"))
    return ObservedContainer(
        service=service,
        container_id=attrs["Id"][:12],
        name=attrs.get("Name", "").lstrip("/"),
        image=labels.get(L.IMAGE) or config.get("Image", ""),
        digest=labels.get(L.IMAGE_DIGEST),
        state=state.get("Status", "unknown"),
        health=(state.get("Health") or {}).get("Status"),
        restart_count=int(attrs.get("RestartCount", 0)),
        exit_code=state.get("ExitCode"),
        ports=ports,
        urls=urls,
        labels=labels,
        started_at=state.get("StartedAt"),
    )


def host_ports(bindings: list[dict[str, str]]) -> list[str]:
    """Host ports reachable over IPv4 (the engine may give the IPv6 binding another port)."""
    ipv4 = [b for b in bindings if b.get("HostPort") and ":" not in b.get("HostIp", "")]
    chosen = ipv4 or [b for b in bindings if b.get("HostPort")]
    return sorted({b["HostPort"] for b in chosen}, key=int)
