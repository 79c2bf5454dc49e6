"""Every edgefleet flow as a deployment of the Prefect ``process`` work pool ``edgefleet``.

Run by `edgefleet up` as ``python -m edgefleet.deployments.work_pool register at-start``
(idempotent: the pool is created once, the deployments and their triggers are written again
each time; ``at-start`` submits the runs that settle what a dead control plane left); the
pool's workers (``edgefleet.workers``, on this machine or any other) run the
flow runs. Jobs (deploy, stop, update, a group's rollout) run on demand; the image check,
the notification reconcile and the telemetry sweep on an interval (the sweep also once at
start); notify-application-update and auto-update-groups on the
``edgefleet.application.published`` event (auto-update-groups also on an interval);
reconcile-deployments on an interval and once at start (runs a dead worker or control plane
left behind), clean-up-edge on ``edgefleet.edge.online`` and hourly, reconcile-groups on
``edgefleet.edge.online`` and every ``group_reconcile_seconds``.
"""

from __future__ import annotations

import contextlib
import sys
from datetime import timedelta
from typing import Any

from prefect.deployments.runner import EntrypointType, RunnerDeployment
from prefect.events import DeploymentEventTrigger

from edgefleet.events import APPLICATION_PUBLISHED, EDGE_ONLINE
from edgefleet.flow_run_launcher import COMMAND as LAUNCH_COMMAND
from edgefleet.flows.auto_update import auto_update_groups
from edgefleet.flows.check_updates import check_image_updates
from edgefleet.flows.deploy import deploy_application
from edgefleet.flows.edge_operation import edge_operation
from edgefleet.flows.groups import reconcile_groups, rollout_group, stop_group
from edgefleet.flows.launch import launch_application
from edgefleet.flows.notify import notify_application_update, reconcile_notifications
from edgefleet.flows.reconcile import clean_up_edge, reconcile_deployments
from edgefleet.flows.stop import stop_application
from edgefleet.flows.telemetry import collect_telemetry
from edgefleet.flows.update import update_application
from edgefleet.settings import get_settings
from edgefleet.workers import POOL, PULL_POOL


def publish_trigger() -> DeploymentEventTrigger:
    """A published version becomes a run of notify-application-update with its payload."""
    return DeploymentEventTrigger(
        expect={APPLICATION_PUBLISHED},
        match={"prefect.resource.id": "edgefleet.application.*"},
        parameters={"application": "{{ event.payload.name }}",
                    "version": "{{ event.payload.version }}"},
    )


def online_trigger() -> DeploymentEventTrigger:
    """An edge back ONLINE becomes a run of clean-up-edge for it (its engine is named too,
    so an event from another control plane's edge of the same name is told apart)."""
    return DeploymentEventTrigger(
        expect={EDGE_ONLINE},
        match={"prefect.resource.id": "edgefleet.edge.*"},
        parameters={"edge": "{{ event.payload.edge }}",
                    "docker_host": "{{ event.payload.docker_host }}"},
    )


def served_flows() -> list[tuple[Any, dict[str, Any]]]:
    """Each flow with its deployment options (schedule or trigger)."""
    settings = get_settings()
    sweep_seconds = settings.telemetry_sweep_seconds
    return [
        (launch_application, {}),
        (deploy_application, {}),
        (stop_application, {}),
        (update_application, {}),
        (rollout_group, {}),
        (stop_group, {}),
        # an edge back ONLINE brings its groups' members to their target; the interval
        # catches a lost event and edges that start to match a group's selector
        (reconcile_groups, {"triggers": [online_trigger()],
                            "interval": timedelta(seconds=settings.group_reconcile_seconds)}),
        # the same event as notify-application-update, and the interval catches what an
        # event missed (lost, or the group was busy); one rollout per group: the claim's CAS
        (auto_update_groups, {"triggers": [publish_trigger()],
                              "interval": timedelta(seconds=settings.auto_update_seconds)}),
        (notify_application_update, {"triggers": [publish_trigger()]}),
        (reconcile_notifications, {"interval": timedelta(seconds=settings.reconcile_seconds)}),
        # no concurrency limit: a run killed with its worker would hold the slot
        # (and cancel every later reconcile); two at once are safe, each re-checks the record
        (reconcile_deployments, {"interval": timedelta(seconds=settings.stuck_check_seconds)}),
        (clean_up_edge, {"triggers": [online_trigger()],
                         "interval": timedelta(seconds=settings.cleanup_seconds)}),
        (check_image_updates, {"interval": timedelta(seconds=settings.image_check_seconds)}),
        # each run sweeps for its whole interval, as often as the edges' heartbeats ask;
        # one at a time: a run still going when the next starts makes that one skip (a
        # lock file the kernel frees if the process dies, see tasks.telemetry.schedule_slot)
        (collect_telemetry, {"interval": timedelta(seconds=sweep_seconds),
                             "parameters": {"for_seconds": max(0, sweep_seconds - 1)}}),
    ]


def build_deployments() -> list[RunnerDeployment]:
    """Each run starts warm, forked from its worker's fork server (or cold, as Prefect
    would, on a worker that has none: see ``edgefleet.flow_run_launcher``)."""
    built = []
    for flow, options in served_flows():
        deployment = flow.to_deployment(name=flow.name, tags=["edgefleet"],
                                        entrypoint_type=EntrypointType.MODULE_PATH,
                                        job_variables={"command": LAUNCH_COMMAND}, **options)
        assert isinstance(deployment, RunnerDeployment)
        built.append(deployment)
    return built


def ensure_pool(name: str = POOL, description: str = "edgefleet's jobs: start workers "
                "with `edgefleet worker`") -> None:
    """A ``process`` work pool with Prefect's default job template; one that exists is left
    as it is (an operator may have tuned it)."""
    from prefect import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectAlreadyExists
    from prefect.workers.process import ProcessWorker

    with get_client(sync_client=True) as client, contextlib.suppress(ObjectAlreadyExists):
        client.create_work_pool(WorkPoolCreate(
            name=name, type=ProcessWorker.type,
            base_job_template=ProcessWorker.get_default_base_job_template(),
            description=description))


def register() -> None:
    """The pools, then each flow as one of their deployments (schedules and triggers too):
    every job in ``edgefleet``; the steps pull edges run in ``edgefleet-pull``, each edge's
    agent polling its own queue of it."""
    ensure_pool()
    for deployment in build_deployments():
        deployment.apply(work_pool_name=POOL)
    ensure_pool(PULL_POOL, "steps of pull edges: each edge's `edgefleet agent` polls its "
                           "queue edge-NAME")
    steps = edge_operation.to_deployment(name=edge_operation.name, tags=["edgefleet"],
                                         entrypoint_type=EntrypointType.MODULE_PATH)
    assert isinstance(steps, RunnerDeployment)
    steps.apply(work_pool_name=PULL_POOL)


def run_at_start(flow: Any, run_name: str, parameters: dict[str, Any] | None = None) -> None:
    """Submit one run of ``flow``'s deployment now, rather than at its schedule's first turn
    (up to an interval later); the first worker to ask runs it."""
    from prefect.deployments import run_deployment

    try:
        run_deployment(name=f"{flow.name}/{flow.name}", timeout=0, flow_run_name=run_name,
                       parameters=parameters or {})
    except Exception as exc:  # the interval schedule will do it; say why not now
        print(f"{run_name} not submitted: {exc}", flush=True)


def at_start() -> None:
    """Runs a dead worker or control plane left in a transient state are settled now, and
    the fleet is contacted now (the sweep hands over to the scheduled ones)."""
    run_at_start(reconcile_deployments, "reconcile deployments at start")
    sweep_seconds = get_settings().telemetry_sweep_seconds
    run_at_start(collect_telemetry, "sweep at start",
                 {"for_seconds": max(0, sweep_seconds - 1)})


def main(steps: list[str]) -> None:
    """``register`` and/or ``at-start``, in that order (see ``edgefleet.server.up``)."""
    unknown = set(steps) - {"register", "at-start"}
    if unknown or not steps:
        raise SystemExit(f"usage: python -m {__spec__.name if __spec__ else __name__} "
                         "[register] [at-start]")
    if "register" in steps:
        register()
        print(f"work pool {POOL!r}: {len(served_flows())} deployments registered", flush=True)
    if "at-start" in steps:
        at_start()


if __name__ == "__main__":
    main(sys.argv[1:])
