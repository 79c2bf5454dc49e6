"""Deployment groups on a 4-edge lab, with `edgefleet up` serving the flows: a selector
launch reaches exactly the matching edges and newly matching ones join (on `group
reconcile`, and on the served sweep with no command); an edge whose engine is killed before
an update is deferred (group PARTIAL) and updated with no command once it is back; with
``--prune`` an edge that stops matching leaves; `group stop` stops every member and `group
update` launches the group again.

The session lab has 2 edges; this module grows it to 4 (lab-3, lab-4, heartbeat 2 s so a
dead engine is OFFLINE within seconds) and gives them back when it ends, so every other
module still sees lab-1 and lab-2 only.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    FlowRunFilter,
    FlowRunFilterId,
    FlowRunFilterName,
    FlowRunFilterStartTime,
)
from prefect.settings import PREFECT_API_URL, temporary_settings

import edgefleet
from edgefleet.lab import LabStatus, lab_shrink, lab_status, lab_up
from edgefleet.record_views import edge_status
from edgefleet.settings import get_settings
from tests.lab_helpers import containers_of, unique

pytestmark = pytest.mark.lab
EXTRA = ("lab-3", "lab-4")
ALL = ("lab-1", "lab-2", *EXTRA)


@contextlib.contextmanager
def _local_runs() -> Iterator[None]:
    """Flows of this process run here (a clean-up must not queue behind served runs)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("EDGEFLEET_RUN_MODE", "local")
        get_settings.cache_clear()
        try:
            yield
        finally:
            patch.undo()
            get_settings.cache_clear()


def _forget_what_runs_on(names: tuple[str, ...]) -> None:
    """Groups and deployments a failed test left on these edges (their records keep an
    edge from being forgotten)."""
    with _local_runs():
        for group in edgefleet.list_groups():
            with contextlib.suppress(edgefleet.EdgefleetError):
                if any(e["edge"] in names for e in edgefleet.group_status(group["name"])["edges"]):
                    edgefleet.delete_group(group["name"], force=True)
        for dep in edgefleet.list_deployments():
            if dep["edge"] in names:
                with contextlib.suppress(edgefleet.EdgefleetError):
                    edgefleet.delete_deployment(dep["id"], force=True)


@pytest.fixture(scope="module")
def fleet(lab: LabStatus, edges: dict[str, Any], prefect_api: str) -> Iterator[LabStatus]:
    """The session lab grown to 4 edges for this module, shrunk back to 2 at its end."""
    status = lab_up(edges=4, swarm_edges=1)
    try:
        yield status
    finally:
        _forget_what_runs_on(EXTRA)
        lab_shrink(2)  # their containers go with them
    assert not [e.name for e in edgefleet.list_edges() if e.name in EXTRA]


def wait_for(predicate: Callable[[], Any], timeout: float, what: str, every: float = 1) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def _status(name: str) -> str:
    """ONLINE or OFFLINE by the heartbeat rule now (what a group's plan goes by)."""
    return edge_status(edgefleet.show_edge(name))


def _online(names: tuple[str, ...] | list[str]) -> None:
    """The edges are contacted now and ONLINE by the heartbeat rule. The served sweep does
    the same, but on a busy machine it can be late by more than an edge's heartbeat rule
    allows: this sweep (in this process, the same flow) keeps a plan from deferring them."""
    def all_online() -> bool:
        edgefleet.collect_telemetry(list(names))
        return all(_status(n) == "ONLINE" for n in names)

    wait_for(all_online, 60, f"{', '.join(names)} ONLINE")


def _members(group: str) -> dict[str, dict[str, Any]]:
    return {e["edge"]: e for e in edgefleet.group_status(group)["edges"]}


def _container_ids(deployment_id: str) -> list[str]:
    return [c["container_id"] for c in edgefleet.deployment_status(deployment_id)["containers"]]


def _run_names(api_url: str, names: list[str], since: datetime) -> set[str]:
    """Which of these flow-run names the Prefect server has runs of, started since."""
    with temporary_settings({PREFECT_API_URL: api_url}), get_client(sync_client=True) as client:
        runs = client.read_flow_runs(flow_run_filter=FlowRunFilter(
            name=FlowRunFilterName(any_=names),
            start_time=FlowRunFilterStartTime(after_=since)))
    return {run.name for run in runs}


def _runs_since(api_url: str, since: datetime) -> str:
    """Every flow run started or waiting since ``since`` (name, state, message), and how
    many runs are RUNNING or PAUSED now: what a timed-out wait shows to tell why."""
    with temporary_settings({PREFECT_API_URL: api_url}), get_client(sync_client=True) as client:
        runs = client.read_flow_runs(flow_run_filter=FlowRunFilter(
            expected_start_time={"after_": since}), limit=200)
        busy = client.read_flow_runs(flow_run_filter=FlowRunFilter(
            state={"type": {"any_": ["RUNNING", "PAUSED"]}}), limit=200)
    lines = [f"{r.name}: {r.state_name} {((r.state and r.state.message) or '')[:160]}"
             for r in sorted(runs, key=lambda r: r.expected_start_time or since)]
    return ("\n".join(lines) + f"\nrunning or paused now: {len(busy)}: "
            + ", ".join(f"{r.name} ({r.state_name})" for r in busy))


def _pre_pulls_and_updates(api_url: str, app: str, group: str, version: str,
                           since: datetime) -> tuple[dict[str, datetime], dict[str, datetime]]:
    """When each edge's pull in the wave run ended, and when each member's update started."""
    with temporary_settings({PREFECT_API_URL: api_url}), get_client(sync_client=True) as client:
        (wave,) = client.read_flow_runs(flow_run_filter=FlowRunFilter(
            name=FlowRunFilterName(any_=[f"rollout {group} {app} {version} wave 1/1"]),
            start_time=FlowRunFilterStartTime(after_=since)))
        tasks = client.read_task_runs(flow_run_filter=FlowRunFilter(
            id=FlowRunFilterId(any_=[wave.id])))
        updates = client.read_flow_runs(flow_run_filter=FlowRunFilter(
            name=FlowRunFilterName(any_=[f"update {app} {version} → {e}" for e in ALL]),
            start_time=FlowRunFilterStartTime(after_=since)))
    pulls = {t.name.rsplit(" on ", 1)[1]: t.end_time for t in tasks
             if t.name.startswith("pull ") and t.end_time is not None}
    starts = {r.name.rsplit("→ ", 1)[1]: r.start_time for r in updates
              if r.start_time is not None}
    return pulls, starts


def _app(lab: LabStatus) -> str:
    app = unique("fleet")
    image = f"{lab.registry}/edgefleet/hello"
    edgefleet.create_application(app, "1.0.0", image=f"{image}:1.0.0", ports=["8080"])
    edgefleet.add_version(app, "1.1.0", image=f"{image}:1.1.0", ports=["8080"])
    for version in ("1.0.0", "1.1.0"):
        edgefleet.publish_version(app, version)
    return app


def _clean_up(group: str, key: str) -> None:
    with _local_runs():
        with contextlib.suppress(edgefleet.EdgefleetError):
            edgefleet.delete_group(group, force=True)
        for name in ALL:
            edgefleet.set_edge(name, unlabel=[key])


@pytest.mark.usefixtures("quick_local_runs")
def test_a_selector_launch_reaches_exactly_the_matching_edges_and_new_ones_join(
        fleet: LabStatus, prefect_api: str) -> None:
    app, group, key = _app(fleet), unique("gjoin"), unique("gk")
    try:
        edgefleet.set_edge("lab-1", labels=[f"{key}=yes"])
        edgefleet.set_edge("lab-3", labels=[f"{key}=yes"])
        edgefleet.set_edge("lab-2", labels=[f"{key}=no"])
        _online(ALL)
        launched = edgefleet.create_group(group, app, selector=f"{key}=yes", version="1.0.0")
        assert launched["state"] == "STARTED", launched
        members = _members(group)
        assert {e: (m["version"], m["state"]) for e, m in members.items()} == {
            "lab-1": ("1.0.0", "STARTED"), "lab-3": ("1.0.0", "STARTED")}
        assert sorted(d["edge"] for d in edgefleet.list_deployments()
                      if d["application"] == app) == ["lab-1", "lab-3"]
        before = {e: _container_ids(m["deployment_id"]) for e, m in members.items()}

        # a newly labelled edge joins on `group reconcile`; the others are not touched
        edgefleet.set_edge("lab-4", labels=[f"{key}=yes"])
        joined = edgefleet.reconcile_group(group)
        assert [(r["edge"], r["action"]) for r in joined["plan"]] == [
            ("lab-1", "keep"), ("lab-3", "keep"), ("lab-4", "add")], joined["plan"]
        assert joined["state"] == "STARTED", joined
        members = _members(group)
        assert sorted(members) == ["lab-1", "lab-3", "lab-4"]
        assert members["lab-4"]["state"] == "STARTED"
        assert {e: _container_ids(members[e]["deployment_id"]) for e in before} == before

        # without --prune an edge that stops matching stays, and the plan says why
        edgefleet.set_edge("lab-3", labels=[f"{key}=no"])
        kept = edgefleet.reconcile_group(group)
        assert {r["edge"]: r["cause"] for r in kept["plan"]}["lab-3"] == (
            "no longer matches the selector; kept because --prune is off")
        assert kept["state"] == "STARTED" and _members(group)["lab-3"]["state"] == "STARTED"

        # the served sweep: an edge that starts to match joins with no command
        edgefleet.set_edge("lab-2", labels=[f"{key}=yes"])
        every = get_settings().group_reconcile_seconds

        def joined_by_the_sweep() -> bool:
            _online(["lab-2"])  # so that the sweep does not find it deferred on a busy machine
            return (_members(group).get("lab-2") or {}).get("state") == "STARTED"

        wait_for(joined_by_the_sweep, every + 90, "lab-2 to join on the served sweep", every=3)
        wait_for(lambda: edgefleet.group_status(group)["state"] == "STARTED", 30,
                 "the group to be STARTED again")
        assert {e: _container_ids(members[e]["deployment_id"]) for e in before} == before

        # an update of the three members in one wave (lab-3, kept outside the group, is not
        # updated): the wave pulls on each member's edge before any member's update starts
        since = datetime.now(UTC)
        _online(ALL)
        updated = edgefleet.update_group(group, to="1.1.0")
        assert updated["state"] == "STARTED", updated
        pulls, starts = _pre_pulls_and_updates(prefect_api, app, group, "1.1.0", since)
        assert sorted(pulls) == ["lab-1", "lab-2", "lab-4"] == sorted(starts), (pulls, starts)
        assert max(pulls.values()) <= min(starts.values()), (pulls, starts)
    finally:
        _clean_up(group, key)
    assert [d for d in edgefleet.list_deployments() if d["application"] == app] == []


@pytest.mark.usefixtures("quick_local_runs")
def test_an_edge_killed_before_an_update_is_deferred_then_updated_when_back(
        fleet: LabStatus, prefect_api: str) -> None:
    app, group, key = _app(fleet), unique("goff"), unique("gk")
    victim = fleet.edge("lab-4")
    assert victim.pid
    try:
        edgefleet.set_edge("lab-4", telemetry_interval=3, heartbeat_interval=2)  # seen soon
        for name in EXTRA:
            edgefleet.set_edge(name, labels=[f"{key}=on"])
        _online(EXTRA)
        launched = edgefleet.create_group(group, app, selector=key, version="1.0.0")
        assert launched["state"] == "STARTED", launched

        os.kill(victim.pid, signal.SIGKILL)
        wait_for(lambda: _status("lab-4") == "OFFLINE", 90, "lab-4 OFFLINE", every=0.5)
        _online(["lab-3"])
        after = edgefleet.update_group(group, to="1.1.0")
        assert after["state"] == "PARTIAL", after
        assert "defer lab-4" in after["reason"], after["reason"]
        rows = _members(group)
        assert (rows["lab-3"]["version"], rows["lab-3"]["state"]) == ("1.1.0", "STARTED")
        assert rows["lab-4"]["version"] == "1.0.0"  # never attempted, never failed
        assert rows["lab-4"]["last_error"] is None

        back = datetime.now(UTC)
        lab_up(edges=4, swarm_edges=1)  # its dockerd started again
        try:
            try:
                wait_for(lambda: lab_status().edge("lab-4").answering, 60,
                         "lab-4's dockerd to answer")
            except AssertionError:  # seen once in a full run (the lab, not the product):
                lab_up(edges=4, swarm_edges=1)  # it restarts an engine that does not answer
                wait_for(lambda: lab_status().edge("lab-4").answering, 60,
                         "lab-4's dockerd to answer after a second start")
        except AssertionError as exc:  # what the lab saw, to tell why
            from edgefleet.lab.daemons import log_tail
            from edgefleet.lab.state import load_state

            state = load_state(get_settings().lab_path.expanduser().resolve())
            edge = state.edge("lab-4") if state else None
            raise AssertionError(f"{exc}: {lab_status().edge('lab-4')}; its log ends:\n"
                                 f"{log_tail(edge.log, 40) if edge else '(no state)'}") from exc
        # a sweep marks it ONLINE (the served one; this process's when that one is late on a
        # busy machine), its online event runs reconcile-groups for it: no group command
        def updated() -> bool:
            if _status("lab-4") != "ONLINE":
                edgefleet.collect_telemetry(["lab-4"])
            member = _members(group)["lab-4"]
            return bool(member["version"] == "1.1.0" and member["state"] == "STARTED")

        try:
            wait_for(updated, 180, "lab-4 updated with no command", every=2)
        except AssertionError as exc:  # what the group, its members and Prefect did, to tell why
            raise AssertionError(
                f"{exc}\ngroup: {edgefleet.group_status(group)}\nlab-4: "
                f"{edgefleet.show_edge('lab-4')}\nflow runs since lab-4 came back:\n"
                f"{_runs_since(prefect_api, back)}") from exc
        done = wait_for(lambda: (s := edgefleet.group_status(group))["state"] == "STARTED"
                        and s, 60, "the group STARTED")
        assert done["counts"] == {"STARTED": 2}
        # a reconcile-groups run did it: the online event's for lab-4, or the served sweep's
        # (events are best effort, the sweep is their safety net: seen once in 4 runs here,
        # the event's clean-up-edge run came and its reconcile-groups run did not)
        names = ["reconcile groups on lab-4", "reconcile groups", f"update {app} 1.1.0 → lab-4"]
        ran = _run_names(prefect_api, names, back)
        assert f"update {app} 1.1.0 → lab-4" in ran and len(ran) >= 2, (
            f"{ran}\n{_runs_since(prefect_api, back)}")
    finally:
        with contextlib.suppress(Exception):
            lab_up(edges=4, swarm_edges=1)
        edgefleet.set_edge("lab-4", telemetry_interval=60, heartbeat_interval=20)
        _clean_up(group, key)


@pytest.mark.usefixtures("quick_local_runs")
def test_with_prune_an_edge_that_stops_matching_leaves_and_a_group_stops_and_relaunches(
        fleet: LabStatus) -> None:
    app, group, key = _app(fleet), unique("gprune"), unique("gk")
    try:
        for name in EXTRA:
            edgefleet.set_edge(name, labels=[f"{key}=on"])
        _online(EXTRA)
        launched = edgefleet.create_group(group, app, selector=key, version="1.0.0",
                                          prune=True)
        assert launched["state"] == "STARTED", launched
        members = _members(group)
        leaving = members["lab-4"]["deployment_id"]
        assert containers_of(fleet.edge("lab-4").connection, leaving)

        edgefleet.set_edge("lab-4", unlabel=[key])
        pruned = edgefleet.reconcile_group(group)
        assert [(r["edge"], r["action"], r["cause"]) for r in pruned["plan"]] == [
            ("lab-3", "keep", "on 1.0.0, STARTED"),
            ("lab-4", "remove", "no longer matches the selector (--prune)")]
        assert pruned["state"] == "STARTED", pruned
        assert sorted(_members(group)) == ["lab-3"]
        assert leaving not in {d["id"] for d in edgefleet.list_deployments()}
        assert containers_of(fleet.edge("lab-4").connection, leaving) == []

        # stop: every member stopped, its containers gone; update launches it again
        staying = members["lab-3"]["deployment_id"]
        stopped = edgefleet.stop_group(group)
        assert stopped["state"] == "STOPPED", stopped
        assert stopped["reason"] == "stopped: every member is stopped"
        assert _members(group)["lab-3"]["state"] == "STOPPED"
        assert containers_of(fleet.edge("lab-3").connection, staying) == []
        with pytest.raises(edgefleet.EdgefleetError, match="is STOPPED"):
            edgefleet.reconcile_group(group)
        again = edgefleet.update_group(group)  # launched again, on the newest published
        assert (again["state"], again["version"]) == ("STARTED", "1.1.0"), again
        relaunched = _members(group)["lab-3"]
        assert (relaunched["state"], relaunched["version"], relaunched["deployment_id"]) == (
            "STARTED", "1.1.0", staying)
        assert containers_of(fleet.edge("lab-3").connection, staying)
    finally:
        _clean_up(group, key)
