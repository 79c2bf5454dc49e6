"""edgefleet: deploy, update and watch container applications on fleets of edge devices.

The public Python API: the same operations the CLI runs.
"""

import os

# No internet here or on many edge sites: Prefect's usage telemetry would only log errors.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

from edgefleet.api.applications import (  # noqa: E402
    add_version,
    create_application,
    delete_application,
    list_applications,
    publish_version,
    show_application,
)
from edgefleet.api.deployments import (
    create_deployment,
    delete_deployment,
    deploy,
    deployment_status,
    list_deployments,
    set_policy,
    start_deployment,
    stop_deployment,
    update_deployment,
)
from edgefleet.api.edges import add_edge, list_edges, remove_edge, set_edge, show_edge
from edgefleet.api.notifications import acknowledge, list_notifications
from edgefleet.api.telemetry import collect as collect_telemetry
from edgefleet.api.telemetry import edge_telemetry
from edgefleet.errors import EdgefleetError

__all__ = [
    "EdgefleetError",
    "collect_telemetry",
    "edge_telemetry",
    "add_edge",
    "add_version",
    "create_application",
    "create_deployment",
    "delete_application",
    "delete_deployment",
    "deploy",
    "deployment_status",
    "list_applications",
    "list_deployments",
    "list_edges",
    "publish_version",
    "remove_edge",
    "set_policy",
    "set_edge",
    "show_application",
    "show_edge",
    "start_deployment",
    "stop_deployment",
    "update_deployment",
    "acknowledge",
    "list_notifications",
]
