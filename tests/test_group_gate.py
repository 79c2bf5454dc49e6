"""The approval gate and pause/resume without a lab: the pure rules (the reason a pause
leaves, the hint a waiting group shows, the gate's input) and, on records alone, the bad
requests (approve a group that waits for nothing, an unknown group, `--approve` without
`edgefleet up`), each refused with nothing changed. The gate itself runs in
``test_group_approval.py`` against the real lab."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError
from sqlalchemy import update
from sqlmodel import col

import edgefleet
from edgefleet.api import groups as api_groups
from edgefleet.db import session_scope
from edgefleet.errors import InvalidInput, InvalidTransition, NotFound
from edgefleet.models.groups import (
    GateInput,
    GroupState,
    holding_hint,
    pause_reason,
    paused_from,
)
from edgefleet.models.records import DeploymentGroup

IMAGE = "127.0.0.1:5000/edgefleet/hello"

# ------------------------------------------------------------------ pure


@pytest.mark.parametrize("rolling", [GroupState.DEPLOYING, GroupState.UPDATING])
def test_a_pause_reason_names_the_state_a_resume_goes_back_to(rolling: GroupState) -> None:
    reason = pause_reason(rolling, "shops")
    assert paused_from(reason) is rolling
    assert "edgefleet group resume shops" in reason


@pytest.mark.parametrize("reason", [None, "", "halted: 1 of 1 attempted edges failed",
                                    "paused by an operator while STOPPED: x"])
def test_a_reason_that_does_not_say_resumes_to_updating(reason: str | None) -> None:
    assert paused_from(reason) is GroupState.UPDATING


def test_a_waiting_group_tells_the_command_it_waits_for() -> None:
    assert holding_hint("shops", "AWAITING_APPROVAL", 1, 2) == (
        "awaiting approval after wave 1/2: run `edgefleet group approve shops`")
    assert holding_hint("shops", "PAUSED", 2, 3) == (
        "paused in wave 2/3: run `edgefleet group resume shops`")
    for state in ("DEPLOYING", "UPDATING", "STARTED", "HALTED", None):
        assert holding_hint("shops", state, 1, 2) is None


def test_the_gate_input_approves_by_default_and_refuses_what_it_does_not_know() -> None:
    assert GateInput() == GateInput(approved=True, note="")
    assert GateInput.model_validate({"approved": False}).approved is False
    with pytest.raises(ValidationError):
        GateInput.model_validate({"approved": True, "extra": 1})
    with pytest.raises(ValidationError):
        GateInput(note="x" * 501)
    schema = GateInput.model_json_schema()  # the form the Prefect UI shows
    assert set(schema["properties"]) == {"approved", "note"}
    assert schema["properties"]["approved"]["default"] is True


# ------------------------------------------------------------------ records


@pytest.fixture
def fleet(empty_records: str, monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, ...]]:
    """An application with two published versions, two edges; rollouts recorded instead
    of run (these tests are about refusals: nothing may reach a run)."""
    runs: list[tuple[str, ...]] = []
    monkeypatch.setattr(api_groups, "_run", lambda name, app, version, **_kw:
                        runs.append((name, app, version)))
    edgefleet.create_application("hello", "1.0.0", image=f"{IMAGE}:1.0.0", ports=["8080"])
    edgefleet.add_version("hello", "1.1.0", image=f"{IMAGE}:1.1.0", ports=["8080"])
    edgefleet.publish_version("hello", "1.0.0")
    edgefleet.publish_version("hello", "1.1.0")
    edgefleet.add_edge("e1", "tcp://127.0.0.1:1", check=False)
    edgefleet.add_edge("e2", "tcp://127.0.0.1:2", check=False)
    return runs


def _set(name: str, **values: Any) -> None:
    with session_scope() as session:
        session.exec(update(DeploymentGroup).where(  # type: ignore[call-overload]
            col(DeploymentGroup.name) == name).values(**values))


def test_approve_without_edgefleet_up_is_refused_and_records_nothing(
        fleet: list[tuple[str, ...]]) -> None:
    with pytest.raises(InvalidInput, match="`edgefleet up`") as info:
        edgefleet.create_group("g", "hello", edges=["e1", "e2"], waves="1,100%",
                               approve=True, version="1.0.0")
    assert "--approve" in str(info.value)
    assert edgefleet.list_groups() == [] and edgefleet.list_deployments() == []
    assert fleet == []


def test_an_update_that_keeps_a_stored_approve_needs_edgefleet_up_too(
        fleet: list[tuple[str, ...]]) -> None:
    edgefleet.create_group("g", "hello", edges=["e1"], version="1.0.0")
    _set("g", state="STARTED", options={"waves": "1,100%", "approve": True})
    before = edgefleet.group_status("g")
    with pytest.raises(InvalidInput, match="--no-approve"):
        edgefleet.update_group("g", to="1.1.0")
    assert edgefleet.group_status("g") == before
    status = edgefleet.update_group("g", to="1.1.0", approve=False)  # turned off: it runs
    assert (status["state"], status["options"]["approve"]) == ("UPDATING", False)
    assert fleet[-1] == ("g", "hello", "1.1.0")


@pytest.mark.parametrize("state", ["DEPLOYING", "UPDATING", "STARTED", "PARTIAL", "HALTED",
                                   "PAUSED", "STOPPED"])
def test_approving_a_group_that_waits_for_nothing_is_refused(
        fleet: list[tuple[str, ...]], state: str) -> None:
    edgefleet.create_group("g", "hello", edges=["e1"], version="1.0.0")
    _set("g", state=state, flow_run_id="0b5e1f3c-0000-4000-8000-000000000000")
    before = edgefleet.group_status("g")
    with pytest.raises(InvalidTransition, match="waits for no approval") as info:
        edgefleet.approve_group("g")
    assert state in str(info.value) and "AWAITING_APPROVAL" in str(info.value)
    assert edgefleet.group_status("g") == before


def test_unknown_groups_are_refused(fleet: list[tuple[str, ...]]) -> None:
    for command in (edgefleet.approve_group, edgefleet.pause_group, edgefleet.resume_group):
        with pytest.raises(NotFound, match="nope"):
            command("nope")


def test_pause_holds_only_a_rolling_group_and_resume_only_a_paused_one(
        fleet: list[tuple[str, ...]]) -> None:
    edgefleet.create_group("g", "hello", edges=["e1"], version="1.0.0")
    for state in ("STARTED", "AWAITING_APPROVAL", "HALTED"):
        _set("g", state=state)
        before = edgefleet.group_status("g")
        with pytest.raises(InvalidTransition, match="nothing to pause"):
            edgefleet.pause_group("g")
        with pytest.raises(InvalidTransition, match="is not paused"):
            edgefleet.resume_group("g")
        assert edgefleet.group_status("g") == before
    _set("g", state="UPDATING")
    paused = edgefleet.pause_group("g")  # the run sees it before its next edges
    assert paused["state"] == "PAUSED"
    assert paused_from(paused["reason"]) is GroupState.UPDATING
    with pytest.raises(InvalidTransition, match="under way and waits for `edgefleet group "
                                                "resume g`"):
        edgefleet.update_group("g", to="1.1.0")
    with pytest.raises(InvalidTransition, match="under way"):
        edgefleet.delete_group("g")
    assert edgefleet.group_status("g")["state"] == "PAUSED"


def test_the_cli_refuses_in_one_line(fleet: list[tuple[str, ...]]) -> None:
    from typer.testing import CliRunner

    from edgefleet.cli.main import app

    runner = CliRunner()
    edgefleet.create_group("g", "hello", edges=["e1"], version="1.0.0")
    _set("g", state="STARTED")
    idle = runner.invoke(app, ["group", "approve", "g"])
    assert idle.exit_code == 1 and "waits for no approval" in idle.output, idle.output
    unknown = runner.invoke(app, ["group", "approve", "nope"])
    assert unknown.exit_code == 1 and "nope" in unknown.output
    gate = runner.invoke(app, ["group", "create", "h", "hello", "--edge", "e2", "--waves",
                               "1,100%", "--approve"])
    assert gate.exit_code == 1 and "edgefleet up" in gate.output, gate.output
    assert [g["name"] for g in edgefleet.list_groups()] == ["g"]
    _set("g", state="AWAITING_APPROVAL", wave=1, waves=2)
    shown = runner.invoke(app, ["group", "status", "g"])
    assert "awaiting approval after wave 1/2: run `edgefleet group approve g`" in shown.stdout
