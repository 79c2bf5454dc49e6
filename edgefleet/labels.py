"""Labels are the record of what we deployed: observed state is rebuilt from them.

Every container (and swarm service) edgefleet creates carries these namespaced labels.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

PREFIX = "io.edgefleet"
DEPLOYMENT = f"{PREFIX}.deployment"
APPLICATION = f"{PREFIX}.application"
VERSION = f"{PREFIX}.version"
SERVICE = f"{PREFIX}.service"
CONFIG_HASH = f"{PREFIX}.config-hash"
IMAGE_DIGEST = f"{PREFIX}.image-digest"
IMAGE = f"{PREFIX}.image"
MANAGED = f"{PREFIX}.managed"


def config_hash(spec: Any) -> str:
    """A stable hash of a service's desired spec (canonical JSON), to see what changed."""
    text = json.dumps(spec, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def hashed_spec(model: dict[str, Any], service: str) -> Any:
    """What a service's config hash covers: its resolved config and the content of the
    ``content:`` configs it uses (compose's own hash names a config, not its content; a
    bundled file travels as one)."""
    spec = model["services"][service]
    configs = model.get("configs") or {}
    used = {}
    for entry in spec.get("configs") or []:
        source = entry.get("source") if isinstance(entry, dict) else entry
        found = configs.get(source) if isinstance(source, str) else None
        if isinstance(found, dict) and "content" in found:
            used[source] = found["content"]
    return {**spec, "x-edgefleet-config-contents": used} if used else spec


def service_labels(
    *,
    deployment_id: str,
    application: str,
    version: str,
    service: str,
    spec: Any,
    digest: str | None,
    image: str | None = None,
) -> dict[str, str]:
    labels = {
        MANAGED: "true",
        DEPLOYMENT: deployment_id,
        APPLICATION: application,
        VERSION: version,
        SERVICE: service,
        CONFIG_HASH: config_hash(spec),
    }
    if image:
        labels[IMAGE] = image
    if digest:
        labels[IMAGE_DIGEST] = digest
    return labels


def pinned(image: str, digest: str | None) -> str:
    """``repo:tag@sha256:...``: a tag can move, a digest cannot (exact rollback)."""
    return f"{image}@{digest}" if digest and "@" not in image else image


def deployment_filter(deployment_id: str) -> dict[str, list[str]]:
    """A Docker API filter selecting everything of one deployment."""
    return {"label": [f"{DEPLOYMENT}={deployment_id}"]}


def project_name(deployment_id: str) -> str:
    """Compose project / stack / network name derived from the deployment id."""
    return f"ef-{deployment_id[:12]}"
