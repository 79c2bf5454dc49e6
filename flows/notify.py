"""Flows `notify-application-update` (run by the publish event) and its periodic reconcile.

Publishing a version notifies every deployment running an older one, once: the records
refuse a duplicate, so a trigger that fires twice or a reconcile adds nothing.
"""

from __future__ import annotations

from prefect import flow

from edgefleet.tasks.notifications import (
    find_newest_published,
    find_older_deployments,
    notify_deployment,
)


@flow(name="notify-application-update",
      flow_run_name="notify {application} {version}")
def notify_application_update(application: str, version: str) -> int:
    """One notification per deployment running an older version; returns how many new."""
    targets = find_older_deployments(application, version)
    return sum(notify_deployment(application, version, dep_id) for dep_id in targets)


@flow(name="reconcile-notifications")
def reconcile_notifications() -> int:
    """Catch a publish whose event was lost: re-notify for every newest published version."""
    return sum(notify_application_update(app, version)
               for app, version in find_newest_published())
