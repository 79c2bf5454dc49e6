"""Failed channel deliveries sent again, on records alone (SQLite, and PostgreSQL on the lab
tier): each is claimed once, and a successful one counts as a delivery of its notice."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from prefect.events import Event
from sqlalchemy import update

from edgefleet.api.channels import _deliveries
from edgefleet.crud import claim_redelivery, end_redelivery, redeliveries, sent_again
from edgefleet.db import session_scope
from edgefleet.deliveries import MAX_PAGES, PAGE
from edgefleet.models.records import Redelivery, utcnow
from tests.test_channels import EventPages

NOTICE = "0b4f6c2a-0000-4000-8000-000000000002"
OTHER = "0b4f6c2a-0000-4000-8000-000000000003"


@pytest.fixture(autouse=True)
def records(empty_records: str) -> None:
    """Empty records of the test's own."""


def claim(invocation: str, channel: str, event_id: str = NOTICE) -> bool:
    with session_scope() as session:
        return claim_redelivery(session, invocation=invocation, channel=channel,
                                event_id=event_id, reason="the receiver answered HTTP 503")


def end(invocation: str, outcome: str) -> None:
    with session_scope() as session:
        end_redelivery(session, invocation=invocation, outcome=outcome)


def test_only_a_send_again_that_succeeded_delivered_its_notice() -> None:
    assert claim("inv-1", "ops") and claim("inv-2", "pager") and claim("inv-3", "mail")
    assert claim("inv-4", "ops", OTHER)
    end("inv-1", "sent")
    end("inv-2", "failed: connection refused")
    end("inv-4", "sent")  # inv-3 is still being sent
    with session_scope() as session:
        assert sent_again(session, event_ids=[NOTICE]) == [(NOTICE, "ops")]
        assert sorted(sent_again(session, event_ids=[NOTICE, OTHER])) == [
            (NOTICE, "ops"), (OTHER, "ops")]
        assert sent_again(session, event_ids=[]) == []


def delivery(status: int) -> Event:
    return Event(event="prefect.automation.action.executed",
                 resource={"prefect.resource.id": "prefect.automation.a",
                           "prefect.resource.name": "edgefleet-notify-ops"},
                 payload={"status_code": status})


def test_notify_list_counts_every_delivery_and_says_when_it_could_not() -> None:
    assert claim("inv-1", "ops") and claim("inv-2", "ops") and claim("inv-3", "ops")
    end("inv-1", "sent")
    end("inv-2", "gone: no channel or notice to send")
    end("inv-3", "failed: connection refused")
    events = [delivery(503)] + [delivery(204)] * (2 * PAGE)  # newest first
    counts: dict[str, Any] = _deliveries(EventPages(events), "a", "ops")
    assert counts == {"sent": 2 * PAGE, "failed": 1, "counted": 2 * PAGE + 1, "complete": True,
                      "last_failure": "the receiver answered HTTP 503", "sent_again": 1,
                      "failed_again": 1}
    beyond = _deliveries(EventPages([delivery(204)] * (MAX_PAGES * PAGE + 1)), "a", "ops")
    assert (beyond["sent"], beyond["counted"], beyond["complete"]) == (
        MAX_PAGES * PAGE, MAX_PAGES * PAGE, False)


def test_a_claim_whose_run_died_is_taken_over_once_and_only_when_old() -> None:
    assert claim("inv-1", "ops") and claim("inv-2", "ops")
    end("inv-2", "failed: connection refused")

    def again(invocation: str) -> bool:
        with session_scope() as session:
            return claim_redelivery(session, invocation=invocation, channel="ops",
                                    event_id=NOTICE, reason="x",
                                    stale_before=utcnow() - timedelta(minutes=30))

    assert not again("inv-1")  # claimed just now: its send may still be under way
    with session_scope() as session:  # both claimed an hour ago; inv-1's run died mid-send
        session.exec(update(Redelivery).values(  # type: ignore[call-overload]
            created_at=utcnow() - timedelta(hours=1)))
    assert not claim("inv-1", "ops")  # no age rule given: never claimed twice
    assert again("inv-1")  # orphaned: claimed anew,
    assert not again("inv-1")  # once (the new claim is young)
    assert not again("inv-2")  # ended (failed): not sent a third time
    end("inv-1", "sent")
    with session_scope() as session:
        assert [r.outcome for r in redeliveries(session, channel="ops")] == [
            "sent", "failed: connection refused"]  # the newest claim first
