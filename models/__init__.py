"""edgefleet's records (SQLModel tables), validated inputs and deployment states."""

from models.records import (
    Application,
    ApplicationVersion,
    ContainerStatus,
    Deployment,
    Edge,
    LogCursor,
    Notification,
)
from models.states import Action, DeploymentState
from models.telemetry import EdgeAvailability, EdgeSample, EdgeSampleHourly

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
