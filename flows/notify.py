"""Flows `notify-application-update` (run by the publish event) and its periodic reconcile.

Publishing a version notifies every deployment running an older one, once: the records
refuse a duplicate, so a trigger that fires twice or a reconcile adds nothing. A notice's
event has a fixed id, so announcing one again never delivers it twice.
"""

from __future__ import annotations

from typing import Annotated

from prefect import flow

from edgefleet.models.forms import form
from edgefleet.tasks.notifications import (
    announce_unreceived_notices,
    claim_failed_deliveries,
    end_redelivery,
    find_newest_published,
    find_older_deployments,
    notify_deployment,
    notify_missed,
    send_again,
)


@flow(name="notify-application-update",
      flow_run_name="notify {application} {version}")
def notify_application_update(
    application: Annotated[str, form("Application", "the application a version was "
                                                   "published of")],
    version: Annotated[str, form("Version", "the version that was published")],
) -> int:
    """One notification per deployment running an older version; returns how many new."""
    targets = find_older_deployments(application, version)
    return sum(notify_deployment(application, version, dep_id) for dep_id in targets)


@flow(name="reconcile-notifications")
def reconcile_notifications() -> int:
    """Catch what got lost: re-notify for every newest published version (a lost publish),
    announce again the recent notices whose own event never reached the server, and send
    again, once, each channel delivery that failed (Prefect's automations do not retry)."""
    added = notify_missed(find_newest_published())  # one task, not a subflow per application
    announce_unreceived_notices()
    failed = claim_failed_deliveries()
    sending = [send_again.submit(delivery) for delivery in failed]
    for delivery, future in zip(failed, sending, strict=True):
        future.wait()
        state = future.state
        if not state.is_completed():
            outcome = f"failed: {state.message or state.name}"
        else:  # "sent" only when it was: the notices list the channels that delivered
            outcome = "sent" if future.result() else "gone: no channel or notice to send"
        end_redelivery(delivery.invocation, outcome)
    return added
