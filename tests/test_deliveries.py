"""Which automation events are failed channel deliveries (events built as the server does)."""

from __future__ import annotations

from typing import Any

from prefect.events import Event

from edgefleet.deliveries import _failed, failure_of

AUTOMATION = "7d1c5a0e-0000-4000-8000-000000000001"
NOTICE = "0b4f6c2a-0000-4000-8000-000000000002"


def action(event: str, name: str = "edgefleet-notify-ops", **payload: Any) -> Event:
    return Event(event=event,
                 resource={"prefect.resource.id": f"prefect.automation.{AUTOMATION}",
                           "prefect.resource.name": name},
                 related=[{"prefect.resource.id": f"prefect.event.{NOTICE}",
                           "prefect.resource.role": "triggering-event"}],
                 payload={"action_index": 0, "action_type": "call-webhook",
                          "invocation": "inv-1", **payload})


def test_a_refusing_receiver_and_a_failed_action_are_failed_deliveries() -> None:
    refused = _failed(action("prefect.automation.action.executed", status_code=503))
    assert refused is not None
    assert (refused.channel, refused.automation_id, refused.event_id, refused.invocation) == (
        "ops", AUTOMATION, NOTICE, "inv-1")
    assert refused.reason == "the receiver answered HTTP 503"
    unreachable = _failed(action("prefect.automation.action.failed",
                                 reason="Webhook call failed: ConnectError()"))
    assert unreachable is not None and unreachable.reason.startswith("Webhook call failed")


def test_a_delivery_and_other_automations_are_not() -> None:
    assert failure_of(action("prefect.automation.action.executed", status_code=204)) is None
    assert _failed(action("prefect.automation.action.executed", status_code=204)) is None
    assert _failed(action("prefect.automation.action.failed", name="someone-elses")) is None
