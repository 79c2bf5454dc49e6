"""What the telemetry sweep tasks exchange: edges to contact and what each contact read.

Plain pydantic data, so task inputs stay serialisable and nothing holds a live client.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from edgefleet.models.connections import EngineConnection
from edgefleet.models.plans import ObservedContainer
from edgefleet.models.states import Work

__all__ = ["BatchReadings", "ContainerReading", "EdgeReading", "EdgeTarget", "Work"]


class EdgeTarget(BaseModel):
    """An edge due in this sweep, with what it needs from its previous sample (the counters
    for CPU %, the disk figures when disk use is not due)."""

    edge_id: int
    conn: EngineConnection
    work: Work
    previous_cpu: dict[str, tuple[int, int]] = Field(default_factory=dict)
    read_disk: bool = True  # `system df` is due (else the previous figures carry over...)
    previous_disk: dict[str, int | None] = Field(default_factory=dict)
    previous_containers: list[str] = Field(default_factory=list)  # (...unless these changed)
    # the engine's version, CPUs and memory as the previous sample read them: `/info` is the
    # costliest answer to parse and they change only with the engine, so they are read with
    # disk use (and when containers came or went), else carried over
    previous_engine: dict[str, Any] = Field(default_factory=dict)


class ContainerReading(BaseModel):
    """One container as a sample records it (the JSON in ``EdgeSample.containers``)."""

    id: str
    name: str
    deployment_id: str | None = None
    service: str | None = None
    image: str = ""
    state: str
    health: str | None = None
    restart_count: int = 0
    exit_code: int | None = None
    created: str = ""  # the engine's creation time (tells the newest of a service apart)
    cpu_percent: float | None = None
    memory_usage: int | None = None
    memory_limit: int | None = None
    net_rx: int | None = None
    net_tx: int | None = None
    block_read: int | None = None
    block_write: int | None = None
    cpu_total: int | None = None  # cumulative counters, kept for the next sample's CPU %
    cpu_system: int | None = None


class EdgeReading(BaseModel):
    """What one contact with an edge returned (or why it failed)."""

    edge_id: int
    name: str
    work: Work
    started: datetime
    finished: datetime
    reachable: bool
    error: str | None = None
    engine_version: str | None = None
    cpus: int | None = None
    memory_total: int | None = None
    containers_running: int | None = None
    containers_stopped: int | None = None
    disk_images: int | None = None
    disk_containers: int | None = None
    disk_volumes: int | None = None
    disk_read: bool = False  # the disk figures were read now (not carried over)
    containers: list[ContainerReading] = Field(default_factory=list)
    observed: list[ObservedContainer] = Field(default_factory=list)


class BatchReadings:
    """The readings of one batch of edges, as a ``read-edges`` task returns them.

    One object, not a list: Prefect links every item of a list result to the task run's
    state (for dependency tracking), which cost 4% of a 10,000-edge sweep's CPU; an object
    it does not look into is linked once.
    """

    __slots__ = ("readings",)

    def __init__(self, readings: list[EdgeReading]) -> None:
        self.readings = readings
