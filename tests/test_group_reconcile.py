"""Group reconcile, prune and stop without an engine: which work a reconcile nobody asked for
runs (pure, as text), and the records side of `group reconcile`, `group stop` and a relaunch
(rollouts and stops recorded instead of run; the lab tests run them for real)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy import update
from sqlmodel import col, select
from typer.testing import CliRunner

import edgefleet
from edgefleet.api import groups as api_groups
from edgefleet.db import session_scope
from edgefleet.errors import AlreadyExists, InvalidTransition, StateConflict
from edgefleet.group_plan import (
    EdgeAction,
    GroupEdge,
    GroupMember,
    GroupTarget,
    MemberStop,
    automatic_actions,
    automatic_stops,
    plan_group,
    plan_stop,
)
from edgefleet.models.groups import GroupState
from edgefleet.models.records import Deployment, DeploymentGroup, Edge, utcnow
from edgefleet.models.states import Availability, DeploymentState
from edgefleet.tasks.groups import begin_group_reconcile, delete_group_member, find_group_work

S = DeploymentState
ON, OFF = Availability.ONLINE, Availability.OFFLINE
TARGET = GroupTarget(application="hello", version="1.1.0", spec_hash="h2")
IMAGE = "127.0.0.1:5000/edgefleet/hello"


def edge(name: str, availability: Availability | None = ON, *, matches: bool = True
         ) -> GroupEdge:
    return GroupEdge(name=name, availability=availability, matches=matches)


def member(name: str, version: str = "1.1.0", state: S = S.STARTED) -> GroupMember:
    return GroupMember(edge=name, deployment_id=f"dep-{name}", version=version, state=state,
                       spec_hash="h2")


def lines(actions: list[EdgeAction] | list[MemberStop]) -> list[str]:
    return [f"{a.action} {a.edge}" if isinstance(a, EdgeAction) else a.render()
            for a in actions]


# ------------------------------------------------------------------ pure


def test_the_sweep_runs_new_work_and_leaves_failed_members_to_an_operator() -> None:
    plan = plan_group(
        TARGET,
        [edge("lab-1"), edge("lab-2"), edge("lab-3"), edge("lab-4", OFF), edge("lab-5"),
         edge("lab-6", matches=False)],
        [member("lab-1", "1.0.0"), member("lab-2", "1.0.0"), member("lab-4", "1.0.0"),
         member("lab-5"), member("lab-6")],
        prune=True)
    failed = {"dep-lab-2"}  # its last run left an error (rolled back, say)
    # the sweep: a member never tried (deferred before), a new edge, a removal; not lab-2
    assert lines(automatic_actions(plan, failed=failed)) == [
        "update lab-1", "add lab-3", "remove lab-6"]
    # an edge back ONLINE: everything on it, a failed member too (one more try per return)
    assert lines(automatic_actions(plan, edge="lab-2", failed=failed)) == ["update lab-2"]
    assert lines(automatic_actions(plan, edge="lab-3", failed=failed)) == ["add lab-3"]
    assert automatic_actions(plan, edge="lab-4") == []  # still away: deferred again
    assert automatic_actions(plan, edge="lab-5") == []  # on the target


def test_without_prune_the_sweep_leaves_members_that_no_longer_match() -> None:
    plan = plan_group(TARGET, [edge("lab-1", matches=False)], [member("lab-1", "1.0.0")],
                      prune=False)
    assert plan.render() == ("keep   lab-1: no longer matches the selector; kept because "
                             "--prune is off")
    assert automatic_actions(plan) == automatic_actions(plan, edge="lab-1") == []


def test_a_stop_plan_stops_what_runs_and_defers_members_on_edges_away() -> None:
    stops = plan_stop(
        [edge("lab-1"), edge("lab-2", OFF), edge("lab-3"), edge("lab-4"), edge("lab-5"),
         edge("lab-7", None)],
        [member("lab-1"), member("lab-2"), member("lab-3", state=S.STOPPED),
         member("lab-4", state=S.UPDATING), member("lab-5", state=S.ERROR), member("lab-6"),
         member("lab-7", state=S.CREATED)])
    assert lines(list(stops)) == [
        "stop   lab-1: deployment STARTED",
        "defer  lab-2: OFFLINE; then stop (deployment STARTED)",
        "defer  lab-4: deployment UPDATING, another run is at work on it; then stop "
        "(deployment UPDATING)",
        "stop   lab-5: deployment ERROR",
        "defer  lab-6: edge not known (availability UNKNOWN); then stop (deployment STARTED)",
    ]
    failed = {"dep-lab-5"}
    assert [s.edge for s in automatic_stops(stops, failed=failed)] == ["lab-1"]
    assert [s.edge for s in automatic_stops(stops, edge="lab-5", failed=failed)] == ["lab-5"]
    assert automatic_stops(stops, edge="lab-2") == []


# ------------------------------------------------------------------ records


@pytest.fixture
def fleet(empty_records: str, monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, ...]]:
    """hello 1.0.0 published on e1 (site=a) and e2 (site=b); rollouts and stops recorded
    instead of run."""
    runs: list[tuple[str, ...]] = []
    monkeypatch.setattr(api_groups, "_run", lambda name, app, version, **_kw:
                        runs.append(("rollout", name, version)))
    monkeypatch.setattr(api_groups, "_run_stop", lambda name, **_kw:
                        runs.append(("stop", name)))
    edgefleet.create_application("hello", "1.0.0", image=f"{IMAGE}:1.0.0", ports=["8080"])
    edgefleet.publish_version("hello", "1.0.0")
    edgefleet.add_edge("e1", "tcp://127.0.0.1:1", check=False, labels=["site=a"])
    edgefleet.add_edge("e2", "tcp://127.0.0.1:2", check=False, labels=["site=b"])
    return runs


def _online(*names: str) -> None:
    with session_scope() as session:
        for row in session.exec(select(Edge).where(col(Edge.name).in_(names))).all():
            row.last_contact = utcnow()
            session.add(row)


def _group_state(state: str) -> None:
    with session_scope() as session:
        session.exec(update(DeploymentGroup).where(  # type: ignore[call-overload]
            col(DeploymentGroup.name) == "g").values(state=state))


def _member(dep_id: str, state: str, error: str | None = None) -> None:
    with session_scope() as session:
        session.exec(update(Deployment).where(  # type: ignore[call-overload]
            col(Deployment.id) == dep_id).values(state=state, last_error=error))


def _started_group(fleet: list[tuple[str, ...]]) -> str:
    """Group g on site=a (e1), as a finished rollout leaves it: member STARTED, e1 ONLINE."""
    status = edgefleet.create_group("g", "hello", selector="site=a")
    assert fleet == [("rollout", "g", "1.0.0")]
    dep_id = str(status["edges"][0]["deployment_id"])
    _member(dep_id, "STARTED")
    _group_state("STARTED")
    _online("e1")
    return dep_id


def test_reconcile_runs_only_a_plan_with_work_and_a_newly_matching_edge_joins(
        fleet: list[tuple[str, ...]]) -> None:
    _started_group(fleet)
    same = edgefleet.reconcile_group("g")
    assert [(r["edge"], r["action"]) for r in same["plan"]] == [("e1", "keep")]
    assert same["state"] == "STARTED" and len(fleet) == 1  # nothing to do: no rollout
    edgefleet.set_edge("e2", labels=["site=a"])
    away = edgefleet.reconcile_group("g")  # e2 never contacted: deferred
    assert [(r["edge"], r["action"]) for r in away["plan"]] == [("e1", "keep"), ("e2", "defer")]
    # nothing to change, but the group is PARTIAL now: a rollout of nothing says so
    assert away["state"] == "UPDATING" and len(fleet) == 2
    _group_state("PARTIAL")
    again = edgefleet.reconcile_group("g")
    assert again["state"] == "PARTIAL" and len(fleet) == 2  # and once said, nothing more
    _online("e2")
    joined = edgefleet.reconcile_group("g")
    assert [(r["edge"], r["action"], r["cause"]) for r in joined["plan"]] == [
        ("e1", "keep", "on 1.0.0, STARTED"),
        ("e2", "add", "matches the selector, no deployment yet")]
    assert joined["state"] == "UPDATING" and len(fleet) == 3
    with pytest.raises(InvalidTransition, match="under way"):
        edgefleet.reconcile_group("g")
    _group_state("STOPPED")
    with pytest.raises(InvalidTransition, match="is STOPPED.*group update g"):
        edgefleet.reconcile_group("g")
    assert edgefleet.group_status("g")["state"] == "STOPPED" and len(fleet) == 3


def test_work_nobody_asked_for_and_one_reconcile_per_group(
        fleet: list[tuple[str, ...]]) -> None:
    dep_id = _started_group(fleet)
    edgefleet.set_edge("e2", labels=["site=a"])
    (away,) = find_group_work.fn()  # e2 is not ONLINE: deferred, the group is PARTIAL
    assert (away.edges, away.cause) == ([], "STARTED, yet its members say PARTIAL: 1 of 2 "
                                        "edges on 1.0.0 and STARTED; defer e2")
    _group_state("PARTIAL")
    assert find_group_work.fn() == []
    _online("e2")
    (work,) = find_group_work.fn()
    assert (work.name, work.state, work.edges) == ("g", GroupState.PARTIAL, ["e2"])
    assert work.cause == "add    e2: matches the selector, no deployment yet"
    assert find_group_work.fn("e1") == [] and [w.name for w in find_group_work.fn("e2")] == ["g"]
    _group_state("HALTED")  # a halted group waits for an operator
    assert find_group_work.fn() == find_group_work.fn("e2") == []
    _group_state("PARTIAL")
    assert begin_group_reconcile.fn("g", GroupState.PARTIAL) is True
    assert edgefleet.group_status("g")["state"] == "UPDATING"
    assert begin_group_reconcile.fn("g", GroupState.PARTIAL) is False  # a second trigger
    # a member whose last run failed: not on the sweep, once more when its edge is back
    edgefleet.set_edge("e2", labels=["site=b"])
    with session_scope() as session:
        session.exec(update(DeploymentGroup).where(  # type: ignore[call-overload]
            col(DeploymentGroup.name) == "g").values(state="PARTIAL", version="1.0.0"))
    _member(dep_id, "ERROR", error="deploy failed: boom")
    assert find_group_work.fn() == []
    assert [w.edges for w in find_group_work.fn("e1")] == [["e1"]]


def test_a_state_its_members_no_longer_say_is_summed_up_again(
        fleet: list[tuple[str, ...]]) -> None:
    _started_group(fleet)
    _group_state("PARTIAL")  # as if its deferred member had been brought up by hand
    (work,) = find_group_work.fn()
    assert (work.edges, work.cause) == ([], "PARTIAL, yet its members say STARTED: 1 edge on "
                                        "1.0.0, STARTED")
    assert edgefleet.reconcile_group("g")["state"] == "UPDATING"  # a rollout of nothing
    assert fleet[-1] == ("rollout", "g", "1.0.0")
    _group_state("STARTED")
    assert find_group_work.fn() == []


def test_stop_then_relaunch(fleet: list[tuple[str, ...]]) -> None:
    edgefleet.create_group("g", "hello", selector="site=a")
    with pytest.raises(InvalidTransition, match="at work.*group pause g"):
        edgefleet.stop_group("g")  # DEPLOYING
    assert edgefleet.group_status("g")["state"] == "DEPLOYING"
    dep_id = _started_group_again()
    stopped = edgefleet.stop_group("g")
    assert stopped["state"] == "STOPPED" and fleet[-1] == ("stop", "g")
    with pytest.raises(InvalidTransition, match="cannot stop a group in state STOPPED"):
        edgefleet.stop_group("g")
    # its member still runs (the stop is recorded, not run): the sweep's work, or on return
    (work,) = find_group_work.fn()
    assert (work.state, work.members, work.edges) == (GroupState.STOPPED, [dep_id], [])
    assert work.cause == "stop   e1: deployment STARTED"
    with pytest.raises(AlreadyExists, match="STOPPED: launch it again with `edgefleet group "
                       "update g`"):
        edgefleet.create_group("g", "hello", selector="site=b")
    _member(dep_id, "STOPPED")
    assert find_group_work.fn() == []
    again = edgefleet.update_group("g")
    assert again["state"] == "DEPLOYING" and fleet[-1] == ("rollout", "g", "1.0.0")


@pytest.mark.parametrize("waiting", ["AWAITING_APPROVAL", "PAUSED"])
def test_a_rollout_that_waits_is_stopped_with_its_group(
        fleet: list[tuple[str, ...]], waiting: str) -> None:
    """No run is on record here (the rollout is recorded, not run): nothing to wake."""
    _started_group(fleet)
    _group_state(waiting)
    stopped = edgefleet.stop_group("g")
    assert (stopped["state"], stopped["reason"]) == ("STOPPED",
                                                     "stopped; its members are being stopped")
    assert fleet[-1] == ("stop", "g")


def _started_group_again() -> str:
    status = edgefleet.group_status("g")
    dep_id = str(status["edges"][0]["deployment_id"])
    _member(dep_id, "STARTED")
    _group_state("STARTED")
    _online("e1")
    return dep_id


def test_a_member_that_leaves_is_deleted_only_once_stopped(
        fleet: list[tuple[str, ...]]) -> None:
    dep_id = _started_group(fleet)
    with pytest.raises(StateConflict, match="STARTED"):
        delete_group_member.fn(dep_id)
    assert [e["deployment_id"] for e in edgefleet.group_status("g")["edges"]] == [dep_id]
    _member(dep_id, "STOPPED")
    delete_group_member.fn(dep_id)
    assert edgefleet.list_deployments() == []


def test_the_cli_reconciles_and_stops(fleet: list[tuple[str, ...]]) -> None:
    from edgefleet.cli.main import app

    _started_group(fleet)
    runner = CliRunner()
    shown = runner.invoke(app, ["group", "reconcile", "g"])
    assert shown.exit_code == 0, shown.output
    assert "keep   e1: on 1.0.0, STARTED" in shown.stdout
    data: dict[str, Any] = json.loads(runner.invoke(app, ["group", "stop", "g", "--json"]).stdout)
    assert data["state"] == "STOPPED"
    refused = runner.invoke(app, ["group", "reconcile", "g"])
    assert refused.exit_code == 1 and "is STOPPED" in refused.output


def test_reconcile_groups_is_served_on_the_online_event_and_an_interval() -> None:
    from edgefleet import jobs
    from edgefleet.deployments.work_pool import build_deployments
    from edgefleet.settings import get_settings

    built = {d.name: d for d in build_deployments()}
    (trigger,) = built["reconcile-groups"].triggers
    assert trigger.expect == {"edgefleet.edge.online"}
    assert trigger.parameters == {"edge": "{{ event.payload.edge }}",
                                  "docker_host": "{{ event.payload.docker_host }}"}
    assert [s.schedule.interval.total_seconds() for s in built["reconcile-groups"].schedules] \
        == [get_settings().group_reconcile_seconds]
    for name in ("reconcile-groups", "stop-group"):
        assert name in built and jobs.load_flow(name).name == name
