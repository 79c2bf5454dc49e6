"""edgefleet's records (SQLModel tables), validated inputs and deployment states."""

from edgefleet.models.records import (
    Application,
    ApplicationVersion,
    ContainerStatus,
    Deployment,
    Edge,
    LogCursor,
    Notification,
)
from edgefleet.models.states import Action, DeploymentState
from edgefleet.models.telemetry import EdgeAvailability, EdgeSample, EdgeSampleHourly

__all__ = [
    "Action",
    "Application",
    "ApplicationVersion",
    "ContainerStatus",
    "Deployment",
    "DeploymentState",
    "Edge",
    "EdgeAvailability",
    "EdgeSample",
    "EdgeSampleHourly",
    "LogCursor",
    "Notification",
]
