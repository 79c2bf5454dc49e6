"""Data the flows pass between tasks: what to deploy (a plan) and what was observed.

Plain pydantic models, so task inputs are serialisable and visible in the Prefect UI.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, Field

from edgefleet.models.connections import EngineConnection
from edgefleet.models.inputs import AppKind


class RenderedSpec(BaseModel):
    """What one apply gives an edge, as the records keep it (table ``applied_spec``).

    ``text`` is the compose model (JSON), the stack file (YAML) or the container (JSON),
    images pinned by digest; ``env`` is what the CLI interpolates with. Any machine writes
    the file again from it: the record is the truth, a file on disk only a throw-away.
    """

    id: int | None = None  # the applied_spec row, once recorded
    version: str
    kind: AppKind
    text: str
    env: dict[str, str] = Field(default_factory=dict)
    digests: dict[str, str | None] = Field(default_factory=dict)
    source_key: str | None = None  # compose/swarm: hash of the source it was rendered from

    def container(self) -> dict[str, Any]:
        """An image-kind spec as keyword arguments: name, image, env, ports, labels."""
        data: dict[str, Any] = json.loads(self.text)
        return data


class DeployPlan(BaseModel):
    """Everything a deploy needs, resolved from the records once at the start of a run."""

    deployment_id: str
    application: str
    version: str
    kind: AppKind
    edge: EngineConnection
    project: str
    image: str | None = None
    ports: list[str] = Field(default_factory=list)
    compose: str | None = None
    env: dict[str, str] = Field(default_factory=dict)
    files: dict[str, str] = Field(default_factory=dict)  # bundled with the version
    registry_secret: str | None = None
    allow_privileged: bool = False  # the version was created with --allow-privileged
    privileges: list[str] = Field(default_factory=list)  # what its file asks for
    # The spec the edge runs per the records when the plan was loaded: an update's rollback
    # target, and the file stop and logs need.
    applied: RenderedSpec | None = None

    def image_spec(self) -> dict[str, object]:
        """The desired spec of an image-kind deployment's one service (hashed for labels)."""
        return {"image": self.image, "env": self.env, "ports": self.ports}

    @property
    def container_name(self) -> str:
        """Name of an image-kind deployment's container."""
        return f"{self.project}-{self.application}"


class ObservedContainer(BaseModel):
    """One container of a deployment as the engine reports it."""

    service: str
    container_id: str
    name: str
    image: str
    digest: str | None = None
    state: str
    health: str | None = None
    restart_count: int = 0
    exit_code: int | None = None
    ports: list[str] = Field(default_factory=list)
    urls: list[str] = Field(default_factory=list)
    labels: dict[str, str] = Field(default_factory=dict)
    started_at: str | None = None

    @property
    def ready(self) -> bool:
        """Running, and healthy where a healthcheck exists."""
        return self.state == "running" and self.health in (None, "healthy")
