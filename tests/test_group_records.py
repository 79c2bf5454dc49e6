"""Deployment groups on records alone (no engine, no flow run): bad requests change nothing,
a created group records one member per target edge, and its status has the issue's fields."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import update
from sqlmodel import col

import edgefleet
from edgefleet.api import groups as api_groups
from edgefleet.db import session_scope
from edgefleet.errors import (
    AlreadyExists,
    EdgefleetError,
    InvalidInput,
    InvalidTransition,
    NotFound,
)
from edgefleet.models.records import DeploymentGroup
from edgefleet.notice_events import group_event_id
from edgefleet.tasks.groups import load_group_plan

IMAGE = "127.0.0.1:5000/edgefleet/hello"
REAL_RUN = api_groups._run


@pytest.fixture(autouse=True)
def fleet(empty_records: str, monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, ...]]:
    """An application (1.0.0 published, 1.1.0 not), two labelled edges; rollouts recorded
    instead of run."""
    runs: list[tuple[str, ...]] = []
    monkeypatch.setattr(api_groups, "_run", lambda name, app, version, **_kw:
                        runs.append((name, app, version)))
    edgefleet.create_application("hello", "1.0.0", image=f"{IMAGE}:1.0.0", ports=["8080"])
    edgefleet.publish_version("hello", "1.0.0")
    edgefleet.add_version("hello", "1.1.0", image=f"{IMAGE}:1.1.0", ports=["8080"])
    edgefleet.add_edge("e1", "tcp://127.0.0.1:1", check=False, labels=["site=a"])
    edgefleet.add_edge("e2", "tcp://127.0.0.1:2", check=False, labels=["site=b"])
    return runs


def _nothing_recorded() -> None:
    assert edgefleet.list_groups() == []
    assert edgefleet.list_deployments() == []


@pytest.mark.parametrize(("kwargs", "error", "says"), [
    ({"selector": "site=a", "name": "../g"}, InvalidInput, "group name"),
    ({}, InvalidInput, "exactly one"),
    ({"edges": ["e1"], "selector": "site=a"}, InvalidInput, "exactly one"),
    ({"edges": []}, InvalidInput, "exactly one"),
    ({"selector": "site==a"}, InvalidInput, "site==a"),
    ({"selector": "site=nowhere"}, InvalidInput, "no edge matches"),
    ({"edges": ["e1", "e9"]}, NotFound, "e9"),
    ({"selector": "site=a", "application": "nope"}, NotFound, "nope"),
    ({"selector": "site=a", "version": "9.9.9"}, InvalidInput, "no version 9.9.9"),
    ({"selector": "site=a", "version": "1.1.0"}, InvalidInput, "not published"),
    ({"selector": "site=a", "version": "1.x"}, InvalidInput, "semantic version"),
    ({"selector": "site=a", "waves": "1,50%"}, InvalidInput, "100%"),
    ({"selector": "site=a", "on_failure": "panic"}, InvalidInput, "on_failure"),
    ({"selector": "site=a", "failure_threshold": "150%"}, InvalidInput, "percentage"),
    ({"selector": "site=a", "max_parallel": 0}, InvalidInput, "max_parallel"),
    ({"selector": "site=a", "env": ["nokey"]}, InvalidInput, "nokey"),
])
def test_bad_group_requests_record_nothing(kwargs: dict[str, Any], error: type[Exception],
                                           says: str, fleet: list[tuple[str, ...]]) -> None:
    args = {"name": "g", "application": "hello", **kwargs}
    with pytest.raises(error) as info:
        edgefleet.create_group(args.pop("name"), args.pop("application"), **args)
    assert says in str(info.value)
    _nothing_recorded()
    assert fleet == []


def test_a_group_records_one_member_per_matching_edge(fleet: list[tuple[str, ...]]) -> None:
    status = edgefleet.create_group("g", "hello", selector="site=a", waves="1,100%")
    assert fleet == [("g", "hello", "1.0.0")]
    assert {"name", "application", "version", "state", "selector", "reason", "counts",
            "edges", "rollout"} <= set(status)
    assert (status["name"], status["application"], status["version"], status["state"],
            status["selector"]) == ("g", "hello", "1.0.0", "DEPLOYING", "site=a")
    assert status["counts"] == {"CREATED": 1}
    (member,) = status["edges"]
    assert set(member) == {"edge", "deployment_id", "version", "state", "last_error"}
    assert (member["edge"], member["version"], member["state"]) == ("e1", "1.0.0", "CREATED")
    assert status["rollout"] == {"wave": 0, "waves": 0, "flow_run_id": None}
    assert status["options"]["waves"] == "1,100%"
    (dep,) = edgefleet.list_deployments()
    assert dep["id"] == member["deployment_id"] and dep["edge"] == "e1"
    with pytest.raises(AlreadyExists):
        edgefleet.create_group("g", "hello", edges=["e2"])
    assert len(edgefleet.list_deployments()) == 1


def test_the_plan_defers_an_edge_never_contacted() -> None:
    edgefleet.create_group("g", "hello", edges=["e1", "e2"])
    view = load_group_plan.fn("g")
    assert view.plan.render().splitlines() == [
        "defer  e1: OFFLINE; then update: deployment CREATED, not STARTED",
        "defer  e2: OFFLINE; then update: deployment CREATED, not STARTED",
    ]
    assert view.plan.rollout_edges() == {}


def test_an_update_is_refused_while_a_rollout_runs_and_for_unpublished_versions(
        fleet: list[tuple[str, ...]]) -> None:
    edgefleet.create_group("g", "hello", selector="site")
    with pytest.raises(InvalidTransition, match="under way"):
        edgefleet.update_group("g", to="1.0.0", force=True)
    with session_scope() as session:  # as a halted rollout leaves it
        session.exec(update(DeploymentGroup).where(  # type: ignore[call-overload]
            col(DeploymentGroup.name) == "g").values(state="HALTED"))
    with pytest.raises(InvalidInput, match="not published"):
        edgefleet.update_group("g", to="1.1.0")
    with pytest.raises(InvalidInput, match="waves"):
        edgefleet.update_group("g", to="1.0.0", force=True, waves="0")
    assert edgefleet.group_status("g")["state"] == "HALTED"
    edgefleet.publish_version("hello", "1.1.0")
    status = edgefleet.update_group("g", failure_threshold="50%")
    assert (status["state"], status["version"]) == ("UPDATING", "1.1.0")
    assert status["options"]["failure_threshold"] == 50.0
    assert fleet[-1] == ("g", "hello", "1.1.0")
    with pytest.raises(NotFound):
        edgefleet.update_group("nope")


def test_delete_removes_the_group_and_its_members() -> None:
    edgefleet.create_group("g", "hello", edges=["e1", "e2"])
    assert [g["name"] for g in edgefleet.list_groups()] == ["g"]
    with pytest.raises(InvalidTransition, match="under way"):
        edgefleet.delete_group("g")
    assert edgefleet.delete_group("g", force=True) == []
    _nothing_recorded()
    with pytest.raises(EdgefleetError):
        edgefleet.group_status("g")


def test_the_cli_creates_shows_lists_and_refuses_in_one_line() -> None:
    import json

    from typer.testing import CliRunner

    from edgefleet.cli.main import app

    runner = CliRunner()
    made = runner.invoke(app, ["group", "create", "g", "hello", "--selector", "site=b",
                               "--waves", "1,100%", "--on-failure", "rollback", "--json"])
    assert made.exit_code == 0, made.output
    shown = json.loads(runner.invoke(app, ["group", "status", "g", "--json"]).stdout)
    assert (shown["state"], shown["options"]["on_failure"]) == ("DEPLOYING", "rollback")
    assert [e["edge"] for e in shown["edges"]] == ["e2"]
    listed = runner.invoke(app, ["group", "list"])
    assert listed.exit_code == 0 and "site=b" in listed.stdout
    text = runner.invoke(app, ["group", "status", "g"])
    assert "DEPLOYING" in text.stdout and "e2" in text.stdout
    bad = runner.invoke(app, ["group", "create", "h", "hello", "--selector", "site=a",
                              "--on-failure", "panic"])
    assert bad.exit_code == 1 and "on_failure" in bad.output
    both = runner.invoke(app, ["group", "create", "h", "hello", "--selector", "site=a",
                               "--edge", "e1"])
    assert both.exit_code == 1 and "exactly one" in both.output
    assert [g["name"] for g in edgefleet.list_groups()] == ["g"]


@pytest.fixture
def announced(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """The group events emitted (no Prefect server here: kept instead of sent)."""
    from edgefleet.tasks import groups as group_tasks

    found: list[dict[str, Any]] = []

    def keep(fields: dict[str, Any]) -> bool:
        found.append(fields)
        return True

    monkeypatch.setattr(group_tasks, "emit_fields", keep)
    return found


def test_a_rollout_that_cannot_start_leaves_its_group_halted(
        monkeypatch: pytest.MonkeyPatch, announced: list[dict[str, Any]]) -> None:
    from edgefleet import jobs

    def refuse(*_args: object, **_kwargs: object) -> None:
        raise EdgefleetError("run mode is 'served' but `edgefleet up` is not running")

    monkeypatch.setattr(api_groups, "_run", REAL_RUN)
    monkeypatch.setattr(jobs, "run_flow", refuse)
    with pytest.raises(EdgefleetError, match="not running"):
        edgefleet.create_group("g", "hello", selector="site=a")
    status = edgefleet.group_status("g")
    assert status["state"] == "HALTED"
    assert "did not start" in status["reason"] and "not running" in status["reason"]
    [halt] = announced  # the channels hear of it, as of a halt by the rollout's run
    assert halt["event"] == "edgefleet.group.halted"
    assert halt["resource"]["prefect.resource.id"] == "edgefleet.group.g"
    assert halt["payload"]["edges"] == ["e1"] and "did not start" in halt["payload"]["text"]
    with pytest.raises(EdgefleetError, match="not running"):  # not refused as "under way"
        edgefleet.update_group("g", force=True)
    assert edgefleet.group_status("g")["state"] == "HALTED"
    assert len(announced) == 2  # halted again, by another attempt: told again


def test_a_group_whose_rollout_run_is_gone_is_halted_and_announced(
        monkeypatch: pytest.MonkeyPatch, announced: list[dict[str, Any]]) -> None:
    edgefleet.create_group("g", "hello", selector="site=a")
    run_id = "5f0c9a8e-0000-4000-8000-000000000001"
    with session_scope() as session:  # paused, and its run since deleted from Prefect
        session.exec(update(DeploymentGroup).where(  # type: ignore[call-overload]
            col(DeploymentGroup.name) == "g").values(state="PAUSED", flow_run_id=run_id,
                                                     reason="paused while DEPLOYING"))
    monkeypatch.setattr(api_groups, "_rollout_run", lambda _name, _run: (None, "http://x"))
    with pytest.raises(InvalidTransition, match="is gone: it is HALTED now"):
        edgefleet.resume_group("g")
    assert edgefleet.group_status("g")["state"] == "HALTED"
    [halt] = announced
    assert halt["event"] == "edgefleet.group.halted"
    assert f"its rollout run {run_id} is gone" in halt["payload"]["reason"]
    assert halt["id"] == group_event_id("g", "halted", run_id)  # as the run itself would
