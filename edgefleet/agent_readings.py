"""What a telemetry sweep learns of pull edges, which it cannot contact.

A heartbeat is the edge agent's own: the last heartbeat its Prefect worker sent (one API
call for the whole batch); it counts as the edge's last contact, and the same offline rule
as for push edges judges it. A sample is a step on the agent (``edgefleet.edge_calls``),
asked only while the agent is heard from: it reads the local engine as a push sample would.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import datetime

from edgefleet.edge_calls import agent_heartbeats, on_edge, silence
from edgefleet.edge_readings import read_edge
from edgefleet.models.connections import EngineConnection
from edgefleet.models.readings import EdgeReading, EdgeTarget, Work
from edgefleet.models.records import utcnow


@on_edge
def sample_here(conn: EngineConnection, target: EdgeTarget, timeout: float) -> EdgeReading:
    """One sample of the local engine (run by the edge's agent)."""
    return asyncio.run(read_edge(target.model_copy(update={"conn": conn}), timeout))


def read_pull_edges(targets: Sequence[EdgeTarget], timeout: float) -> list[EdgeReading]:
    """A reading per pull target: reachable, as of its agent's last heartbeat, while that is
    recent (three beats); then its last contact stays that beat, and the offline rule
    judges it as it judges a push edge's last answer."""
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
            readings.append(_sample(target, timeout, started, beat))
        else:
            readings.append(_reading(target, started, beat, reachable=True))
    return readings


def _sample(target: EdgeTarget, timeout: float, started: datetime, beat: datetime
            ) -> EdgeReading:
    try:
        reading = sample_here(target.conn, target, timeout)
    except Exception as exc:  # the agent is alive (it beats): the sample failed, not the edge
        return _reading(target, started, beat, reachable=True,
                        error=f"edge {target.conn.name}: sample on its agent failed: {exc}")
    return reading.model_copy(update={"edge_id": target.edge_id, "work": target.work})


def _reading(target: EdgeTarget, started: datetime, finished: datetime, **fields: object
             ) -> EdgeReading:
    return EdgeReading(edge_id=target.edge_id, name=target.conn.name, work=target.work,
                       started=started, finished=finished, **fields)  # type: ignore[arg-type]
