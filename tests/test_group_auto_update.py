"""Auto-update of a group, its table artifact and its halt notice: the pure rules (which
version a level admits, the table's order and key, the event's fields)."""

from __future__ import annotations

from typing import Any

import pytest

from edgefleet.models.groups import AutoUpdate, auto_update_admits, parse_auto_update
from edgefleet.notice_events import KINDS, channel_filters, group_event_id, group_event_of
from edgefleet.rollouts import RANKS, artifact_key, group_table, member_rank

# ------------------------------------------------------------------ admission


@pytest.mark.parametrize(("level", "target", "published", "admitted", "says"), [
    ("patch", "1.2.0", "1.2.3", True, "admits 1.2.0 → 1.2.3"),
    ("patch", "1.2.0", "1.3.0", False, "a minor release; auto-update patch"),
    ("patch", "1.2.0", "2.0.0", False, "a major release; auto-update patch"),
    ("minor", "1.2.0", "1.2.1", True, "admits"),
    ("minor", "1.2.0", "1.9.0", True, "admits"),
    ("minor", "1.2.0", "2.0.0", False, "a major release; auto-update minor"),
    ("major", "1.2.0", "3.1.0", True, "admits"),
    ("major", "1.2.0", "1.2.0", False, "not newer"),
    ("minor", "1.2.0", "1.1.9", False, "not newer"),
    ("major", "1.2.0", "2.0.0-rc.1", False, "prerelease"),
    ("minor", "1.3.0-rc.1", "1.3.0", True, "admits"),  # the release of a prerelease it runs
    ("off", "1.2.0", "1.2.1", False, "off"),
    (AutoUpdate.MINOR, "0.9.0", "0.10.0", True, "admits"),
])
def test_the_level_admits_newer_releases_within_its_reach(
        level: str, target: str, published: str, admitted: bool, says: str) -> None:
    ok, why = auto_update_admits(level, target, published)
    assert (ok, says in why) == (admitted, True), why


@pytest.mark.parametrize("given", ["MINOR", " major ", "off"])
def test_a_level_is_read_in_any_case(given: str) -> None:
    assert parse_auto_update(given).value == given.strip().lower()


@pytest.mark.parametrize("given", ["sometimes", "", None, 2, "minor,major"])
def test_a_bad_level_is_refused_by_name_with_the_choices(given: Any) -> None:
    with pytest.raises(ValueError, match="auto_update .* is not one of off|patch|minor|major"):
        parse_auto_update(given)


# ------------------------------------------------------------------ the table


def _row(edge: str, state: str | None, version: str | None = "2.0.0",
         error: str | None = None) -> dict[str, Any]:
    return {"edge": edge, "deployment_id": None if state is None else f"dep-{edge}-0123456789",
            "version": version if state is not None else None, "state": state,
            "last_error": error}


def test_the_table_shows_the_worst_members_first() -> None:
    rows = [
        _row("a-ok", "STARTED"),
        _row("b-old", "STARTED", "1.0.0"),
        _row("c-stopped", "STOPPED"),
        _row("d-new", None),
        _row("e-busy", "UPDATING", "1.0.0"),
        _row("f-offline", "STARTED", "1.0.0"),
        _row("g-broken", "ERROR", "1.0.0", "no container appeared"),
        _row("h-broken-offline", "ERROR", "1.0.0", "pull failed"),
        _row("i-unknown", "CREATED"),
    ]
    online = {r["edge"]: "ONLINE" for r in rows}
    availability: dict[str, str | None] = {
        **online, "f-offline": "OFFLINE", "h-broken-offline": "OFFLINE", "i-unknown": None}
    table = group_table(list(reversed(rows)), availability, "2.0.0")
    by_edge = {r["edge"]: r for r in rows}
    assert [(t["edge"], RANKS[member_rank(by_edge[t["edge"]], availability[t["edge"]], "2.0.0")])
            for t in table] == [
        ("g-broken", "ERROR"),
        ("h-broken-offline", "ERROR"),
        ("f-offline", "deferred (edge not ONLINE)"),
        ("i-unknown", "deferred (edge not ONLINE)"),
        ("e-busy", "a run at work"),
        ("c-stopped", "not running"),
        ("d-new", "not running"),
        ("b-old", "STARTED, not on the target"),
        ("a-ok", "STARTED on the target"),
    ]
    assert table[0] == {"edge": "g-broken", "edge status": "ONLINE",
                        "deployment": "dep-g-broken", "version": "1.0.0", "state": "ERROR",
                        "last error": "no container appeared"}
    # what is not there reads n/a (a lone "-" is a bullet in the UI's markdown cells)
    assert table[3]["edge status"] == "UNKNOWN"
    assert table[6] == {"edge": "d-new", "edge status": "ONLINE", "deployment": "n/a",
                        "version": "n/a", "state": "NO DEPLOYMENT", "last error": "n/a"}


@pytest.mark.parametrize(("group", "key"), [
    ("shops", "group-shops"),
    ("plant-7", "group-plant-7"),
    ("plant.7", "group-plant-7-"),
    ("a_b", "group-a-b-"),
    ("a--b", "group-a--b"),
])
def test_the_artifact_key_is_group_name_made_of_what_prefect_takes(group: str, key: str
                                                                    ) -> None:
    found = artifact_key(group)
    assert found.startswith(key)
    assert all(c.islower() or c.isdigit() or c == "-" for c in found), found
    if key.endswith("-") and group != key.removeprefix("group-"):  # changed: a hash tells apart
        assert len(found) == len(key) + 8


def test_names_that_clean_up_alike_keep_apart() -> None:
    assert len({artifact_key(n) for n in ("a-b", "a_b", "a.b")}) == 3


# ------------------------------------------------------------------ the halt notice


def test_a_group_halt_is_about_the_group_and_relates_its_application_and_edges() -> None:
    fields = group_event_of(
        "halted", group="shops", application="hello", version="1.1.0",
        message="auto-update of group shops to hello 1.1.0 halted: 1 of 1 failed",
        edges=["lab-2", "lab-1"], command="edgefleet group status shops",
        event_id=group_event_id("shops", "halted", "run-1"), extra={"auto_update": True})
    assert fields["event"] == KINDS["halted"] == "edgefleet.group.halted"
    assert fields["resource"] == {"prefect.resource.id": "edgefleet.group.shops",
                                  "prefect.resource.name": "shops"}
    related = {(r["prefect.resource.role"], r["prefect.resource.id"])
               for r in fields["related"]}
    assert related == {("application", "edgefleet.application.hello"),
                       ("edge", "edgefleet.edge.lab-1"), ("edge", "edgefleet.edge.lab-2")}
    # a channel filtered by application and edge matches it (each filter by a related one)
    for wanted in channel_filters("hello", "lab-2"):
        assert any(all(r.get(k) == v for k, v in wanted.items()) for r in fields["related"])
    payload = fields["payload"]
    assert (payload["kind"], payload["group"], payload["to_version"], payload["auto_update"]
            ) == ("halted", "shops", "1.1.0", True)
    assert "command: edgefleet group status shops" in payload["text"]
    assert fields["id"] == group_event_id("shops", "halted", "run-1")
    assert fields["id"] != group_event_id("shops", "halted", "run-2")
    with pytest.raises(ValueError, match="unknown notice kind"):
        group_event_of("exploded", group="g", application="a", version="1.0.0",
                       message="m", edges=[])
