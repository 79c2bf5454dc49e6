"""Telemetry: the latest figures and a small trend per edge, and a sweep on demand.

Samples are written by flow `collect-telemetry` (served every few seconds by `edgefleet
up`; each edge is sampled on its own interval). ``collect`` runs one sweep in this process.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import case
from sqlmodel import Session, col, func, select

from edgefleet import metrics
from edgefleet.crud import get_edge
from edgefleet.db import session_scope
from edgefleet.errors import InvalidInput
from edgefleet.models.records import Edge
from edgefleet.models.telemetry import EdgeAvailability, EdgeSample, EdgeSampleHourly

SINCE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*\Z")
UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
TREND_POINTS = 12
CONTAINER_KEYS = ("name", "id", "deployment_id", "service", "image", "state", "health",
                  "restart_count", "cpu_percent", "memory_usage", "memory_limit", "net_rx",
                  "net_tx", "block_read", "block_write")
SAMPLE_KEYS = ("engine_version", "cpus", "memory_total", "containers_running",
               "containers_stopped", "disk_images", "disk_containers", "disk_volumes",
               "cpu_percent", "memory_used")


def parse_since(text: str | timedelta) -> timedelta:
    """``30s``, ``15m``, ``1h``, ``7d``, ``2w`` (or a timedelta) as a timedelta."""
    if isinstance(text, timedelta):
        return text
    match = SINCE_RE.match(text)
    if not match or float(match.group(1)) <= 0:
        raise InvalidInput(f"--since {text!r}: expected a positive number and a unit s, m, h, "
                           "d or w (e.g. 30m, 1h, 7d)")
    return timedelta(seconds=float(match.group(1)) * UNITS[match.group(2)])


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
    points: list[tuple[datetime, float | None, float | None, float | None]] = [
        (t, cpu, mem, running) for t, cpu, mem, running in session.exec(
        select(EdgeSample.time, EdgeSample.cpu_percent, EdgeSample.memory_used,
               EdgeSample.containers_running)
        .where(col(EdgeSample.edge_id) == edge.id, col(EdgeSample.time) >= start,
               col(EdgeSample.reachable).is_(True))).all()]
    oldest_raw = min((p[0] for p in points), default=now)
    points += [(h.hour, h.cpu_percent, h.memory_used, h.containers_running)
               for h in session.exec(select(EdgeSampleHourly).where(
                   col(EdgeSampleHourly.edge_id) == edge.id, col(EdgeSampleHourly.hour) >= start,
                   col(EdgeSampleHourly.hour) < metrics.hour_floor(oldest_raw))).all()]
    history = session.exec(select(EdgeAvailability).where(
        col(EdgeAvailability.edge_id) == edge.id, col(EdgeAvailability.time) >= start)
        .order_by(col(EdgeAvailability.time))).all()
    return {
        "edge": edge.name,
        "status": metrics.availability(edge.last_contact, edge.heartbeat_interval, now,
                                       edge.last_heartbeat_at).value,
        "last_contact": edge.last_contact.isoformat() if edge.last_contact else None,
        "last_error": edge.last_error,
        "telemetry_interval": edge.telemetry_interval,
        "heartbeat_interval": edge.heartbeat_interval,
        "latest": _sample_view(latest) if latest else None,
        "samples": int(count or 0),
        "unreachable_samples": int(failed or 0),
        "since": start.isoformat(),
        "trend": {
            "cpu_percent": metrics.trend([(p[0], p[1]) for p in points], start, now,
                                         TREND_POINTS),
            "memory_used": metrics.trend([(p[0], p[2]) for p in points], start, now,
                                         TREND_POINTS),
            "containers_running": metrics.trend([(p[0], p[3]) for p in points], start, now,
                                                TREND_POINTS),
        },
        "availability": [{"time": h.time.isoformat(), "status": h.status, "reason": h.reason}
                         for h in history],
    }


def _sample_view(sample: EdgeSample) -> dict[str, Any]:
    view: dict[str, Any] = {"time": sample.time.isoformat()}
    view.update({key: getattr(sample, key) for key in SAMPLE_KEYS})
    view["containers"] = [{key: c.get(key) for key in CONTAINER_KEYS}
                          for c in sample.containers]
    return view


def collect(edges: list[str] | None = None, *, force: bool = True) -> dict[str, Any]:
    """Run one sweep now, in this process (reported to `edgefleet up`'s server if it runs).

    ``force`` samples the edges even if their interval has not passed.
    """
    from edgefleet import jobs  # imports Prefect: only when a sweep is asked for

    result: dict[str, Any] = jobs.run_here("collect-telemetry", {"edges": edges, "force": force})
    return result
