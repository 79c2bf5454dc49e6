"""A notify channel's deliveries as the Prefect server recorded them, and sending a failed one
again through the channel's own block.

Prefect's automations do not retry an action: a webhook that refuses or a Slack that cannot be
reached is recorded (``prefect.automation.action.failed``, or ``.executed`` with an HTTP error
status) and dropped. The notification reconcile finds those records and sends the notice once
more, in a task with Prefect's retries, with the same message the automation would have sent.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from edgefleet import server
from edgefleet.errors import EdgefleetError

PREFIX = "edgefleet-notify-"  # a channel NAME is the automation edgefleet-notify-NAME
ACTION_EVENTS = ["prefect.automation.action.executed", "prefect.automation.action.failed"]
PAGE = 50  # the most events the server returns at once
MAX_PAGES = 20


@dataclass(frozen=True)
class FailedDelivery:
    """One action of a channel's automation that did not deliver its notice."""

    invocation: str  # the action's invocation id: one per delivery attempt of the server
    channel: str
    automation_id: str
    event_id: str  # the notice event the automation acted on
    reason: str


def failure_of(event: Any) -> str | None:
    """Why an action event is a failed delivery, or None when it delivered."""
    status = event.payload.get("status_code")
    if event.event.endswith(".failed"):
        return str(event.payload.get("reason", "failed"))
    if isinstance(status, int) and status >= 400:
        return f"the receiver answered HTTP {status}"
    return None


def _failed(event: Any) -> FailedDelivery | None:
    name = str(event.resource.get("prefect.resource.name", ""))
    reason = failure_of(event)
    invocation = event.payload.get("invocation")
    notice = next((r.id.removeprefix("prefect.event.") for r in event.related
                   if r.role == "triggering-event"), None)
    if not name.startswith(PREFIX) or reason is None or not invocation or not notice:
        return None
    return FailedDelivery(invocation=str(invocation), channel=name[len(PREFIX):],
                          automation_id=event.resource.id.removeprefix("prefect.automation."),
                          event_id=notice, reason=reason)


def delivered(events: Iterable[Any], sent_again: Iterable[tuple[str, str]],
              event_ids: Iterable[str]) -> dict[str, list[str]]:
    """Per notice event id, the channels that delivered it, sorted: the channel automations'
    actions that succeeded (each names the notice as a related ``prefect.event.<id>``) and the
    failed ones edgefleet sent again (``sent_again``: (event id, channel)). Other
    automations, failed actions and other notices are left out."""
    wanted = {f"prefect.event.{i}": i for i in event_ids}
    found: dict[str, set[str]] = {}
    for event in events:
        name = str(event.resource.get("prefect.resource.name", ""))
        if not name.startswith(PREFIX) or failure_of(event) is not None:
            continue
        for resource in event.related:
            if resource.id in wanted:
                found.setdefault(wanted[resource.id], set()).add(name[len(PREFIX):])
    for event_id, channel in sent_again:
        if f"prefect.event.{event_id}" in wanted:
            found.setdefault(event_id, set()).add(channel)
    return {event_id: sorted(channels) for event_id, channels in found.items()}


@contextmanager
def prefect_client() -> Iterator[Any]:
    """A sync Prefect client on the running server (the channels live there)."""
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    api_url = server.running_api_url()
    if api_url is None:
        raise EdgefleetError("notify channels live in the Prefect server: start it with "
                             "`edgefleet up` first")
    with temporary_settings({PREFECT_API_URL: api_url}), get_client(sync_client=True) as client:
        yield client


def read_all(client: Any, event_filter: Any) -> tuple[list[Any], bool]:
    """The events a filter matches, newest first, page after page up to ``MAX_PAGES``; and
    whether that was all of them (a bound: one query never reads the whole history)."""
    page = client.read_events(filter=event_filter, limit=PAGE)
    events = list(page.events)
    for _ in range(MAX_PAGES - 1):
        if not page.next_page:
            return events, True
        page = client.read_events_page(page.next_page)
        events.extend(page.events)
    return events, not page.next_page


def failed_deliveries(since: datetime) -> list[FailedDelivery]:
    """Every channel delivery that failed since ``since`` ([] without a running server)."""
    if server.running_api_url() is None:
        return []
    from prefect.events.filters import (
        EventFilter,
        EventNameFilter,
        EventOccurredFilter,
        EventResourceFilter,
    )

    found: dict[str, FailedDelivery] = {}
    with prefect_client() as client:
        events, _ = read_all(client, EventFilter(
            occurred=EventOccurredFilter(since=since),
            event=EventNameFilter(name=ACTION_EVENTS),
            resource=EventResourceFilter(id_prefix=["prefect.automation."])))
    for event in events:
        failed = _failed(event)
        if failed is not None:
            found.setdefault(failed.invocation, failed)
    return list(found.values())


def send(block: Any, *, subject: str, text: str, kind: str, channel: str) -> None:
    """One message through a channel's block: a notification block's own ``notify``, or the
    JSON a ``--webhook`` channel posts. Raises when it is not delivered: an Apprise block
    (Slack, Teams, email, ...) only logs a failure unless asked to raise, as Prefect's own
    send-notification action does."""
    if hasattr(block, "notify"):
        from prefect.blocks.abstract import NotificationError

        try:
            with block.raise_on_failure():
                block.notify(body=text, subject=subject)
        except NotificationError as exc:  # its message is the block's log, kept as .log
            log = " ".join(str(getattr(exc, "log", "") or exc).split())
            raise EdgefleetError(f"{type(block).__name__} did not deliver: "
                                 f"{log or 'no reason given'}") from exc
        return
    answer = asyncio.run(block.call(payload=json.dumps(
        {"subject": subject, "text": text, "kind": kind, "channel": channel})))
    answer.raise_for_status()


def redeliver(delivery: FailedDelivery) -> bool:
    """Send the notice of a failed delivery again through its channel's block; False when
    the channel or the notice is gone (nothing to send). Raises when sending fails."""
    from prefect.blocks.core import Block
    from prefect.events.filters import EventFilter, EventIDFilter

    with prefect_client() as client:
        try:
            automation = client.read_automation(UUID(delivery.automation_id))
        except Exception:  # removed since: nobody to tell any more
            return False
        page = client.read_events(filter=EventFilter(id=EventIDFilter(
            id=[UUID(delivery.event_id)])), limit=1)
        if automation is None or not page.events:
            return False
        payload = page.events[0].payload
        block = Block._from_block_document(
            client.read_block_document(automation.actions[0].block_document_id))
    kind, message = payload.get("kind", "notice"), payload.get("message", "")
    send(block, subject=f"edgefleet {kind}: {message}", text=str(payload.get("text", "")),
         kind=str(kind), channel=delivery.channel)
    return True
