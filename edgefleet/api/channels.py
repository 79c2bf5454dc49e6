"""Notify channels: Prefect notification blocks fed by Prefect automations (no sender of ours).

A channel is an automation named ``edgefleet-notify-<name>`` whose trigger expects the
edgefleet events of the chosen kinds (filtered by application and edge through the events'
related resources). For ``--webhook URL`` its action calls a Webhook block edgefleet makes
(a JSON message); for ``--block TYPE/NAME`` it sends a notification with any block the user
made (Slack, Teams, email, PagerDuty, ...). Its deliveries, failed ones included, are the
automation's own events (``prefect.automation.action.executed`` / ``.failed``).
"""

from __future__ import annotations

import contextlib
import json
import re
from datetime import timedelta
from typing import Any
from uuid import UUID

from edgefleet import server
from edgefleet.crud import redeliveries, sent_again
from edgefleet.db import session_scope
from edgefleet.deliveries import (
    ACTION_EVENTS,
    PREFIX,
    delivered,
    failure_of,
    read_all,
    send,
)
from edgefleet.deliveries import prefect_client as _client
from edgefleet.errors import EdgefleetError, InvalidInput, NotFound
from edgefleet.models.inputs import check_block_name
from edgefleet.models.records import Application, Edge
from edgefleet.notice_events import KINDS, channel_filters, parse_kinds

SUBJECT = "edgefleet {{ event.payload.kind }}: {{ event.payload.message }}"
BODY = "{{ event.payload.text }}"
# what a webhook receives (JSON; the channel name is a checked name, safe to embed)
PAYLOAD = ('{"subject": {{ ("edgefleet " ~ event.payload.kind ~ ": " ~ event.payload.message)'
           ' | tojson }}, "text": {{ event.payload.text | tojson }}, "kind": '
           '{{ event.payload.kind | tojson }}, "channel": "%s"}')
URL_RE = re.compile(r"^https?://[^\s/]+(/\S*)?$")
BLOCK_RE = re.compile(r"^[a-z0-9-]+/[a-z0-9-]+$")
CHUNK = 50  # notice event ids per query


def _check(name: str, on: str | list[str], webhook: str | None, block: str | None,
           application: str | None, edge: str | None) -> list[str]:
    try:
        check_block_name(name, "channel")
        kinds = parse_kinds(on)
    except ValueError as exc:
        raise InvalidInput(str(exc)) from exc
    if (webhook is None) == (block is None):
        raise InvalidInput("give exactly one of --webhook URL or --block TYPE/NAME")
    if webhook is not None and not URL_RE.match(webhook):
        raise InvalidInput(f"webhook {webhook!r} is not an http(s) URL")
    if block is not None and not BLOCK_RE.match(block):
        raise InvalidInput(f"block {block!r} is not TYPE/NAME (e.g. slack-webhook/ops; see "
                           "`prefect block ls`)")
    with session_scope() as session:
        if application and not session.exec(_named(Application, application)).first():
            raise NotFound(f"no application named {application!r} (see `edgefleet app list`)")
        if edge and not session.exec(_named(Edge, edge)).first():
            raise NotFound(f"no edge named {edge!r} (see `edgefleet edge list`)")
    return kinds


def _named(model: Any, name: str) -> Any:
    from sqlmodel import select

    return select(model).where(model.name == name)


def add_channel(name: str, *, on: str | list[str], webhook: str | None = None,
                block: str | None = None, application: str | None = None,
                edge: str | None = None) -> dict[str, Any]:
    """Create the channel's automation (and, for a webhook, its block); nothing is left
    half-made: a failure removes what this call created."""
    from prefect.automations import Automation
    from prefect.blocks.webhook import Webhook
    from prefect.events.actions import CallWebhook, SendNotification
    from prefect.events.schemas.automations import EventTrigger, Posture

    kinds = _check(name, on, webhook, block, application, edge)
    config = {"name": name, "on": kinds, "webhook": webhook, "block": block,
              "application": application, "edge": edge}
    with _client() as client:
        if client.read_automations_by_name(PREFIX + name):
            raise InvalidInput(f"channel {name!r} exists: `edgefleet notify remove {name}` "
                               "first")
        made_block = webhook is not None
        action: Any
        if webhook is not None:
            block_id = Webhook(method="POST", url=webhook,
                               headers={"Content-Type": "application/json"}).save(
                PREFIX + name, overwrite=True)
            action = CallWebhook(block_document_id=UUID(str(block_id)), payload=PAYLOAD % name)
        else:
            assert block is not None
            block_type, block_name = block.split("/")
            try:
                block_id = client.read_block_document_by_name(
                    name=block_name, block_type_slug=block_type).id
            except Exception as exc:  # ObjectNotFound, or a type Prefect does not know
                raise NotFound(f"no Prefect block {block!r} (see `prefect block ls`)") from exc
            action = SendNotification(block_document_id=UUID(str(block_id)), subject=SUBJECT,
                                      body=BODY)
        try:
            automation: Any = Automation(
                name=PREFIX + name, description=json.dumps(config),
                trigger=EventTrigger(expect={KINDS[k] for k in kinds},
                                     match_related=channel_filters(application, edge) or {},
                                     posture=Posture.Reactive, threshold=1,
                                     within=timedelta(0)),
                actions=[action],
            ).create()
        except BaseException:
            if made_block:
                client.delete_block_document(UUID(str(block_id)))
            raise
    return {**config, "automation_id": str(automation.id), "block_document_id": str(block_id)}


def list_channels() -> list[dict[str, Any]]:
    """Each channel with its kinds, filters and its last deliveries (ok or failed)."""
    with _client() as client:
        found = []
        for automation in client.read_automations():
            if not automation.name.startswith(PREFIX):
                continue
            config = json.loads(automation.description or "{}")
            found.append({**config, "name": automation.name[len(PREFIX):],
                          "automation_id": str(automation.id),
                          "enabled": automation.enabled,
                          "deliveries": _deliveries(client, automation.id,
                                                    automation.name[len(PREFIX):])})
        return sorted(found, key=lambda c: c["name"])


def _deliveries(client: Any, automation_id: Any, name: str) -> dict[str, Any]:
    """Counts of the automation's executed and failed actions (``counted`` of them, all of
    them unless ``complete`` is false: ``deliveries.read_all`` is bounded), the last
    failure, and the failed ones edgefleet sent again (``sent_again`` / ``failed_again``)."""
    from prefect.events.filters import EventFilter, EventNameFilter, EventResourceFilter

    events, complete = read_all(client, EventFilter(
        event=EventNameFilter(name=ACTION_EVENTS),
        resource=EventResourceFilter(id=[f"prefect.automation.{automation_id}"])))
    failures = [f for f in map(failure_of, events) if f is not None]  # newest first
    with session_scope() as session:
        again = [r.outcome for r in redeliveries(session, channel=name)]
    return {"sent": len(events) - len(failures), "failed": len(failures),
            "counted": len(events), "complete": complete,
            "last_failure": failures[0][:300] if failures else None,
            "sent_again": again.count("sent"),
            "failed_again": sum(1 for o in again if o and o.startswith("failed"))}


def delivered_to(event_ids: list[str]) -> dict[str, list[str]] | None:
    """Per notice event id, the channels that delivered it (``deliveries.delivered``); None
    without a running Prefect server: who delivered is unknown, not nobody."""
    if server.running_api_url() is None:
        return None
    if not event_ids:
        return {}
    from prefect.events.filters import (
        EventFilter,
        EventNameFilter,
        EventRelatedFilter,
        EventResourceFilter,
    )

    ids = [f"prefect.event.{i}" for i in event_ids]
    actions: list[Any] = []
    with _client() as client:
        for start in range(0, len(ids), CHUNK):
            actions += read_all(client, EventFilter(
                event=EventNameFilter(name=["prefect.automation.action.executed"]),
                resource=EventResourceFilter(id_prefix=["prefect.automation."]),
                related=EventRelatedFilter(id=ids[start:start + CHUNK])))[0]
    with session_scope() as session:
        again = sent_again(session, event_ids=event_ids)
    return delivered(actions, again, event_ids)


def _find(client: Any, name: str) -> Any:
    found = client.read_automations_by_name(PREFIX + name)
    if not found:
        raise NotFound(f"no notify channel named {name!r} (see `edgefleet notify list`)")
    return found[0]


def test_channel(name: str) -> dict[str, Any]:
    """Send one message through the channel's block now (not through its automation)."""
    from prefect.blocks.core import Block

    with _client() as client:
        automation = _find(client, name)
        block_id = automation.actions[0].block_document_id
        document = client.read_block_document(block_id)
        block: Any = Block._from_block_document(document)
        text = (f"edgefleet test message of channel {name}: if you read this, the channel "
                "works.")
        try:
            send(block, subject=f"edgefleet test of {name}", text=text, kind="test",
                 channel=name)
        except Exception as exc:
            raise EdgefleetError(f"channel {name!r} could not deliver: "
                                 f"{' '.join(str(exc).split())[:300]}") from exc
    return {"name": name, "sent": True}


def remove_channel(name: str) -> None:
    """Delete the channel's automation, and its block when edgefleet made it."""
    with _client() as client:
        automation = _find(client, name)
        config = json.loads(automation.description or "{}")
        client.delete_automation(automation.id)
        if config.get("webhook"):
            block_id = automation.actions[0].block_document_id
            with contextlib.suppress(Exception):  # already gone: nothing to remove
                client.delete_block_document(block_id)
