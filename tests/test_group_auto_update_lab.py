"""Auto-update of a group on the real lab with `edgefleet up` serving the flows: publishing
a minor release rolls the group out with no command (a served run per wave, the table
artifact ``group-<name>``), a major release does not, a crashing minor release halts it
with an ``edgefleet.group.halted`` event, and a HALTED group waits for an operator."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable
from typing import Any

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    ArtifactCollectionFilter,
    ArtifactCollectionFilterKey,
    FlowRunFilter,
)
from prefect.events.filters import EventFilter, EventNameFilter, EventResourceFilter
from prefect.settings import PREFECT_API_URL, temporary_settings

import edgefleet
from edgefleet.rollouts import artifact_key
from tests.lab_helpers import unique, wait_for, wait_online

pytestmark = pytest.mark.lab
AT_REST = ("STARTED", "PARTIAL", "HALTED")
EDGES = ["lab-1", "lab-2"]


def _wait_group(group: str, done: Callable[[dict[str, Any]], bool], timeout: float = 600
                ) -> dict[str, Any]:
    """Until ``done(status)``; the edges are kept ONLINE meanwhile (on a busy machine the
    served sweep can start late, and a rollout defers an edge it has not heard of lately)."""
    deadline = time.monotonic() + timeout
    status = edgefleet.group_status(group)
    while time.monotonic() < deadline:
        status = edgefleet.group_status(group)
        if done(status):
            return status
        edgefleet.collect_telemetry(EDGES)
        time.sleep(2)
    pytest.fail(f"group {group} did not get there within {timeout:.0f}s: {status}")


def _runs(api_url: str, names: list[str]) -> dict[str, str]:
    """Name → state name of the flow runs of these names on the server."""
    with temporary_settings({PREFECT_API_URL: api_url}), get_client(sync_client=True) as client:
        runs = client.read_flow_runs(flow_run_filter=FlowRunFilter(name={"any_": names}))
    return {run.name: run.state_name or "" for run in runs}


FINAL = ("Completed", "Failed", "Crashed", "Cancelled")


def _final_runs(api_url: str, names: list[str], timeout: float = 120) -> dict[str, str]:
    """``_runs`` once each of these runs has ended: the group's record moves before its
    rollout run reports its own final state."""
    def ended() -> dict[str, str]:
        found = _runs(api_url, names)
        done = set(found) == set(names) and all(state in FINAL for state in found.values())
        return found if done else {}

    return dict(wait_for(ended, timeout, f"the runs {names} to end", every=1))


def _wait_run(api_url: str, name: str, timeout: float = 600) -> None:
    """Until the run of that name has completed (the event became a run, and it ended)."""
    deadline = time.monotonic() + timeout
    found: dict[str, str] = {}
    while time.monotonic() < deadline:
        found = _runs(api_url, [name])
        if found.get(name) == "Completed":
            return
        time.sleep(1)
    pytest.fail(f"no completed run {name!r}: {found}")


def _table(api_url: str, group: str) -> tuple[list[dict[str, Any]], str]:
    """The latest rows and description of the group's table artifact."""
    key = artifact_key(group)
    with temporary_settings({PREFECT_API_URL: api_url}), get_client(sync_client=True) as client:
        (latest,) = client.read_latest_artifacts(artifact_filter=ArtifactCollectionFilter(
            key=ArtifactCollectionFilterKey(any_=[key])))
    data = latest.data
    return (json.loads(data) if isinstance(data, str) else data), latest.description or ""


def _halt_events(api_url: str, group: str) -> list[Any]:
    with temporary_settings({PREFECT_API_URL: api_url}), get_client(sync_client=True) as client:
        page = client.read_events(filter=EventFilter(
            event=EventNameFilter(name=["edgefleet.group.halted"]),
            resource=EventResourceFilter(id=[f"edgefleet.group.{group}"])), limit=10)
    return list(page.events)


@pytest.mark.usefixtures("quick_local_runs")
def test_auto_update_minor_rolls_out_a_minor_release_by_itself_and_not_a_major(
        lab: Any, edges: dict[str, Any], prefect_api: str) -> None:
    """This process runs its own flows here (the launch, the clean-up); what publishing
    starts runs in the served process of `edgefleet up`, with no command."""
    app, group = unique("gauto"), unique("gauto")
    image = f"{lab.registry}/edgefleet/hello"
    edgefleet.create_application(app, "1.0.0", image=f"{image}:1.0.0", ports=["8080"])
    edgefleet.add_version(app, "1.1.0", image=f"{image}:1.1.0", ports=["8080"])
    edgefleet.add_version(app, "2.0.0", image=f"{image}:2.0.0", ports=["8080"])
    edgefleet.add_version(app, "1.2.0", image=f"{image}:1.1.0", ports=["8080"],
                          env=["HELLO_CRASH=1"])
    edgefleet.add_version(app, "1.3.0", image=f"{image}:1.1.0", ports=["8080"])
    edgefleet.publish_version(app, "1.0.0")
    try:
        wait_online(EDGES)
        launched = edgefleet.create_group(group, app, edges=EDGES,
                                          waves="1,100%", auto_update="minor")
        assert (launched["state"], launched["auto_update"]) == ("STARTED", "minor"), launched

        # a minor release: the whole group follows, with no command
        edgefleet.publish_version(app, "1.1.0")
        after = _wait_group(group, lambda s: s["version"] == "1.1.0"
                            and s["state"] in AT_REST)
        assert after["state"] == "STARTED", after
        assert [(e["edge"], e["version"], e["state"]) for e in after["edges"]] == [
            ("lab-1", "1.1.0", "STARTED"), ("lab-2", "1.1.0", "STARTED")]
        assert after["rollout"]["wave"] == after["rollout"]["waves"] == 2
        names = [f"auto-update {app} 1.1.0", f"rollout {group} {app} 1.1.0",
                 f"rollout {group} {app} 1.1.0 wave 1/2", f"rollout {group} {app} 1.1.0 wave 2/2"]
        assert _final_runs(prefect_api, names) == {n: "Completed" for n in names}
        rows, description = _table(prefect_api, group)
        assert [(r["edge"], r["version"], r["state"]) for r in rows] == [
            ("lab-1", "1.1.0", "STARTED"), ("lab-2", "1.1.0", "STARTED")]
        assert "STARTED" in description and "wave 2/2" in description

        # a major release: left to an operator
        edgefleet.publish_version(app, "2.0.0")
        _wait_run(prefect_api, f"auto-update {app} 2.0.0")
        still = edgefleet.group_status(group)
        assert (still["state"], still["version"]) == ("STARTED", "1.1.0"), still
        assert _runs(prefect_api, [f"rollout {group} {app} 2.0.0"]) == {}

        # a crashing minor release: the first wave's edge rolls itself back, the group halts
        # and says so to the notify channels (an event about the group)
        edgefleet.publish_version(app, "1.2.0")
        halted = _wait_group(group, lambda s: s["version"] == "1.2.0"
                             and s["state"] in AT_REST)
        assert halted["state"] == "HALTED", halted
        assert [(e["edge"], e["version"]) for e in halted["edges"]] == [
            ("lab-1", "1.1.0"), ("lab-2", "1.1.0")]
        rows, _ = _table(prefect_api, group)
        assert rows[0]["edge"] == "lab-1" and "rolled back" in rows[0]["last error"]
        deadline = time.monotonic() + 30
        while not (events := _halt_events(prefect_api, group)) and time.monotonic() < deadline:
            time.sleep(1)
        (event,) = events
        assert event.payload["auto_update"] is True and event.payload["kind"] == "halted"
        assert "waits for an operator" in event.payload["message"]
        assert "halted: halted" not in event.payload["message"]
        assert {r.id for r in event.related} >= {f"edgefleet.application.{app}",
                                                 "edgefleet.edge.lab-1", "edgefleet.edge.lab-2"}

        # a HALTED group is not auto-updated: it waits for an operator
        edgefleet.publish_version(app, "1.3.0")
        _wait_run(prefect_api, f"auto-update {app} 1.3.0")
        assert (edgefleet.group_status(group)["state"],
                edgefleet.group_status(group)["version"]) == ("HALTED", "1.2.0")
        assert _runs(prefect_api, [f"rollout {group} {app} 1.3.0"]) == {}
    finally:
        with contextlib.suppress(edgefleet.EdgefleetError):
            edgefleet.delete_group(group, force=True)
