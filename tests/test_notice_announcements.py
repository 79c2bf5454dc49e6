"""A notice whose event was lost is announced again once, never while it may be on its way
(records only: SQLite, and PostgreSQL on the lab tier)."""

from __future__ import annotations

from datetime import timedelta

import pytest

import edgefleet
from edgefleet.crud import claim_announcement, unannounced_notices
from edgefleet.db import session_scope
from edgefleet.models.records import utcnow
from edgefleet.version_notices import notify_version


@pytest.fixture
def notice_row(empty_records: str) -> str:
    """A recorded notice of an update from 1.0.0 to 1.1.0 (never announced): its event id."""
    edgefleet.create_application("news", "1.0.0", image="registry.example/news:1.0.0")
    edgefleet.add_version("news", "1.1.0", image="registry.example/news:1.1.0")
    edgefleet.add_edge("e-news", "tcp://127.0.0.1:1", check=False)
    dep = edgefleet.create_deployment("news", "e-news", version="1.0.0", allow_unpublished=True)
    notice = notify_version("news", "1.1.0", dep.id)
    assert notice is not None and notice.event_id
    return notice.event_id


def found(within: timedelta = timedelta(hours=1), age: timedelta = timedelta(0)
          ) -> list[tuple[int, str | None]]:
    now = utcnow()
    with session_scope() as session:
        return [(row_id, notice.event_id) for row_id, notice in unannounced_notices(
            session, since=now - within, until=now - age, limit=10)]


def test_a_notice_is_announced_again_at_most_once(notice_row: str) -> None:
    [(row_id, event_id)] = found()
    assert event_id == notice_row
    with session_scope() as session:
        assert claim_announcement(session, notification_id=row_id, at=utcnow())
    with session_scope() as session:  # a second reconcile, or one running at the same time
        assert not claim_announcement(session, notification_id=row_id, at=utcnow())
    assert found() == []
    shown = edgefleet.list_notifications(include_acknowledged=True)
    assert [n["announced_again_at"] is not None for n in shown] == [True]
    assert [n["delivered_to"] for n in shown] == [None]  # no Prefect server: unknown


def test_a_young_notice_is_left_for_a_later_reconcile(notice_row: str) -> None:
    assert found(age=timedelta(minutes=5)) == []  # its first emission may still be on its way
    assert found(within=timedelta(0), age=timedelta(0)) == []  # too old for the window
    assert [event for _, event in found()] == [notice_row]
