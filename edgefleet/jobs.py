"""Jobs: a flow run submitted to the served deployment, or run in this process.

While `edgefleet up` runs, a job is a flow run of the served Prefect deployment (the
reference's job queue: visible in the UI, retried, auditable). Otherwise the flow runs here.
Either way the deployment record is the source of truth for the outcome.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from importlib import import_module
from typing import Any
from uuid import UUID

from prefect.client.schemas.objects import FlowRun
from prefect.settings import (
    PREFECT_API_URL,
    PREFECT_FLOWS_HEARTBEAT_FREQUENCY,
    temporary_settings,
)
from sqlmodel import select

from edgefleet import server
from edgefleet.db import session_scope
from edgefleet.errors import EdgefleetError
from edgefleet.models.groups import HOLDING, ROLLING, holding_hint
from edgefleet.models.records import Deployment, DeploymentGroup
from edgefleet.models.states import DeploymentState
from edgefleet.settings import get_settings

FLOWS = {
    "deploy-application": "edgefleet.flows.deploy:deploy_application",
    "stop-application": "edgefleet.flows.stop:stop_application",
    "update-application": "edgefleet.flows.update:update_application",
    "check-image-updates": "edgefleet.flows.check_updates:check_image_updates",
    "reconcile-notifications": "edgefleet.flows.notify:reconcile_notifications",
    "collect-telemetry": "edgefleet.flows.telemetry:collect_telemetry",
    "reconcile-deployments": "edgefleet.flows.reconcile:reconcile_deployments",
    "clean-up-edge": "edgefleet.flows.reconcile:clean_up_edge",
    "rollout-group": "edgefleet.flows.groups:rollout_group",
    "reconcile-groups": "edgefleet.flows.groups:reconcile_groups",
    "stop-group": "edgefleet.flows.groups:stop_group",
    "auto-update-groups": "edgefleet.flows.auto_update:auto_update_groups",
}
TRANSIENT = {DeploymentState.STARTING, DeploymentState.UPDATING, DeploymentState.STOPPING}
# how often a waiting command looks at its run and record: a quarter second of a
# deploy's latency at most, two cheap reads each time
WAIT_POLL_SECONDS = 0.25


def load_flow(name: str) -> Any:
    module, _, attr = FLOWS[name].partition(":")
    return getattr(import_module(module), attr)


def run_here(name: str, parameters: dict[str, Any] | None = None) -> Any:
    """Run a flow in this process, reporting to the local Prefect server.

    That server is `edgefleet up`'s, or one started in the background by the first command
    that needs it and reused after (``server.flow_api_url``), or the user's own
    ``PREFECT_API_URL``: never a temporary server for this one process (about 20 s each).
    No flow-run heartbeat here: this process watches its own run, and the heartbeat thread
    costs about a second at the end of every sync flow (measured: 1.08 s → 0.11 s).
    """
    updates: dict[Any, Any] = {PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None,
                               PREFECT_API_URL: server.flow_api_url()}
    with temporary_settings(updates):
        return load_flow(name)(**(parameters or {}))


def served_api_url() -> str | None:
    """The Prefect API of `edgefleet up` when jobs are runs of its served deployments (not
    in this process): None when they would run here."""
    if get_settings().run_mode == "local":
        return None
    return server.served_api_url()


def run_flow(
    name: str,
    parameters: dict[str, Any],
    *,
    wait: bool = True,
    deployment_id: str | None = None,
    group: str | None = None,
    progress: Callable[[str], None] | None = None,
    timeout: float = 900,
) -> str | None:
    """Run flow ``name``; returns the flow run id when submitted to the served deployment.

    With ``wait``, a submitted run is followed until it is final and the record it moves
    (the deployment ``deployment_id``, or the group ``group``) has left its transient state.
    """
    mode = get_settings().run_mode
    api_url = server.served_api_url()
    if mode == "served" and api_url is None:
        raise EdgefleetError("run mode is 'served' but `edgefleet up` is not running; start it")
    if api_url is None or mode == "local":
        if group is not None and progress is not None:  # the waves, as the run reaches them
            done = threading.Event()
            watcher = threading.Thread(target=_watch_group, args=(group, progress, done),
                                       name="group-progress", daemon=True)
            watcher.start()
            try:
                run_here(name, {**parameters, "return_state": True})
            finally:
                done.set()
                watcher.join(timeout=5)
        else:
            run_here(name, {**parameters, "return_state": True})
        return None
    from prefect.deployments import run_deployment

    with temporary_settings({PREFECT_API_URL: api_url}):
        flow_run = run_deployment(name=f"{name}/{name}", parameters=parameters, timeout=0)
    assert isinstance(flow_run, FlowRun)
    if progress:
        progress(f"submitted flow run {flow_run.name} ({flow_run.id})")
        if not server.online_workers(api_url):  # `up --workers 0`, or every worker gone
            progress("no worker of work pool 'edgefleet' is online: the run waits for one "
                     "(start one with `edgefleet worker`, or `edgefleet up`)")
    if wait and group is not None:
        wait_for_group(group, str(flow_run.id), api_url, progress, timeout)
    elif wait and deployment_id is not None:
        wait_for_record(deployment_id, str(flow_run.id), api_url, progress, timeout)
    return str(flow_run.id)


def wait_for_record(deployment_id: str, flow_run_id: str, api_url: str,
                    progress: Callable[[str], None] | None, timeout: float) -> None:
    """Until the flow run is final (and the record has left its transient state)."""
    from prefect.client.orchestration import get_client

    deadline = time.monotonic() + timeout
    last = None
    with temporary_settings({PREFECT_API_URL: api_url}), get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            run = client.read_flow_run(UUID(flow_run_id))
            with session_scope() as session:
                row = session.get(Deployment, deployment_id)
                state = row.state if row else None
            if progress and (run.state_name, state) != last:
                progress(f"flow run {run.state_name}; deployment {state}")
                last = (run.state_name, state)
            if run.state and run.state.is_final() and state not in TRANSIENT:
                return
            time.sleep(WAIT_POLL_SECONDS)
    raise EdgefleetError(f"flow run {flow_run_id} did not finish within {timeout:.0f}s; "
                         "it goes on in the background (see `edgefleet status`)")


def _group_seen(group: str) -> tuple[str | None, int, int]:
    with session_scope() as session:
        row = session.exec(  # type: ignore[call-overload]
            select(DeploymentGroup).where(DeploymentGroup.name == group)).first()
        return (row.state, row.wave, row.waves) if row else (None, 0, 0)


def _tell(group: str, seen: tuple[str | None, int, int], progress: Callable[[str], None]
          ) -> None:
    state, wave, waves = seen
    at = f", wave {wave}/{waves}" if waves else ""
    progress(f"group {group}: {state}{at}")
    hint = holding_hint(group, state, wave, waves)
    if hint:
        progress(hint)


def _watch_group(group: str, progress: Callable[[str], None], done: threading.Event) -> None:
    """Tell each change of the group's state or wave until ``done`` (a run in this process)."""
    last = None
    while not done.wait(0.5):
        seen = _group_seen(group)
        if seen != last:
            _tell(group, seen, progress)
            last = seen


def wait_for_group(group: str, flow_run_id: str, api_url: str,
                   progress: Callable[[str], None] | None, timeout: float,
                   since: tuple[str | None, int, int] | None = None) -> None:
    """Until the rollout run is final and the group has left DEPLOYING / UPDATING, or the
    group waits for an operator (AWAITING_APPROVAL, PAUSED: the run is paused, not ended)
    other than as ``since`` (state, wave, waves: the wait it was approved or resumed
    from); each wave reached is told to ``progress``."""
    from prefect.client.orchestration import get_client

    deadline = time.monotonic() + timeout
    last = None
    with temporary_settings({PREFECT_API_URL: api_url}), get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            run = client.read_flow_run(UUID(flow_run_id))
            seen = _group_seen(group)
            if progress and seen != last:
                _tell(group, seen, progress)
                last = seen
            if run.state and run.state.is_final() and seen[0] not in ROLLING:
                return
            if seen[0] in HOLDING and seen != since:
                return
            time.sleep(WAIT_POLL_SECONDS)
    raise EdgefleetError(f"rollout run {flow_run_id} did not finish within {timeout:.0f}s; "
                         f"it goes on in the background (see `edgefleet group status {group}`)")
