"""Readings of pull edges: sent by each edge's agent as Prefect events, read by the sweep.

A pull edge cannot be contacted, so its agent samples its own engine every few seconds
(``ReadingSender``, in the agent's process: no flow run, no new Python process per sample)
and sends each reading as an ``edgefleet.edge.reading`` event to the Prefect API. A sweep
(``read_pull_edges``) takes, per pull edge, its newest reading that is newer than the
edge's last recorded sample; the edge's heartbeat is its agent's Prefect worker heartbeat,
judged by the same offline rule as a push edge's last answer.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from pydantic import ValidationError

from edgefleet import events, metrics
from edgefleet.edge_calls import agent_heartbeats, silence
from edgefleet.edge_readings import DISK_KEYS, read_edge
from edgefleet.models.connections import EngineConnection
from edgefleet.models.readings import EdgeReading, EdgeTarget, Work
from edgefleet.models.records import utcnow

READING_EVENT = "edgefleet.edge.reading"
# a reading's containers sent at most (an event is one API message: Prefect refuses big ones)
MAX_CONTAINERS = 400
# how far the agent's clock may be off the control plane's and its readings still count
CLOCK_SLACK = timedelta(days=1)


def resource_id(edge: str) -> str:
    return f"edgefleet.edge.{edge}"


class ReadingSender:
    """The agent's sampler: what a sweep would read, kept between samples (CPU counters for
    CPU %, disk figures between `system df` reads) in this process instead of the records."""

    def __init__(self, conn: EngineConnection, timeout: float, disk_seconds: float) -> None:
        self.conn = conn
        self.timeout = timeout
        self.disk_seconds = disk_seconds
        self.previous: EdgeReading | None = None
        self.disk_at: datetime | None = None

    def target(self, now: datetime) -> EdgeTarget:
        """This sample's target, from the previous reading (edge_id 0: the agent has no
        records; the sweep sets the edge's own)."""
        prev = self.previous
        disk = {k: v for k in DISK_KEYS if prev and (v := getattr(prev, k)) is not None}
        return EdgeTarget(
            edge_id=0, conn=self.conn, work=Work.SAMPLE,
            previous_cpu={c.id: (c.cpu_total, c.cpu_system) for c in (prev.containers if prev
                                                                       else [])
                          if c.cpu_total is not None and c.cpu_system is not None},
            previous_containers=[c.id for c in prev.containers] if prev else [],
            read_disk=not disk or metrics.is_due(self.disk_at, self.disk_seconds, now),
            previous_disk=disk)

    def sample(self) -> EdgeReading:
        reading = asyncio.run(read_edge(self.target(utcnow()), self.timeout))
        if reading.reachable and reading.error is None:
            self.previous = reading
            if reading.disk_read:
                self.disk_at = reading.started
        return reading

    def send(self, api_url: str) -> bool:
        """Sample and send one reading; False (said on stderr) when it could not be sent.
        Never raises: the agent's steps go on whatever happens to its telemetry."""
        try:
            reading = self.sample()
            return events.emit_at(api_url, READING_EVENT, resource_id(self.conn.name),
                                  reading_payload(reading))
        except Exception as exc:
            print(f"edgefleet agent: reading of {self.conn.name} not sent: {exc}",
                  file=sys.stderr, flush=True)
            return False


def reading_payload(reading: EdgeReading) -> dict[str, object]:
    """The event payload of a reading (its containers capped, the cap said in its error)."""
    if len(reading.containers) > MAX_CONTAINERS:
        kept = reading.containers[:MAX_CONTAINERS]
        note = f"{len(reading.containers) - MAX_CONTAINERS} containers not reported"
        reading = reading.model_copy(update={
            "containers": kept, "error": "; ".join(filter(None, [reading.error, note]))})
    return {"reading": reading.model_dump(mode="json")}


def latest_reading(edge: str, newer_than: datetime | None, now: datetime
                   ) -> EdgeReading | str | None:
    """The newest reading ``edge``'s agent sent after ``newer_than`` (the agent's own clock,
    as the previous sample's time was): None when there is none, a text when the newest is
    not a reading."""
    from prefect.client.orchestration import get_client
    from prefect.events.filters import (
        EventFilter,
        EventNameFilter,
        EventOccurredFilter,
        EventResourceFilter,
    )

    if newer_than is not None and newer_than.tzinfo is None:
        newer_than = newer_than.replace(tzinfo=UTC)  # the records keep UTC without a zone
    window = EventOccurredFilter(since=(newer_than or now) - CLOCK_SLACK, until=now + CLOCK_SLACK)
    query = EventFilter(occurred=window, event=EventNameFilter(name=[READING_EVENT]),
                        resource=EventResourceFilter(id=[resource_id(edge)]))
    with get_client(sync_client=True) as client:
        page = client.read_events(filter=query, limit=1)  # newest first
    if not page.events:
        return None
    try:
        reading = EdgeReading.model_validate(page.events[0].payload.get("reading"))
    except ValidationError as exc:
        return f"edge {edge}: its agent sent an unreadable reading ({exc.error_count()} errors)"
    if newer_than is not None and reading.started <= newer_than:
        return None
    return reading


def read_pull_edges(targets: Sequence[EdgeTarget]) -> list[EdgeReading]:
    """A reading per pull target: reachable as of its agent's last heartbeat while that is
    recent (three beats), with the agent's newest reading when a sample is due and one came
    since the last; else the last contact stays that beat and the offline rule judges it."""
    if not targets:
        return []
    beats = agent_heartbeats([t.conn.name for t in targets])
    readings = []
    for target in targets:
        started = utcnow()
        beat = beats.get(target.conn.name)
        silent = silence(target.conn.name, beat, started)
        if silent or beat is None:
            readings.append(_reading(target, started, started, reachable=False, error=silent))
        elif target.work is Work.SAMPLE:
            readings.append(_sampled(target, started, beat))
        else:
            readings.append(_reading(target, started, beat, reachable=True))
    return readings


def _sampled(target: EdgeTarget, started: datetime, beat: datetime) -> EdgeReading:
    """The agent's newest reading as this edge's sample, or (none new yet) a heartbeat: the
    sample stays due, and the next sweep takes the reading."""
    try:
        found = latest_reading(target.conn.name, target.previous_sample_time,
                               datetime.now(UTC))
    except Exception as exc:  # the agent beats: the control plane could not read, not the edge
        found = f"edge {target.conn.name}: its readings could not be read: {exc}"
    if isinstance(found, EdgeReading):
        # heard at its beat (which may be newer than the reading): the contact time
        return found.model_copy(update={"edge_id": target.edge_id, "name": target.conn.name,
                                        "work": Work.SAMPLE,
                                        "finished": max(found.finished, beat)})
    return _reading(target, started, beat, reachable=True, work=Work.HEARTBEAT, error=found)


def _reading(target: EdgeTarget, started: datetime, finished: datetime, **fields: object
             ) -> EdgeReading:
    fields.setdefault("work", target.work)
    return EdgeReading(edge_id=target.edge_id, name=target.conn.name,  # type: ignore[arg-type]
                       started=started, finished=finished, **fields)
