"""Serve every edgefleet flow as a Prefect deployment (the reference's job queue).

Run by `edgefleet up` as ``python -m edgefleet.deployments.serve``; ``pause_on_shutdown=False`` so
stopping it does not pause the deployments. Jobs (deploy, stop, update) run on demand; the
image check, the notification reconcile and the telemetry sweep on an interval;
notify-application-update on the ``edgefleet.application.published`` event.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from prefect import serve
from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy
from prefect.deployments.runner import EntrypointType, RunnerDeployment
from prefect.events import DeploymentEventTrigger

from edgefleet.events import APPLICATION_PUBLISHED
from edgefleet.flows.check_updates import check_image_updates
from edgefleet.flows.deploy import deploy_application
from edgefleet.flows.notify import notify_application_update, reconcile_notifications
from edgefleet.flows.stop import stop_application
from edgefleet.flows.telemetry import collect_telemetry
from edgefleet.flows.update import update_application
from edgefleet.settings import get_settings


def publish_trigger() -> DeploymentEventTrigger:
    """A published version becomes a run of notify-application-update with its payload."""
    return DeploymentEventTrigger(
        expect={APPLICATION_PUBLISHED},
        match={"prefect.resource.id": "edgefleet.application.*"},
        parameters={"application": "{{ event.payload.name }}",
                    "version": "{{ event.payload.version }}"},
    )


def served_flows() -> list[tuple[Any, dict[str, Any]]]:
    """Each flow with its deployment options (schedule or trigger)."""
    settings = get_settings()
    sweep_seconds = settings.telemetry_sweep_seconds
    return [
        (deploy_application, {}),
        (stop_application, {}),
        (update_application, {}),
        (notify_application_update, {"triggers": [publish_trigger()]}),
        (reconcile_notifications, {"interval": timedelta(seconds=settings.reconcile_seconds)}),
        (check_image_updates, {"interval": timedelta(seconds=settings.image_check_seconds)}),
        # each run sweeps for its whole interval, as often as the edges' heartbeats ask;
        # one run at a time: a run still going when the next is due skips that one
        (collect_telemetry, {"interval": timedelta(seconds=sweep_seconds),
                             "parameters": {"for_seconds": max(0, sweep_seconds - 1)},
                             "concurrency_limit": ConcurrencyLimitConfig(
                                 limit=1, collision_strategy=ConcurrencyLimitStrategy.CANCEL_NEW)}),
    ]


def build_deployments() -> list[RunnerDeployment]:
    built = []
    for flow, options in served_flows():
        deployment = flow.to_deployment(name=flow.name, tags=["edgefleet"],
                                        entrypoint_type=EntrypointType.MODULE_PATH, **options)
        assert isinstance(deployment, RunnerDeployment)
        built.append(deployment)
    return built


def main() -> None:
    serve(*build_deployments(), pause_on_shutdown=False, limit=8)


if __name__ == "__main__":
    main()
