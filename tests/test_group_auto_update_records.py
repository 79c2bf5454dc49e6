"""Auto-update and `group set` on records alone (no engine, no flow run): which groups a
published version claims (one rollout per group, HALTED left alone, never a version twice),
and stored options changed only when every option given is good."""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy import update
from sqlmodel import col

import edgefleet
from edgefleet.api import groups as api_groups
from edgefleet.crud import claim_auto_update
from edgefleet.db import session_scope
from edgefleet.errors import InvalidInput, NotFound
from edgefleet.models.records import DeploymentGroup
from edgefleet.tasks.groups import claim_auto_updates

IMAGE = "127.0.0.1:5000/edgefleet/hello"


@pytest.fixture(autouse=True)
def fleet(empty_records: str, monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, ...]]:
    """An application with 1.0.0 published (1.0.1, 1.1.0, 2.0.0 defined, not published)
    and two edges; a rollout is recorded instead of run."""
    runs: list[tuple[str, ...]] = []
    monkeypatch.setattr(api_groups, "_run", lambda name, app, version, **_kw:
                        runs.append((name, app, version)))
    edgefleet.create_application("hello", "1.0.0", image=f"{IMAGE}:1.0.0", ports=["8080"])
    edgefleet.publish_version("hello", "1.0.0")
    for version in ("1.0.1", "1.1.0", "2.0.0"):
        edgefleet.add_version("hello", version, image=f"{IMAGE}:{version}", ports=["8080"])
    edgefleet.add_edge("e1", "tcp://127.0.0.1:1", check=False, labels=["site=a"])
    edgefleet.add_edge("e2", "tcp://127.0.0.1:2", check=False, labels=["site=b"])
    return runs


def _at_rest(name: str, state: str = "STARTED") -> None:
    """As a finished rollout leaves the group."""
    with session_scope() as session:
        session.exec(update(DeploymentGroup).where(  # type: ignore[call-overload]
            col(DeploymentGroup.name) == name).values(state=state))


def _claim(name: str) -> Any:
    with session_scope() as session:
        return claim_auto_update(session, name=name)


def test_a_published_minor_release_claims_a_minor_group_and_never_twice() -> None:
    edgefleet.create_group("g", "hello", edges=["e1", "e2"], auto_update="minor")
    edgefleet.create_group("manual", "hello", edges=["e1"])  # auto-update off: never claimed
    assert edgefleet.group_status("g")["auto_update"] == "minor"
    _at_rest("g")
    _at_rest("manual")
    assert not _claim("g").claimed  # nothing published since the group was made
    edgefleet.publish_version("hello", "1.1.0")
    step = _claim("g")
    assert (step.claimed, step.from_version, step.to_version) == (True, "1.0.0", "1.1.0")
    status = edgefleet.group_status("g")
    assert (status["state"], status["version"]) == ("UPDATING", "1.1.0")
    assert status["reason"] == "auto-update minor: 1.0.0 → 1.1.0"
    again = _claim("g")  # a second run (the interval, an event twice): no second rollout
    assert not again.claimed and again.to_version is None
    assert edgefleet.group_status("manual")["version"] == "1.0.0"

    _at_rest("g", "STARTED")
    assert not _claim("g").claimed  # 1.1.0 is not tried again by itself
    assert edgefleet.group_status("g")["state"] == "STARTED"


def test_a_major_release_is_left_to_an_operator() -> None:
    edgefleet.create_group("g", "hello", edges=["e1"], auto_update="minor")
    _at_rest("g")
    edgefleet.publish_version("hello", "2.0.0")
    step = _claim("g")
    assert not step.claimed and step.to_version == "2.0.0"
    assert "a major release; auto-update minor leaves it to an operator" in step.reason
    assert edgefleet.group_status("g")["state"] == "STARTED"


def test_the_newest_admitted_version_is_rolled_out() -> None:
    edgefleet.create_group("g", "hello", edges=["e1"], auto_update="minor")
    _at_rest("g", "PARTIAL")  # a group with a deferred edge is at rest too
    for version in ("1.0.1", "1.1.0", "2.0.0"):
        edgefleet.publish_version("hello", version)
    step = _claim("g")
    assert (step.claimed, step.to_version) == (True, "1.1.0")


def test_a_halted_group_waits_for_an_operator() -> None:
    edgefleet.create_group("g", "hello", edges=["e1"], auto_update="patch")
    _at_rest("g", "HALTED")
    edgefleet.publish_version("hello", "1.0.1")
    step = _claim("g")
    assert not step.claimed and "HALTED" in step.reason and step.to_version == "1.0.1"
    assert edgefleet.group_status("g")["state"] == "HALTED"
    edgefleet.update_group("g", to="1.0.0", force=True)  # an operator takes it in hand
    _at_rest("g")
    assert _claim("g").claimed  # then auto-update goes on


def test_the_task_claims_only_the_published_applications_groups() -> None:
    edgefleet.create_application("other", "1.0.0", image=f"{IMAGE}:1.0.0", ports=["8080"])
    edgefleet.publish_version("other", "1.0.0")
    edgefleet.add_version("other", "1.1.0", image=f"{IMAGE}:1.1.0", ports=["8080"])
    edgefleet.create_group("g", "hello", edges=["e1"], auto_update="major")
    edgefleet.create_group("o", "other", edges=["e2"], auto_update="major")
    _at_rest("g")
    _at_rest("o")
    edgefleet.publish_version("hello", "2.0.0")
    edgefleet.publish_version("other", "1.1.0")
    steps = claim_auto_updates.fn("hello")
    assert [(s.group, s.claimed) for s in steps] == [("g", True)]
    assert edgefleet.group_status("o")["state"] == "STARTED"
    assert [(s.group, s.to_version) for s in claim_auto_updates.fn(None)] == [
        ("g", None), ("o", "1.1.0")]  # g is not claimed again
    assert claim_auto_updates.fn("nope") == []


def test_set_changes_stored_options_only_and_starts_nothing(fleet: list[tuple[str, ...]]
                                                            ) -> None:
    edgefleet.create_group("g", "hello", edges=["e1", "e2"])
    _at_rest("g")
    fleet.clear()
    status = edgefleet.set_group("g", waves="1,100%", max_parallel="3", failure_threshold="25%",
                                 on_failure="continue", approve=True, auto_update="Patch")
    assert status["options"] == {"waves": "1,100%", "max_parallel": 3,
                                 "failure_threshold": 25.0, "on_failure": "continue",
                                 "approve": True}
    assert (status["auto_update"], status["state"], status["version"]) == (
        "patch", "STARTED", "1.0.0")
    assert fleet == []  # no rollout
    edgefleet.publish_version("hello", "1.0.1")
    assert _claim("g").claimed  # published after the level was set
    only = edgefleet.set_group("g", max_parallel=5)  # only what is given changes
    assert only["options"]["max_parallel"] == 5 and only["options"]["waves"] == "1,100%"
    assert only["auto_update"] == "patch"


@pytest.mark.parametrize(("kwargs", "says"), [
    ({"auto_update": "sometimes"}, "auto_update 'sometimes'"),
    ({"waves": "1,50%", "auto_update": "minor"}, "100%"),
    ({"on_failure": "panic"}, "on_failure"),
    ({"failure_threshold": "150%"}, "percentage"),
    ({"max_parallel": 0, "auto_update": "major"}, "max_parallel"),
    ({}, "nothing to set"),
])
def test_a_bad_set_is_refused_by_name_and_changes_nothing(kwargs: dict[str, Any], says: str
                                                         ) -> None:
    edgefleet.create_group("g", "hello", edges=["e1"], waves="1,100%")
    before = edgefleet.group_status("g")
    with pytest.raises(InvalidInput, match=says):
        edgefleet.set_group("g", **kwargs)
    assert edgefleet.group_status("g") == before
    with pytest.raises(NotFound):
        edgefleet.set_group("nope", auto_update="minor")


def test_a_level_that_changes_acts_on_versions_published_from_then_on() -> None:
    edgefleet.create_group("g", "hello", edges=["e1"], auto_update="patch")
    _at_rest("g")
    edgefleet.publish_version("hello", "1.1.0")
    assert not _claim("g").claimed  # a minor release: not for patch
    edgefleet.set_group("g", auto_update="minor")
    assert not _claim("g").claimed  # published before the level changed
    edgefleet.set_group("g", auto_update="minor")  # the same level: nothing moves
    with pytest.raises(InvalidInput, match="auto_update 'weekly'"):
        edgefleet.create_group("h", "hello", edges=["e2"], auto_update="weekly")
    assert [g["name"] for g in edgefleet.list_groups()] == ["g"]


def test_the_cli_sets_and_refuses_in_one_line() -> None:
    from typer.testing import CliRunner

    from edgefleet.cli.main import app

    runner = CliRunner()
    made = runner.invoke(app, ["group", "create", "g", "hello", "--edge", "e1",
                               "--auto-update", "minor", "--json"])
    assert made.exit_code == 0, made.output
    assert json.loads(made.stdout)["auto_update"] == "minor"
    done = runner.invoke(app, ["group", "set", "g", "--waves", "1,100%", "--approve",
                               "--auto-update", "major"])
    assert done.exit_code == 0, done.output
    assert "auto-update major" in done.stdout
    shown = json.loads(runner.invoke(app, ["group", "status", "g", "--json"]).stdout)
    assert (shown["auto_update"], shown["options"]["waves"], shown["options"]["approve"]) == (
        "major", "1,100%", True)
    bad = runner.invoke(app, ["group", "set", "g", "--auto-update", "nightly"])
    assert bad.exit_code == 1 and "auto_update 'nightly'" in bad.output
    assert edgefleet.group_status("g")["auto_update"] == "major"
    off = runner.invoke(app, ["group", "set", "g", "--no-approve", "--auto-update", "off"])
    assert off.exit_code == 0 and "auto-update" not in off.stdout


def test_a_version_published_during_a_rollout_waits_for_its_end() -> None:
    edgefleet.create_group("g", "hello", edges=["e1"], auto_update="minor")
    edgefleet.publish_version("hello", "1.1.0")  # the group is still DEPLOYING
    step = _claim("g")
    assert not step.claimed and step.to_version == "1.1.0" and "DEPLOYING" in step.reason
    _at_rest("g")
    assert _claim("g").claimed  # the interval's run, once the rollout ended
