"""Notices as events: names, resources, the text a person reads, channel filters (pure)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from edgefleet.notice_events import (
    KINDS,
    Notice,
    channel_filters,
    event_of,
    notice_event_id,
    notice_of,
    parse_kinds,
)


def test_an_update_notice_names_its_deployment_application_and_edge() -> None:
    notice = Notice(kind="update-available", message="hello 1.1.0 is published", edge="plant-7",
                    deployment_id="abcdef0123456789", application="hello", from_version="1.0.0",
                    to_version="1.1.0", command="edgefleet update abcdef0123456789 --to 1.1.0",
                    link="http://127.0.0.1:4200/runs/flow-run/x")
    fields = event_of(notice)
    assert fields["event"] == "edgefleet.update.available"
    assert fields["resource"]["prefect.resource.id"] == "edgefleet.deployment.abcdef0123456789"
    roles = {r["prefect.resource.role"]: r["prefect.resource.id"] for r in fields["related"]}
    assert roles == {"edge": "edgefleet.edge.plant-7", "application": "edgefleet.application.hello",
                     "deployment": "edgefleet.deployment.abcdef0123456789"}
    assert fields["payload"]["text"].splitlines() == [
        "hello 1.1.0 is published",
        "where: deployment abcdef012345 of hello on edge plant-7",
        "version: 1.0.0 → 1.1.0",
        "command: edgefleet update abcdef0123456789 --to 1.1.0",
        "link: http://127.0.0.1:4200/runs/flow-run/x",
    ]


def test_an_edge_notice_is_about_the_edge_and_relates_it_too() -> None:
    fields = event_of(Notice(kind="offline", message="edge e1 is OFFLINE", edge="e1"))
    assert fields["event"] == "edgefleet.edge.offline"
    assert fields["resource"]["prefect.resource.id"] == "edgefleet.edge.e1"
    assert [r["prefect.resource.role"] for r in fields["related"]] == ["edge"]
    assert fields["payload"]["text"] == "edge e1 is OFFLINE\nwhere: edge e1"


def test_channel_filters_match_every_given_resource() -> None:
    assert channel_filters(None, None) == []
    assert channel_filters("hello", "e1") == [
        {"prefect.resource.role": "application",
         "prefect.resource.id": "edgefleet.application.hello"},
        {"prefect.resource.role": "edge", "prefect.resource.id": "edgefleet.edge.e1"}]


def test_kinds_are_checked_and_named() -> None:
    assert parse_kinds("offline, rolled-back,offline") == ["offline", "rolled-back"]
    assert parse_kinds(["offline", "online,failed"]) == ["offline", "online", "failed"]
    assert set(KINDS) >= {"update-available", "rolled-back", "failed", "offline", "online",
                          "halted", "awaiting-approval"}
    with pytest.raises(ValueError, match="unknown notification kind 'late'"):
        parse_kinds("offline,late")
    with pytest.raises(ValueError, match="at least one"):
        parse_kinds(" , ")
    with pytest.raises(ValueError, match="unknown notice kind"):
        event_of(Notice(kind="weird", message="x", edge="e"))


def test_a_notice_event_id_is_fixed_by_what_the_notice_is_never_by_its_row_id() -> None:
    first = {"id": 5, "deployment_id": "a" * 32, "reason": "version", "key": "1.1.0"}
    again = dict(first)
    reused = {**first, "deployment_id": "b" * 32}  # the row id of a deleted notice, reused
    assert notice_event_id(first) == notice_event_id(again)
    assert notice_event_id(first) != notice_event_id(reused)
    assert notice_event_id({**first, "key": "1.2.0"}) != notice_event_id(first)
    assert notice_event_id({**first, "id": None}) is None  # not recorded: no fixed id


def test_a_failed_update_notice_is_an_update_failed_event_with_its_resources() -> None:
    row = SimpleNamespace(id=7, deployment_id="abcdef0123456789", reason="failed",
                          key="run-1", application="hello", from_version="1.0.0",
                          to_version="1.1.0", message="the update failed and was not rolled "
                          "back: container web exited", command="edgefleet status "
                          "abcdef0123456789", link=None)
    notice = notice_of(row, "plant-7")
    assert notice.kind == "failed" and notice.event_id == notice_event_id(row)
    fields = event_of(notice)
    assert fields["event"] == "edgefleet.update.failed"
    assert fields["id"] == notice.event_id
    assert fields["resource"]["prefect.resource.id"] == "edgefleet.deployment.abcdef0123456789"
    roles = {r["prefect.resource.role"]: r["prefect.resource.id"] for r in fields["related"]}
    assert roles == {"edge": "edgefleet.edge.plant-7", "application": "edgefleet.application.hello",
                     "deployment": "edgefleet.deployment.abcdef0123456789"}
    assert fields["payload"]["kind"] == "failed"
    assert fields["payload"]["text"].splitlines() == [
        "the update failed and was not rolled back: container web exited",
        "where: deployment abcdef012345 of hello on edge plant-7",
        "version: 1.0.0 → 1.1.0",
        "command: edgefleet status abcdef0123456789",
    ]
