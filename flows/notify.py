"""Flows `notify-application-update` (run by the publish event) and its periodic reconcile.

Publishing a version notifies every deployment running an older one, once: the records
refuse a duplicate, so a trigger that fires twice or a reconcile adds nothing. A notice's
event has a fixed id, so announcing one again never delivers it twice.
"""

from __future__ import annotations

from prefect import flow

from edgefleet.tasks.notifications import (
    announce_unreceived_notices,
    find_newest_published,
    find_older_deployments,
    notify_deployment,
    notify_missed,
)


@flow(name="notify-application-update",
      flow_run_name="notify {application} {version}")
def notify_application_update(application: str, version: str) -> int:
    """One notification per deployment running an older version; returns how many new."""
    targets = find_older_deployments(application, version)
    return sum(notify_deployment(application, version, dep_id) for dep_id in targets)


@flow(name="reconcile-notifications")
def reconcile_notifications() -> int:
    """Catch a lost event: re-notify for every newest published version (a lost publish),
    and announce again the recent notices whose own event never reached the server."""
    added = notify_missed(find_newest_published())  # one task, not a subflow per application
    announce_unreceived_notices()
    return added
