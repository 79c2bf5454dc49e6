"""The Prefect UI, as an operator sees it in a browser: `edgefleet up`, a deploy job run
through the served deployment, a telemetry sweep on its schedule, then Debian's headless
chromium renders the UI pages (screenshots saved under ``test-artifacts/``).
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

import edgefleet
from edgefleet import server
from tests.lab_helpers import page_text, render_dom, unique

pytestmark = pytest.mark.lab


def api(api_url: str, path: str, body: dict[str, Any]) -> Any:
    resp = httpx.post(f"{api_url}{path}", json=body, timeout=10, trust_env=False)
    resp.raise_for_status()
    return resp.json()


def wait_for(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(1)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def render(url: str, name: str) -> str:
    """The page's text once its scripts ran; a screenshot of it under test-artifacts/."""
    return page_text(render_dom(url, name))


def completed_sweep(api_url: str) -> str | None:
    runs = api(api_url, "/flow_runs/filter", {
        "flows": {"name": {"any_": ["collect-telemetry"]}},
        "flow_runs": {"state": {"type": {"any_": ["COMPLETED"]}},
                      "deployment_id": {"is_null_": False}},
        "limit": 1})
    return str(runs[0]["id"]) if runs else None


def latest_fleet_artifact(api_url: str) -> str | None:
    found = api(api_url, "/artifacts/filter", {"artifacts": {"key": {"any_": ["fleet-status"]}},
                                               "sort": "CREATED_DESC", "limit": 1})
    return str(found[0]["id"]) if found else None


@pytest.mark.skipif(shutil.which("chromium") is None,
                    reason="chromium is not installed (scripts/test.sh installs it)")
def test_ui_shows_deployments_a_completed_deploy_and_the_fleet_artifact(
        lab: Any, prefect_api: str) -> None:
    ui = prefect_api.removesuffix("/api")
    settings = httpx.get(f"{ui}/ui-settings", timeout=10, trust_env=False).json()
    assert settings["api_url"] == prefect_api  # not :4200: the UI talks to its own server
    assert server.served_api_url() == prefect_api

    app = unique("ui")
    edgefleet.create_application(app, "1.0.0", image=f"{lab.registry}/edgefleet/hello:1.0.0",
                                 ports=["8080"])
    edgefleet.publish_version(app, "1.0.0")
    status = edgefleet.deploy(app, "lab-1")  # a job: a flow run of the served deployment
    try:
        assert status["state"] == "STARTED", status["last_error"]
        run_id = status["flow_run_id"]
        run = httpx.get(f"{prefect_api}/flow_runs/{run_id}", timeout=10, trust_env=False).json()
        assert run["state_type"] == "COMPLETED" and run["deployment_id"]
        sweep_id = wait_for(lambda: completed_sweep(prefect_api), 90,
                            "a scheduled collect-telemetry run to complete")
        artifact = wait_for(lambda: latest_fleet_artifact(prefect_api), 60,
                            "the fleet-status artifact")

        page = render(f"{ui}/deployments", "deployments")
        assert "Can't connect" not in page
        # the list's first page, by name (16 deployments: two pages of 10)
        for name in ("deploy-application", "launch-application", "collect-telemetry"):
            assert name in page, name
        page = render(f"{ui}/runs/flow-run/{run_id}", "deploy-run")
        # the run renamed itself once it had read the records: what and where
        assert f"deploy {app} 1.0.0 → lab-1" in page and "Completed" in page
        page = render(f"{ui}/runs/flow-run/{sweep_id}", "telemetry-run")
        assert "sweep-" in page and "Completed" in page
        page = render(f"{ui}/artifacts/artifact/{artifact}", "fleet-status")
        assert "fleet-status" in page and "edgefleet fleet status" in page
        for edge in ("lab-1", "lab-2"):
            assert edge in page, edge
        assert "ONLINE" in page
    finally:
        edgefleet.delete_deployment(status["id"], force=True)
