"""The approval gate and pause/resume on the real lab, with `edgefleet up` serving the
rollout (its run pauses in the served process): waves ``1,100%`` with ``--approve`` update
exactly the first wave's edge and wait (AWAITING_APPROVAL, the Prefect run PAUSED with a
form); `group approve` completes it; resuming the paused run through the Prefect API with
input does too; a rejection halts it; a stop ends a waiting rollout; a paused rollout goes
on when resumed."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Any
from uuid import UUID

import pytest
from prefect.client.orchestration import get_client
from prefect.events.filters import EventFilter, EventNameFilter, EventResourceFilter
from prefect.exceptions import ObjectNotFound
from prefect.settings import PREFECT_API_URL, temporary_settings

import edgefleet
from edgefleet.settings import get_settings
from tests.lab_helpers import containers_of, unique, wait_online

pytestmark = [pytest.mark.lab, pytest.mark.usefixtures("patient_edges")]

ROLLOUT_SECONDS = 300  # a busy server may start a served run minutes after it was submitted
PATIENT_HEARTBEAT = 3600  # an edge stays ONLINE 2 x this + 10 s after a contact


@pytest.fixture
def patient_edges(lab: Any, prefect_api: str) -> Iterator[None]:
    """The lab's edges stay ONLINE for 2 h after a contact: on a busy machine a served
    run can start minutes after it was submitted, and an edge deferred as OFFLINE is the
    subject of another test, not of the gate."""
    names = [e.name for e in lab.edges]
    before = {name: edgefleet.show_edge(name).heartbeat_interval for name in names}
    for name in names:
        edgefleet.set_edge(name, heartbeat_interval=PATIENT_HEARTBEAT)
    try:
        yield
    finally:
        for name in names:
            edgefleet.set_edge(name, heartbeat_interval=before[name])


def _run(api_url: str, flow_run_id: str) -> Any:
    with temporary_settings({PREFECT_API_URL: api_url}), get_client(sync_client=True) as client:
        return client.read_flow_run(UUID(flow_run_id))


def _slots(api_url: str, group: str) -> int | None:
    """Slots taken of the group's Prefect concurrency limit (one rollout at a time); None
    when it does not exist."""
    with temporary_settings({PREFECT_API_URL: api_url}), get_client(sync_client=True) as client:
        try:
            return client.read_global_concurrency_limit_by_name(
                f"edgefleet-group-{group}").active_slots
        except ObjectNotFound:
            return None


def _until(what: str, check: Any, timeout: float = ROLLOUT_SECONDS) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(1)
    pytest.fail(f"not within {timeout:.0f} s: {what}")


def _gate_events(api_url: str, group: str) -> list[Any]:
    """The group's ``edgefleet.group.awaiting-approval`` events the Prefect server holds."""
    with temporary_settings({PREFECT_API_URL: api_url}), get_client(sync_client=True) as client:
        page = client.read_events(filter=EventFilter(
            event=EventNameFilter(name=["edgefleet.group.awaiting-approval"]),
            resource=EventResourceFilter(id=[f"edgefleet.group.{group}"])), limit=10)
    return list(page.events)


def _members(status: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {e["edge"]: (e["version"], e["state"]) for e in status["edges"]}


def _containers(edges: dict[str, Any], members: dict[str, str]) -> dict[str, list[str]]:
    return {edge: sorted(c.id for c in containers_of(edges[edge].connection, dep))
            for edge, dep in members.items()}


def _launch(group: str, app: str, key: str, monkeypatch: pytest.MonkeyPatch
            ) -> dict[str, str]:
    """The group on lab-1 and lab-2 at 1.0.0, launched in this process (the gate is what
    is served; a busy serving process must not defer the launch): edge → member."""
    with monkeypatch.context() as local:
        local.setenv("EDGEFLEET_RUN_MODE", "local")
        get_settings.cache_clear()
        wait_online(["lab-1", "lab-2"])
        launched = edgefleet.create_group(group, app, selector=key, version="1.0.0",
                                          waves="1,100%")
    get_settings.cache_clear()
    assert launched["state"] == "STARTED", launched
    return {e["edge"]: e["deployment_id"] for e in launched["edges"]}


def _clean_up(group: str, key: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGEFLEET_RUN_MODE", "local")  # the clean-up's stops: no queue
    get_settings.cache_clear()
    try:
        with contextlib.suppress(edgefleet.EdgefleetError):
            edgefleet.delete_group(group, force=True)
        for name in ("lab-1", "lab-2"):
            edgefleet.set_edge(name, unlabel=[key])
    finally:
        monkeypatch.undo()
        get_settings.cache_clear()


def test_an_approval_gate_holds_a_rollout_after_its_first_wave(
        lab: Any, edges: dict[str, Any], prefect_api: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    app, group, key = unique("gappr"), unique("gappr"), unique("gk")
    image = f"{lab.registry}/edgefleet/hello"
    edgefleet.create_application(app, "1.0.0", image=f"{image}:1.0.0", ports=["8080"])
    edgefleet.add_version(app, "1.1.0", image=f"{image}:1.1.0", ports=["8080"])
    edgefleet.add_version(app, "1.2.0", image=f"{image}:2.0.0", ports=["8080"])
    for version in ("1.0.0", "1.1.0", "1.2.0"):
        edgefleet.publish_version(app, version)
    try:
        for name in ("lab-1", "lab-2"):
            edgefleet.set_edge(name, labels=[f"{key}=on"])
        members = _launch(group, app, key, monkeypatch)
        before = _containers(edges, members)

        # 1. the gate: exactly the first wave's edge updated, then AWAITING_APPROVAL
        told: list[str] = []
        wait_online(["lab-1", "lab-2"])
        held = edgefleet.update_group(group, to="1.1.0", approve=True, progress=told.append)
        assert held["state"] == "AWAITING_APPROVAL", (held, told)
        assert (f"awaiting approval after wave 1/2: run `edgefleet group approve {group}`"
                in told), told
        assert held["options"]["approve"] is True
        assert _members(held) == {"lab-1": ("1.1.0", "STARTED"), "lab-2": ("1.0.0", "STARTED")}
        gated = _containers(edges, members)
        assert gated["lab-2"] == before["lab-2"]  # wave 2: not touched
        assert gated["lab-1"] != before["lab-1"]  # wave 1: updated
        run_id = held["rollout"]["flow_run_id"]
        assert (held["rollout"]["wave"], held["rollout"]["waves"]) == (1, 2)
        run = _until("the rollout run is PAUSED",
                     lambda: (r := _run(prefect_api, run_id)).state.is_paused() and r, 30)
        assert run.state.state_details.run_input_keyset  # the Prefect UI shows a form
        assert _slots(prefect_api, group) == 1  # the waiting run holds the group's slot
        # the notify channels' `awaiting-approval`: one event, about the group, with the command
        (told_gate,) = _until("the awaiting-approval event", lambda: _gate_events(
            prefect_api, group), 60)
        assert told_gate.payload["command"] == f"edgefleet group approve {group}"
        assert "awaiting approval after wave 1/2" in told_gate.payload["message"]
        assert {r.id for r in told_gate.related} >= {f"edgefleet.application.{app}",
                                                     "edgefleet.edge.lab-1",
                                                     "edgefleet.edge.lab-2"}
        with pytest.raises(edgefleet.EdgefleetError, match="group approve"):
            edgefleet.update_group(group, to="1.2.0")  # refused: it waits for an approval
        with pytest.raises(edgefleet.EdgefleetError, match="nothing to pause"):
            edgefleet.pause_group(group)
        assert edgefleet.group_status(group)["state"] == "AWAITING_APPROVAL"

        # `group approve` completes it
        approved = edgefleet.approve_group(group, note="canary fine", wait=True)
        assert approved["state"] == "STARTED", approved
        assert _members(approved) == {"lab-1": ("1.1.0", "STARTED"),
                                      "lab-2": ("1.1.0", "STARTED")}
        assert _containers(edges, members)["lab-2"] != before["lab-2"]
        assert _run(prefect_api, run_id).state.is_completed()
        _until("the slot given back", lambda: _slots(prefect_api, group) == 0, 30)
        with pytest.raises(edgefleet.EdgefleetError, match="waits for no approval"):
            edgefleet.approve_group(group)
        assert edgefleet.group_status(group)["state"] == "STARTED"

        # 2. approved through the Prefect API: the paused run resumed with input
        wait_online(["lab-1", "lab-2"])
        held = edgefleet.update_group(group, to="1.2.0")  # --approve is kept
        assert held["state"] == "AWAITING_APPROVAL", held
        run_id = held["rollout"]["flow_run_id"]
        _until("the rollout run is PAUSED", lambda: _run(prefect_api, run_id).state.is_paused(),
               30)
        with temporary_settings({PREFECT_API_URL: prefect_api}), \
                get_client(sync_client=True) as client:
            result = client.resume_flow_run(UUID(run_id), run_input={"approved": True,
                                                                     "note": "from the API"})
        assert result.status.value == "ACCEPT", result
        done = _until("the group STARTED", lambda: (
            s := edgefleet.group_status(group))["state"] == "STARTED" and s)
        assert _members(done) == {"lab-1": ("1.2.0", "STARTED"), "lab-2": ("1.2.0", "STARTED")}

        # 3. a rejection halts it, the second wave never tried
        wait_online(["lab-1", "lab-2"])
        held = edgefleet.update_group(group, to="1.1.0")
        assert held["state"] == "AWAITING_APPROVAL", held
        halted = edgefleet.approve_group(group, approved=False, note="too slow", wait=True)
        assert halted["state"] == "HALTED", halted
        assert "rejected" in halted["reason"] and "too slow" in halted["reason"]
        assert _members(halted) == {"lab-1": ("1.1.0", "STARTED"),
                                    "lab-2": ("1.2.0", "STARTED")}

        # 4. a stop while the gate waits ends the waiting run and stops every member (to
        # 1.0.0: both edges change, so there are two waves and a gate between them)
        wait_online(["lab-1", "lab-2"])
        held = edgefleet.update_group(group, to="1.0.0")
        assert held["state"] == "AWAITING_APPROVAL", held
        run_id = held["rollout"]["flow_run_id"]
        _until("the rollout run is PAUSED", lambda: _run(prefect_api, run_id).state.is_paused(),
               30)
        stopped = edgefleet.stop_group(group)
        assert stopped["state"] == "STOPPED", stopped
        assert {state for _version, state in _members(stopped).values()} == {"STOPPED"}
        _until("the waiting run ended", lambda: _run(prefect_api, run_id).state.is_final(), 60)
        assert edgefleet.group_status(group)["state"] == "STOPPED"
        _clean_up(group, key, monkeypatch)
        assert _slots(prefect_api, group) is None  # the group's limit went with it
    finally:
        _clean_up(group, key, monkeypatch)


def test_a_paused_rollout_stops_before_its_next_edges_and_goes_on_when_resumed(
        lab: Any, edges: dict[str, Any], prefect_api: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    app, group, key = unique("gpause"), unique("gpause"), unique("gk")
    image = f"{lab.registry}/edgefleet/hello"
    edgefleet.create_application(app, "1.0.0", image=f"{image}:1.0.0", ports=["8080"])
    edgefleet.add_version(app, "1.1.0", image=f"{image}:1.1.0", ports=["8080"])
    edgefleet.publish_version(app, "1.0.0")
    edgefleet.publish_version(app, "1.1.0")
    try:
        for name in ("lab-1", "lab-2"):
            edgefleet.set_edge(name, labels=[f"{key}=on"])
        members = _launch(group, app, key, monkeypatch)
        before = _containers(edges, members)

        wait_online(["lab-1", "lab-2"])
        edgefleet.update_group(group, to="1.1.0", wait=False)
        paused = edgefleet.pause_group(group)  # before its first edge or during it
        assert paused["state"] == "PAUSED", paused
        assert "resume" in paused["reason"]
        run_id = _until("the run is recorded", lambda: edgefleet.group_status(
            group)["rollout"]["flow_run_id"], 60)
        _until("the rollout run pauses itself",
               lambda: _run(prefect_api, run_id).state.is_paused())
        status = edgefleet.group_status(group)
        assert status["state"] == "PAUSED", status
        assert _members(status)["lab-2"] == ("1.0.0", "STARTED")  # wave 2 not started
        assert _containers(edges, members)["lab-2"] == before["lab-2"]
        with pytest.raises(edgefleet.EdgefleetError, match="waits for no approval"):
            edgefleet.approve_group(group)

        resumed = edgefleet.resume_group(group, wait=True)
        assert resumed["state"] == "STARTED", resumed
        assert _members(resumed) == {"lab-1": ("1.1.0", "STARTED"),
                                     "lab-2": ("1.1.0", "STARTED")}
        assert _run(prefect_api, run_id).state.is_completed()
        with pytest.raises(edgefleet.EdgefleetError, match="is not paused"):
            edgefleet.resume_group(group)
    finally:
        _clean_up(group, key, monkeypatch)
