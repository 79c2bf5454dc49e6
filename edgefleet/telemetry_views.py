"""What `edgefleet telemetry` shows of an edge: status, the newest sample, counts and a
trend over a window.

Pure: the rows come from the API's ORM queries or from ``edgefleet.record_reads`` (plain
rows, no ORM), so both give the same answer by construction.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

from edgefleet import metrics
from edgefleet.errors import InvalidInput

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


def telemetry_view(edge: Any, *, latest: Any | None, samples: int, unreachable: int,
                   points: Sequence[tuple[datetime, float | None, float | None, float | None]],
                   history: Iterable[Any], start: datetime, now: datetime) -> dict[str, Any]:
    """``points``: (time, cpu %, memory used, containers running) of the window, raw samples
    and the hourly averages older than them; ``history``: the availability changes."""
    return {
        "edge": edge.name,
        "status": metrics.edge_availability(edge, now).value,
        "last_contact": edge.last_contact.isoformat() if edge.last_contact else None,
        "last_error": edge.last_error,
        "telemetry_interval": edge.telemetry_interval,
        "heartbeat_interval": edge.heartbeat_interval,
        "latest": _sample_view(latest) if latest else None,
        "samples": samples,
        "unreachable_samples": unreachable,
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


def _sample_view(sample: Any) -> dict[str, Any]:
    view: dict[str, Any] = {"time": sample.time.isoformat()}
    view.update({key: getattr(sample, key) for key in SAMPLE_KEYS})
    view["containers"] = [{key: c.get(key) for key in CONTAINER_KEYS}
                          for c in sample.containers]
    return view
