"""Deployment groups on the real lab: a selector launch reaches exactly the matching edge,
and a crashing version rolled out in waves ``1,100%`` with ``--on-failure halt`` tries one
edge (rolled back by its own update's rollback) and leaves the other untouched."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter
from prefect.settings import PREFECT_API_URL, temporary_settings

import edgefleet
from edgefleet.settings import get_settings
from tests.lab_helpers import unique, wait_online

pytestmark = pytest.mark.lab


@pytest.fixture
def quick_local_runs(local_runs: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """In-process runs (reporting to the lab's Prefect server) with a short soak."""
    monkeypatch.setenv("EDGEFLEET_SOAK_SECONDS", "3")
    monkeypatch.setenv("EDGEFLEET_DEPLOY_TIMEOUT", "25")
    get_settings.cache_clear()
    yield
    monkeypatch.undo()
    get_settings.cache_clear()


def _clean_up(group: str, key: str, edges: list[str]) -> None:
    with contextlib.suppress(edgefleet.EdgefleetError):
        edgefleet.delete_group(group, force=True)
    for name in edges:
        edgefleet.set_edge(name, unlabel=[key])


def _run_names(api_url: str, names: list[str]) -> set[str]:
    """Which of these flow-run names the Prefect server has runs of."""
    with temporary_settings({PREFECT_API_URL: api_url}), get_client(sync_client=True) as client:
        runs = client.read_flow_runs(flow_run_filter=FlowRunFilter(name={"any_": names}))
    return {run.name for run in runs}


def _container_ids(deployment_id: str) -> list[str]:
    return [c["container_id"] for c in edgefleet.deployment_status(deployment_id)["containers"]]


def test_a_selector_launch_reaches_exactly_the_matching_edge(
        lab: Any, edges: dict[str, Any], prefect_api: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Served: the rollout is a run of the `rollout-group` deployment `edgefleet up` serves."""
    app, group, key = unique("gsel"), unique("gsel"), unique("gk")
    edgefleet.create_application(app, "1.0.0", image=f"{lab.registry}/edgefleet/hello:1.0.0",
                                 ports=["8080"])
    edgefleet.publish_version(app, "1.0.0")
    try:
        edgefleet.set_edge("lab-2", labels=[f"{key}=yes"])
        edgefleet.set_edge("lab-1", labels=[f"{key}=no"])
        wait_online(["lab-2"])
        told: list[str] = []
        status = edgefleet.create_group(group, app, selector=f"{key}=yes",
                                        progress=told.append)
        assert status["state"] == "STARTED", (status, told)
        assert any("wave 1/1" in line for line in told), told
        assert {"name", "application", "version", "state", "selector", "reason", "counts",
                "edges", "rollout"} <= set(status)
        assert [(e["edge"], e["version"], e["state"]) for e in status["edges"]] == [
            ("lab-2", "1.0.0", "STARTED")]
        assert status["counts"] == {"STARTED": 1}
        assert status["rollout"]["waves"] == 1 and status["rollout"]["flow_run_id"]
        member = status["edges"][0]["deployment_id"]
        assert edgefleet.deployment_status(member)["edge"] == "lab-2"
        assert [(d["id"], d["edge"]) for d in edgefleet.list_deployments()
                if d["application"] == app] == [(member, "lab-2")]
    finally:
        monkeypatch.setenv("EDGEFLEET_RUN_MODE", "local")  # the clean-up's stop: no queue
        get_settings.cache_clear()
        _clean_up(group, key, ["lab-1", "lab-2"])
        monkeypatch.undo()
        get_settings.cache_clear()
    assert [d for d in edgefleet.list_deployments() if d["application"] == app] == []


@pytest.mark.usefixtures("quick_local_runs")
def test_a_crashing_version_halts_after_one_edge_rolled_back(lab: Any, edges: dict[str, Any],
                                                              prefect_api: str) -> None:
    app, group, key = unique("gcrash"), unique("gcrash"), unique("gk")
    image = f"{lab.registry}/edgefleet/hello"
    edgefleet.create_application(app, "1.0.0", image=f"{image}:1.0.0", ports=["8080"])
    edgefleet.add_version(app, "1.1.0", image=f"{image}:1.1.0", ports=["8080"],
                          env=["HELLO_CRASH=1"])
    edgefleet.publish_version(app, "1.0.0")
    try:
        for name in ("lab-1", "lab-2"):
            edgefleet.set_edge(name, labels=[f"{key}=on"])
        wait_online(["lab-1", "lab-2"])
        launched = edgefleet.create_group(group, app, selector=key, version="1.0.0",
                                          waves="1,100%", on_failure="halt")
        assert launched["state"] == "STARTED", launched
        members = {e["edge"]: e["deployment_id"] for e in launched["edges"]}
        assert sorted(members) == ["lab-1", "lab-2"]
        before = {edge: _container_ids(dep) for edge, dep in members.items()}

        edgefleet.publish_version(app, "1.1.0")
        told: list[str] = []
        after = edgefleet.update_group(group, to="1.1.0", progress=told.append)
        assert after["state"] == "HALTED", after
        assert any("wave 1/2" in line for line in told), told  # progress per wave
        assert not any("wave 2/2" in line for line in told), told
        assert after["version"] == "1.1.0"
        assert "lab-1" in after["reason"] and "failed" in after["reason"]
        assert after["rollout"] == {"wave": 1, "waves": 2,
                                    "flow_run_id": after["rollout"]["flow_run_id"]}
        rows = {e["edge"]: e for e in after["edges"]}
        # the edge tried: rolled back by its own update, STARTED on the old version
        assert (rows["lab-1"]["state"], rows["lab-1"]["version"]) == ("STARTED", "1.0.0")
        assert "rolled back" in rows["lab-1"]["last_error"]
        # the other: never touched
        assert (rows["lab-2"]["state"], rows["lab-2"]["version"]) == ("STARTED", "1.0.0")
        assert rows["lab-2"]["last_error"] is None
        assert _container_ids(members["lab-2"]) == before["lab-2"]
        names = [f"update {app} 1.1.0 → lab-1", f"update {app} 1.1.0 → lab-2",
                 f"rollout {group} {app} 1.1.0"]
        assert _run_names(prefect_api, names) == {names[0], names[2]}  # lab-2 never tried
        with pytest.raises(edgefleet.EdgefleetError, match="no version 9.9.9"):
            edgefleet.update_group(group, to="9.9.9")
        assert edgefleet.group_status(group)["state"] == "HALTED"  # a refusal changes nothing
    finally:
        _clean_up(group, key, ["lab-1", "lab-2"])
