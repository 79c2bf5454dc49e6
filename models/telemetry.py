"""Telemetry records: a time series per edge, its hourly rollups and availability history.

``EdgeSample`` is one raw sample per edge and telemetry interval (containers as JSON);
``EdgeSampleHourly`` holds the hourly averages raw samples are rolled up into once they leave
the raw window; ``EdgeAvailability`` records each ONLINE/OFFLINE change.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Column, Index, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from edgefleet.models.records import utcnow


class EdgeSample(SQLModel, table=True):
    """One telemetry sample of an edge; ``reachable`` False records a failed contact."""

    __tablename__ = "edge_sample"
    __table_args__ = (Index("ix_edge_sample_edge_time", "edge_id", "time"),)

    id: int | None = Field(default=None, primary_key=True)
    edge_id: int = Field(foreign_key="edge.id")
    time: datetime = Field(default_factory=utcnow, index=True)
    reachable: bool
    error: str | None = Field(default=None, sa_column=Column(Text))
    engine_version: str | None = None
    cpus: int | None = None
    memory_total: int | None = Field(default=None, sa_column=Column(BigInteger))  # bytes
    containers_running: int | None = None
    containers_stopped: int | None = None
    disk_images: int | None = Field(default=None, sa_column=Column(BigInteger))  # bytes
    disk_containers: int | None = Field(default=None, sa_column=Column(BigInteger))  # bytes
    disk_volumes: int | None = Field(default=None, sa_column=Column(BigInteger))  # bytes
    cpu_percent: float | None = None  # sum over containers; 100 = one core (docker stats)
    memory_used: int | None = Field(default=None, sa_column=Column(BigInteger))  # all containers
    containers: list[dict[str, Any]] = Field(default_factory=list,
                                             sa_column=Column(JSON, nullable=False))


class EdgeSampleHourly(SQLModel, table=True):
    """Hourly averages of an edge's raw samples (kept after the raw ones are deleted)."""

    __tablename__ = "edge_sample_hourly"
    __table_args__ = (UniqueConstraint("edge_id", "hour"),)

    id: int | None = Field(default=None, primary_key=True)
    edge_id: int = Field(foreign_key="edge.id", index=True)
    hour: datetime = Field(index=True)
    samples: int = 0  # reachable samples averaged
    unreachable: int = 0  # failed contacts in the hour
    cpus: float | None = None
    memory_total: float | None = None
    containers_running: float | None = None
    containers_stopped: float | None = None
    disk_images: float | None = None
    disk_containers: float | None = None
    disk_volumes: float | None = None
    cpu_percent: float | None = None
    memory_used: float | None = None


class EdgeAvailability(SQLModel, table=True):
    """An edge went ONLINE or OFFLINE (the history behind `edge list` status)."""

    __tablename__ = "edge_availability"

    id: int | None = Field(default=None, primary_key=True)
    edge_id: int = Field(foreign_key="edge.id", index=True)
    time: datetime = Field(default_factory=utcnow, index=True)
    status: str
    last_contact: datetime | None = None
    reason: str | None = Field(default=None, sa_column=Column(Text))
