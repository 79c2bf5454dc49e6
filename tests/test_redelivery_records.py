"""Failed channel deliveries sent again, on records alone (SQLite, and PostgreSQL on the lab
tier): each is claimed once, and a successful one counts as a delivery of its notice."""

from __future__ import annotations

import pytest

from edgefleet.crud import claim_redelivery, end_redelivery, sent_again
from edgefleet.db import session_scope

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
