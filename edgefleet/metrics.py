"""The pure rules of telemetry: who is due, online or offline, CPU %, rollups, trends.

No engine, no database and no hidden clock: every function takes ``now`` (or the times it
compares), so the rules are tested with a clock the test controls.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, TypeVar

import humanize

from edgefleet.models.states import Availability, Work

T = TypeVar("T")

OFFLINE_GRACE = timedelta(seconds=10)
# How late the control plane may be before a silent edge is OFFLINE without a failed try.
CONTROL_PLANE_SLACK = timedelta(seconds=60)
# A sweep started a little early must not skip an edge for a whole interval.
DUE_TOLERANCE = timedelta(seconds=1)
# The figures an hourly rollup averages (columns of EdgeSample and EdgeSampleHourly).
ROLLUP_FIELDS = ("cpus", "memory_total", "containers_running", "containers_stopped",
                 "disk_images", "disk_containers", "disk_volumes", "cpu_percent", "memory_used")


def human_size(value: float | None, missing: str = "n/a") -> str:
    """Bytes in binary units (``2.4 MiB``), ``missing`` when there is no figure."""
    return missing if value is None else humanize.naturalsize(value, binary=True)


def offline_after(last_contact: datetime, heartbeat_interval: float) -> datetime:
    """The moment an edge silent since ``last_contact`` becomes OFFLINE (2 heartbeats + 10 s)."""
    return last_contact + 2 * timedelta(seconds=heartbeat_interval) + OFFLINE_GRACE


def availability(last_contact: datetime | None, heartbeat_interval: float, now: datetime,
                 last_attempt: datetime | None = None) -> Availability:
    """OFFLINE once now > last contact + 2 × heartbeat + 10 s; never contacted is OFFLINE.

    Silence counts against the edge only when a contact tried since its last answer failed
    (``last_attempt`` after ``last_contact``). When the control plane itself is late (a busy
    machine, a sweep that overran) the edge keeps its status for up to a minute more: our
    own delay never costs an answering edge its status, and a stale record still ends OFFLINE.
    """
    if last_contact is None:
        return Availability.OFFLINE
    deadline = offline_after(last_contact, heartbeat_interval)
    if now <= deadline:
        return Availability.ONLINE
    if (last_attempt is not None and last_attempt <= last_contact
            and now <= deadline + CONTROL_PLANE_SLACK):
        return Availability.ONLINE
    return Availability.OFFLINE


def edge_availability(edge: Any, now: datetime) -> Availability:
    """``availability`` of an edge record (anything with its fields): its last contact, its
    heartbeat interval and its last attempt."""
    return availability(edge.last_contact, edge.heartbeat_interval, now, edge.last_heartbeat_at)


def seconds_until_due(edges: Iterable[tuple[datetime | None, float, datetime | None, float]],
                      now: datetime) -> float | None:
    """Seconds until the first edge is due again (0 when one is due now), or None for no
    edges; each edge as (last sample, telemetry interval, last heartbeat, heartbeat interval)."""
    waits = []
    for last_sample, telemetry_interval, last_heartbeat, heartbeat_interval in edges:
        if last_sample is None or last_heartbeat is None:
            return 0.0
        due = min(last_sample + timedelta(seconds=telemetry_interval),
                  last_heartbeat + timedelta(seconds=heartbeat_interval)) - DUE_TOLERANCE
        waits.append(max(0.0, (due - now).total_seconds()))
    return min(waits) if waits else None


def is_due(last: datetime | None, interval: float, now: datetime) -> bool:
    return last is None or now >= last + timedelta(seconds=interval) - DUE_TOLERANCE


def disk_reads(sampled: Sequence[tuple[int, datetime | None, float]], disk_interval: float,
               now: datetime) -> set[int]:
    """Which of a sweep's sampled edges (id, last disk read, telemetry interval) read their
    disk use now: spread over the sweeps, so that no sweep reads every edge's.

    Edges added together come due together, and a sweep that reads ``system df`` on every
    edge costs half as much again as one that does not. So a sweep reads the disk use of
    the edges never read, and of the due ones at most twice its share (an edge sampled every
    60 s with disk use every 600 s is a tenth of an edge), the longest waiting first: a
    burst of due edges is spread over a few sweeps, and stays spread. A disk read waits at
    most a few sweeps past its cadence.
    """
    if disk_interval <= 0:
        return {edge for edge, _, _ in sampled}
    never = {edge for edge, last, _ in sampled if last is None}
    waiting = sorted((last, edge) for edge, last, _ in sampled
                     if last is not None and is_due(last, disk_interval, now))
    share = sum(min(1.0, interval / disk_interval) for _, _, interval in sampled)
    return never | {edge for _, edge in waiting[:max(1, math.ceil(2 * share))]}


def work_for(*, last_sample_at: datetime | None, telemetry_interval: float,
             last_heartbeat_at: datetime | None, heartbeat_interval: float, now: datetime,
             force: bool = False) -> Work:
    """A full sample when telemetry is due (it is a contact too), else a ping when the
    heartbeat is due, else nothing."""
    if force or is_due(last_sample_at, telemetry_interval, now):
        return Work.SAMPLE
    if is_due(last_heartbeat_at, heartbeat_interval, now):
        return Work.HEARTBEAT
    return Work.NONE


def batches(items: Sequence[T], batch_size: int, max_batches: int) -> list[list[T]]:
    """Split into batches of ``batch_size``; past ``max_batches`` the batches grow instead,
    so the task runs per sweep stay bounded whatever the fleet size."""
    if not items:
        return []
    count = min(max_batches, math.ceil(len(items) / batch_size))
    size = math.ceil(len(items) / count)
    return [list(items[i:i + size]) for i in range(0, len(items), size)]


def cpu_percent(previous: tuple[int, int] | None, total: int | None, system: int | None,
                online_cpus: int | None) -> float | None:
    """CPU % between two one-shot readings (docker stats' formula: 100 = one core).

    ``previous`` is (container total, system total) from the sample stored last time; None
    when there is none, or when a counter went back (the container or the host restarted).
    """
    if previous is None or total is None or system is None or not online_cpus:
        return None
    d_total, d_system = total - previous[0], system - previous[1]
    if d_total < 0 or d_system <= 0:
        return None
    return round(d_total / d_system * online_cpus * 100.0, 2)


def memory_usage(stats: dict[str, Any]) -> int | None:
    """Memory used as `docker stats` shows it: usage minus the inactive page cache."""
    mem = stats.get("memory_stats") or {}
    usage = mem.get("usage")
    if usage is None:
        return None
    detail = mem.get("stats") or {}
    cache = detail.get("total_inactive_file", detail.get("inactive_file", 0)) or 0
    return int(usage - cache) if cache < usage else int(usage)


def network_bytes(stats: dict[str, Any]) -> tuple[int | None, int | None]:
    nets = stats.get("networks")
    if not nets:
        return None, None
    return (sum(int(n.get("rx_bytes", 0)) for n in nets.values()),
            sum(int(n.get("tx_bytes", 0)) for n in nets.values()))


def block_bytes(stats: dict[str, Any]) -> tuple[int | None, int | None]:
    """Bytes read and written (cgroup v1 says Read/Write, v2 read/write)."""
    entries = (stats.get("blkio_stats") or {}).get("io_service_bytes_recursive")
    if entries is None:
        return None, None
    read = sum(int(e.get("value", 0)) for e in entries if str(e.get("op", "")).lower() == "read")
    write = sum(int(e.get("value", 0)) for e in entries
                if str(e.get("op", "")).lower() == "write")
    return read, write


# ---------------------------------------------------------------- deployment health


@dataclass(frozen=True)
class SeenContainer:
    """What the health rule needs of one observed container."""

    container_id: str
    service: str
    state: str
    health: str | None
    restart_count: int
    exit_code: int | None
    created: str = ""


def pick_containers(seen: Iterable[SeenContainer]) -> dict[str, list[SeenContainer]]:
    """Per service: its running containers, else only its newest one (swarm keeps the
    exited tasks it replaced; they are history, not the current state)."""
    by_service: dict[str, list[SeenContainer]] = {}
    for item in seen:
        by_service.setdefault(item.service, []).append(item)
    picked = {}
    for service, items in by_service.items():
        running = [c for c in items if c.state == "running"]
        picked[service] = running or [max(items, key=lambda c: c.created)]
    return picked


def degraded_reason(expected: Iterable[str], seen: Iterable[SeenContainer]) -> str | None:
    """Why a STARTED deployment is not healthy now, or None when every service is fine."""
    picked = pick_containers(seen)
    reasons = []
    for service in sorted(set(expected) | set(picked)):
        items = picked.get(service)
        if not items:
            reasons.append(f"service {service}: container missing")
            continue
        for c in items:
            if c.state == "running" and c.health == "unhealthy":
                reasons.append(f"service {service}: unhealthy")
            elif c.state == "restarting":
                reasons.append(f"service {service}: restarting ({c.restart_count} restarts)")
            elif c.state != "running":
                code = f", exit code {c.exit_code}" if c.exit_code is not None else ""
                reasons.append(f"service {service}: {c.state}{code}")
    return "; ".join(reasons) or None


# ---------------------------------------------------------------- rollups and trends


def hour_floor(moment: datetime) -> datetime:
    return moment.replace(minute=0, second=0, microsecond=0)


@dataclass
class HourlyAggregate:
    """Running sums for one edge and hour; ``means`` gives the averages to store."""

    edge_id: int
    hour: datetime
    samples: int = 0
    unreachable: int = 0
    sums: dict[str, float] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)

    def add(self, sample: dict[str, Any]) -> None:
        if not sample.get("reachable"):
            self.unreachable += 1
            return
        self.samples += 1
        for name in ROLLUP_FIELDS:
            value = sample.get(name)
            if value is not None:
                self.sums[name] = self.sums.get(name, 0.0) + float(value)
                self.counts[name] = self.counts.get(name, 0) + 1

    def means(self) -> dict[str, float | None]:
        return {name: (self.sums[name] / self.counts[name] if self.counts.get(name) else None)
                for name in ROLLUP_FIELDS}


def rollup(samples: Iterable[dict[str, Any]]) -> list[HourlyAggregate]:
    """Hourly averages per edge of raw samples (dicts with edge_id, time, reachable, ...)."""
    buckets: dict[tuple[int, datetime], HourlyAggregate] = {}
    for sample in samples:
        key = (int(sample["edge_id"]), hour_floor(sample["time"]))
        if key not in buckets:
            buckets[key] = HourlyAggregate(edge_id=key[0], hour=key[1])
        buckets[key].add(sample)
    return sorted(buckets.values(), key=lambda a: (a.edge_id, a.hour))


def merge_means(old: dict[str, float | None], old_samples: int, new: dict[str, float | None],
                new_samples: int) -> dict[str, float | None]:
    """Combine two hourly averages weighted by their sample counts (an hour rolled twice)."""
    merged: dict[str, float | None] = {}
    for name in ROLLUP_FIELDS:
        a, b = old.get(name), new.get(name)
        if a is None or old_samples == 0:
            merged[name] = b
        elif b is None or new_samples == 0:
            merged[name] = a
        else:
            merged[name] = (a * old_samples + b * new_samples) / (old_samples + new_samples)
    return merged


def trend(points: Sequence[tuple[datetime, float | None]], start: datetime, end: datetime,
          buckets: int = 12) -> list[float | None]:
    """Average of the points in each of ``buckets`` equal slices of [start, end]."""
    span = (end - start).total_seconds()
    if span <= 0 or buckets <= 0:
        return []
    sums = [0.0] * buckets
    counts = [0] * buckets
    for moment, value in points:
        if value is None or moment < start or moment > end:
            continue
        index = min(buckets - 1, int((moment - start).total_seconds() / span * buckets))
        sums[index] += value
        counts[index] += 1
    return [round(s / c, 2) if c else None for s, c in zip(sums, counts, strict=True)]


BARS = "▁▂▃▄▅▆▇█"


def sparkline(values: Sequence[float | None]) -> str:
    """A one-line chart; gaps (no sample) are spaces."""
    known = [v for v in values if v is not None]
    if not known:
        return ""
    low, high = min(known), max(known)
    spread = high - low
    return "".join(
        " " if v is None else BARS[0 if spread == 0 else
                                   min(len(BARS) - 1, int((v - low) / spread * len(BARS)))]
        for v in values
    )
