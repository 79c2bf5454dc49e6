"""What a telemetry sweep learns of pull edges, which it cannot contact.

A heartbeat is the edge agent's own: the last heartbeat its Prefect worker sent (one API
call for the whole batch); it counts as the edge's last contact, and the same offline rule
as for push edges judges it. A sample is a step on the agent (``edgefleet.edge_calls``),
asked only while the agent is heard from: it reads the local engine as a push sample would.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import datetime, timedelta

from edgefleet.edge_calls import AGENT_HEARTBEAT_SECONDS, agent_name, on_edge
from edgefleet.edge_readings import read_edge
from edgefleet.models.connections import EngineConnection
from edgefleet.models.readings import EdgeReading, EdgeTarget, Work
from edgefleet.models.records import utcnow
from edgefleet.workers import PULL_POOL

WORKER_PAGE = 200


@on_edge
def sample_here(conn: EngineConnection, target: EdgeTarget, timeout: float) -> EdgeReading:
    """One sample of the local engine (run by the edge's agent)."""
    return asyncio.run(read_edge(target.model_copy(update={"conn": conn}), timeout))


def agent_heartbeats(edges: Sequence[str]) -> dict[str, datetime]:
    """The last heartbeat of each named edge's agent (absent: never heard from)."""
    from prefect.client.orchestration import get_client

    wanted = {agent_name(edge): edge for edge in edges}
    found: dict[str, datetime] = {}
    with get_client(sync_client=True) as client:
        offset = 0
        while True:  # the API filters workers by heartbeat and status, not by name
            try:
                page = client.read_workers_for_work_pool(PULL_POOL, offset=offset,
                                                         limit=WORKER_PAGE)
            except Exception:  # no pool yet (no agent ever ran): nobody was heard from
                return found
            found.update({wanted[w.name]: w.last_heartbeat_time for w in page
                          if w.name in wanted and w.last_heartbeat_time is not None})
            if len(page) < WORKER_PAGE:
                return found
            offset += WORKER_PAGE


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
        fresh = beat is not None and started - beat <= timedelta(
            seconds=3 * AGENT_HEARTBEAT_SECONDS)
        if beat is None or not fresh:
            heard = f"last heard {beat:%Y-%m-%d %H:%M:%S} UTC" if beat else "never heard from"
            readings.append(_reading(target, started, started, reachable=False,
                                     error=f"edge {target.conn.name}: its agent is {heard} "
                                           f"(is `edgefleet agent --edge {target.conn.name}` "
                                           "running there?)"))
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
