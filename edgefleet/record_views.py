"""What the API and the CLI show of a record: edges and deployments as JSON-ready data.

Pure mappings from anything that carries the records' fields (the ORM's rows, or the plain
rows of ``edgefleet.record_reads``, which list without building the ORM), so both ways of
reading give the same answer by construction.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import semver

from edgefleet import bundled_files, url_templates
from edgefleet import parameters as P
from edgefleet.metrics import edge_availability
from edgefleet.models.connections import agent_command_line, connection_of
from edgefleet.models.policies import UpdatePolicy


def json_ready(fields: Mapping[str, Any]) -> dict[str, Any]:
    """``fields`` with each datetime as ISO text."""
    return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in fields.items()}


def edge_status(edge: Any, now: datetime | None = None) -> str:
    """ONLINE or OFFLINE by the heartbeat rule now (so a stale record never says ONLINE)."""
    return edge_availability(edge, now or datetime.now(UTC)).value


def edge_view(fields: Mapping[str, Any], now: datetime | None = None) -> dict[str, Any]:
    """An edge's columns, its status now, and for a pull edge the command of its agent."""
    edge = SimpleNamespace(**fields)
    data = json_ready(fields)
    data["status"] = edge_status(edge, now)
    if edge.mode == "pull":
        data["agent_command"] = agent_command_line(edge.name, edge.docker_host, None)
    return data


def named_urls(version: Any, edge: Any, containers: Iterable[Any]) -> dict[str, str]:
    """The version's URL templates with the edge's address and the host ports its
    containers publish now (read at once: a version that changed only URLs shows them)."""
    if not version.urls:
        return {}
    address = edge.address or connection_of(edge).host
    return url_templates.render(
        version.urls, address=address,
        published=url_templates.published_now((c.service, c.ports) for c in containers))


def deployment_view(dep: Any, *, application: Any, version: Any, edge: Any,
                    containers: list[Any], applied: Any | None) -> dict[str, Any]:
    """A deployment with the names of its application, version and edge, its containers
    (by service), its URLs and the spec the records say its edge runs."""
    return {
        "id": dep.id,
        "state": dep.state,
        "application": application.name,
        "version": version.version,
        "kind": version.kind,
        "edge": edge.name,
        "env": P.masked(dep.env),
        "last_error": dep.last_error,
        "degraded": dep.degraded,
        "update_available": dep.update_available,
        "policy": UpdatePolicy.model_validate(dep.policy).model_dump(mode="json"),
        "flow_run_id": dep.flow_run_id,
        "applied_spec": None if applied is None else {
            "id": applied.id, "version": applied.version, "digests": applied.digests,
            "previous_id": applied.previous_id, "created_at": applied.created_at.isoformat()},
        "created_at": dep.created_at.isoformat(),
        "updated_at": dep.updated_at.isoformat(),
        "containers": [
            {"service": c.service, "container_id": c.container_id, "image": c.image,
             "digest": c.digest, "state": c.state, "health": c.health,
             "restart_count": c.restart_count, "ports": c.ports, "urls": c.urls,
             "updated_at": c.updated_at.isoformat()}
            for c in containers
        ],
        "urls": [u for c in containers for u in c.urls],
        "named_urls": named_urls(version, edge, containers),
    }



def version_view(fields: Mapping[str, Any]) -> dict[str, Any]:
    """A version's columns, its parameters as a form shows them, its bundled files' names
    and digests (their content stays in the records)."""
    data = json_ready(fields)
    data["parameters"] = [p.public() for p in P.of_version(
        fields["parameters"], kind=fields["kind"], text=fields["compose"])]
    data["files"] = bundled_files.summary(fields["files"] or {})
    return data


def application_view(fields: Mapping[str, Any], versions: Iterable[Mapping[str, Any]]
                     ) -> dict[str, Any]:
    """An application with its versions, oldest first by semantic version, and the newest
    published one."""
    ordered = sorted(versions, key=lambda v: semver.Version.parse(v["version"]))
    published = [v["version"] for v in ordered if v["published"]]
    data = json_ready(fields)
    data["latest_published"] = published[-1] if published else None
    data["versions"] = [version_view(v) for v in ordered]
    return data
