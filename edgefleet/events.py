"""Prefect events emitted by edgefleet (so automations and deployment triggers can act).

Every event goes through Prefect's own ``emit_event`` (as the telemetry sweep's
``edgefleet.edge.offline`` / ``.online`` do): its events worker sends in the background and
drains at interpreter exit, so a short-lived CLI process loses nothing it emitted. Event
delivery is best effort; every consumer is paired with a periodic reconcile.
"""

from __future__ import annotations

from typing import Any

from prefect.events import Event

from edgefleet import server
from edgefleet.notice_events import Notice, event_of

APPLICATION_PUBLISHED = "edgefleet.application.published"
EDGE_ONLINE = "edgefleet.edge.online"  # emitted by the telemetry sweep (tasks/telemetry.py)
ID_CHUNK = 50  # event ids per query (the most events the server returns at once)


def emit(name: str, resource_id: str, payload: dict[str, Any],
         related: list[dict[str, str]] | None = None) -> bool:
    """Emit one event to the server `edgefleet up` runs; False unless it serves the flows.

    A server that a command started alone serves no flows: no trigger would act on the
    event there, so the caller does the work itself.
    """
    return _post(Event(event=name,
                       resource={"prefect.resource.id": resource_id,
                                 "prefect.resource.name": resource_id.rsplit(".", 1)[-1]},
                       related=related or [], payload=payload), server.served_api_url())


def emit_notice(notice: Notice) -> bool:
    """Announce a notice that was just recorded to any running server: its automations (the
    notify channels) deliver it, whether or not it serves the flows."""
    return _post(Event(**event_of(notice)), server.running_api_url())


def emit_fields(fields: dict[str, Any]) -> bool:
    """Announce an event built by ``notice_events`` (e.g. ``group_event_of``) to any running
    server, as ``emit_notice`` does."""
    return _post(Event(**fields), server.running_api_url())


def _post(event: Event, api_url: str | None) -> bool:
    if api_url is None:
        return False
    from prefect.events import emit_event
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: api_url}):
        sent = emit_event(event=event.event, resource=dict(event.resource.root),
                          related=[dict(r.root) for r in event.related],
                          payload=event.payload, occurred=event.occurred, id=event.id)
    return sent is not None


def missing_on_server(event_ids: list[str]) -> list[str]:
    """Of these event ids, the ones the running server never received ([] without one).

    A notice's event has a fixed id, so sending a missing one again is safe: the server
    keeps one event per id and its triggers act on an id once."""
    api_url = server.running_api_url()
    if not event_ids or api_url is None:
        return []
    from uuid import UUID

    from prefect.client.orchestration import get_client
    from prefect.events.filters import EventFilter, EventIDFilter
    from prefect.settings import PREFECT_API_URL, temporary_settings

    found: set[str] = set()
    with temporary_settings({PREFECT_API_URL: api_url}), get_client(sync_client=True) as client:
        for start in range(0, len(event_ids), ID_CHUNK):
            chunk = event_ids[start:start + ID_CHUNK]
            page = client.read_events(filter=EventFilter(id=EventIDFilter(
                id=[UUID(i) for i in chunk])), limit=len(chunk))
            found.update(str(event.id) for event in page.events)
    return [i for i in event_ids if i not in found]
