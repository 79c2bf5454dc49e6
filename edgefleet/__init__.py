"""edgefleet: deploy, update and watch container applications on fleets of edge devices.

The public Python API: the same operations the CLI runs (``edgefleet.deploy(...)``). The
names are loaded on first use (PEP 562), so importing one module of the package, say the
pure rules in ``edgefleet.metrics``, does not import Prefect, docker and SQLModel too.
"""

from __future__ import annotations

import os
from importlib import import_module
from typing import TYPE_CHECKING, Any

# No internet here or on many edge sites: Prefect's usage telemetry would only log errors.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
# The local Prefect server (SQLite) can answer 503 "database busy" for over a minute under
# load. Prefect's client retries a 503 with exponential backoff; 7 tries wait up to about
# 4 min rather than 1, so a busy server delays a deploy instead of failing it.
os.environ.setdefault("PREFECT_CLIENT_MAX_RETRIES", "7")

if TYPE_CHECKING:
    from edgefleet.api.applications import (
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
    from edgefleet.api.groups import (
        approve_group,
        create_group,
        delete_group,
        group_status,
        list_groups,
        pause_group,
        reconcile_group,
        resume_group,
        set_group,
        stop_group,
        update_group,
    )
    from edgefleet.api.notifications import acknowledge, list_notifications
    from edgefleet.api.telemetry import collect as collect_telemetry
    from edgefleet.api.telemetry import edge_telemetry
    from edgefleet.errors import EdgefleetError

# public name -> (module, attribute)
_API: dict[str, tuple[str, str]] = {
    **{name: ("edgefleet.api.applications", name) for name in (
        "add_version", "create_application", "delete_application", "list_applications",
        "publish_version", "show_application")},
    **{name: ("edgefleet.api.deployments", name) for name in (
        "create_deployment", "delete_deployment", "deploy", "deployment_status",
        "list_deployments", "set_policy", "start_deployment", "stop_deployment",
        "update_deployment")},
    **{name: ("edgefleet.api.edges", name) for name in (
        "add_edge", "list_edges", "remove_edge", "set_edge", "show_edge")},
    **{name: ("edgefleet.api.groups", name) for name in (
        "create_group", "delete_group", "group_status", "list_groups", "reconcile_group",
        "stop_group", "update_group")},
    **{name: ("edgefleet.api.groups", name) for name in (
        "approve_group", "pause_group", "resume_group", "set_group")},
    **{name: ("edgefleet.api.notifications", name) for name in (
        "acknowledge", "list_notifications")},
    "collect_telemetry": ("edgefleet.api.telemetry", "collect"),
    "edge_telemetry": ("edgefleet.api.telemetry", "edge_telemetry"),
    "EdgefleetError": ("edgefleet.errors", "EdgefleetError"),
}

__all__ = [
    "EdgefleetError",
    "collect_telemetry",
    "edge_telemetry",
    "add_edge",
    "add_version",
    "create_application",
    "create_deployment",
    "create_group",
    "approve_group",
    "pause_group",
    "resume_group",
    "delete_application",
    "delete_deployment",
    "delete_group",
    "deploy",
    "deployment_status",
    "group_status",
    "list_groups",
    "list_applications",
    "list_deployments",
    "list_edges",
    "publish_version",
    "reconcile_group",
    "remove_edge",
    "set_policy",
    "set_edge",
    "set_group",
    "show_application",
    "show_edge",
    "start_deployment",
    "stop_deployment",
    "stop_group",
    "update_deployment",
    "update_group",
    "acknowledge",
    "list_notifications",
]


def __getattr__(name: str) -> Any:
    """Import a public API name on first use (and keep it, so this runs once per name)."""
    try:
        module, attr = _API[name]
    except KeyError:
        raise AttributeError(f"module 'edgefleet' has no attribute {name!r}") from None
    value = getattr(import_module(module), attr)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
