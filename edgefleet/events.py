"""Prefect events emitted by edgefleet (so automations and deployment triggers can act).

Posted to the running server's ``/events`` endpoint: synchronous and short-lived-process
safe. Event delivery is best effort; every consumer is paired with a periodic reconcile.
"""

from __future__ import annotations

from typing import Any

import httpx
from prefect.events import Event

from edgefleet import server

APPLICATION_PUBLISHED = "edgefleet.application.published"


def emit(name: str, resource_id: str, payload: dict[str, Any]) -> bool:
    """Emit one event to the server `edgefleet up` runs; False unless it serves the flows.

    A server that a command started alone serves no flows: no trigger would act on the
    event there, so the caller does the work itself.
    """
    api_url = server.served_api_url()
    if api_url is None:
        return False
    event = Event(event=name, resource={"prefect.resource.id": resource_id,
                                        "prefect.resource.name": resource_id.rsplit(".", 1)[-1]},
                  payload=payload)
    try:
        resp = httpx.post(f"{api_url}/events", json=[event.model_dump(mode="json")], timeout=10,
                          trust_env=False)
        resp.raise_for_status()
    except httpx.HTTPError:
        return False
    return True
