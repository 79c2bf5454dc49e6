"""Telemetry: the latest figures and a small trend per edge, and a sweep on demand.

Samples are written by flow `collect-telemetry` (served every few seconds by `edgefleet
up`; each edge is sampled on its own interval). ``collect`` runs one sweep in this process.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import case
from sqlmodel import Session, col, func, select

from edgefleet import metrics
from edgefleet.crud import get_edge
from edgefleet.db import session_scope
from edgefleet.models.records import Edge
from edgefleet.models.telemetry import EdgeAvailability, EdgeSample, EdgeSampleHourly
from edgefleet.telemetry_views import parse_since, telemetry_view


def edge_telemetry(edge: str | None = None, *, since: str | timedelta = "1h",
                   now: datetime | None = None) -> list[dict[str, Any]]:
    """Per edge: status, last contact, the newest sample, samples in the window, a trend."""
    window = parse_since(since)
    moment = now or datetime.now(UTC)
    start = moment - window
    with session_scope() as session:
        edges = ([get_edge(session, name=edge)] if edge else
                 list(session.exec(select(Edge).order_by(col(Edge.name))).all()))
        return [_edge_view(session, e, start, moment) for e in edges]


def _edge_view(session: Session, edge: Edge, start: datetime, now: datetime) -> dict[str, Any]:
    latest = session.exec(select(EdgeSample).where(
        col(EdgeSample.edge_id) == edge.id, col(EdgeSample.reachable).is_(True))
        .order_by(col(EdgeSample.time).desc()).limit(1)).first()
    count, failed = session.exec(select(
        func.count(), func.sum(case((col(EdgeSample.reachable).is_(False), 1), else_=0)))
        .where(col(EdgeSample.edge_id) == edge.id, col(EdgeSample.time) >= start)).one()
    points = list(session.exec(
        select(EdgeSample.time, EdgeSample.cpu_percent, EdgeSample.memory_used,
               EdgeSample.containers_running)
        .where(col(EdgeSample.edge_id) == edge.id, col(EdgeSample.time) >= start,
               col(EdgeSample.reachable).is_(True))).all())
    oldest_raw = min((p[0] for p in points), default=now)
    hourly = session.exec(select(EdgeSampleHourly).where(
        col(EdgeSampleHourly.edge_id) == edge.id, col(EdgeSampleHourly.hour) >= start,
        col(EdgeSampleHourly.hour) < metrics.hour_floor(oldest_raw))).all()
    history = session.exec(select(EdgeAvailability).where(
        col(EdgeAvailability.edge_id) == edge.id, col(EdgeAvailability.time) >= start)
        .order_by(col(EdgeAvailability.time))).all()
    return telemetry_view(edge, latest=latest, samples=int(count or 0),
                          unreachable=int(failed or 0),
                          points=[(t, cpu, mem, running) for t, cpu, mem, running in points] + [
                              (h.hour, h.cpu_percent, h.memory_used, h.containers_running)
                              for h in hourly],
                          history=history, start=start, now=now)


def collect(edges: list[str] | None = None, *, force: bool = True) -> dict[str, Any]:
    """Run one sweep now, in this process (reported to `edgefleet up`'s server if it runs).

    ``force`` samples the edges even if their interval has not passed.
    """
    from edgefleet import jobs  # imports Prefect: only when a sweep is asked for

    result: dict[str, Any] = jobs.run_here("collect-telemetry", {"edges": edges, "force": force})
    return result
