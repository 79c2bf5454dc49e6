"""Tasks of the notification flows: who runs an older version, and one notification each."""

from __future__ import annotations

from datetime import timedelta

from prefect import get_run_logger, task
from prefect.cache_policies import NONE

from edgefleet import deliveries, events, version_notices
from edgefleet.crud import claim_announcement, claim_redelivery, unannounced_notices
from edgefleet.crud import end_redelivery as record_redelivery_end
from edgefleet.db import session_scope
from edgefleet.models.records import utcnow

# How far back a notice whose event never reached the server is announced again, how old it
# must be (its first emission may still be on its way), and how many are looked at (newest
# first) in one reconcile.
ANNOUNCE_AGAIN_WITHIN = timedelta(hours=1)
ANNOUNCE_AGAIN_AFTER = timedelta(seconds=15)
ANNOUNCE_AGAIN_AT_MOST = 500
# A failed delivery claimed this long ago and never ended was orphaned (its run died): it is
# claimed again. Far beyond a send's retries, queued behind the batch's others; well within
# ANNOUNCE_AGAIN_WITHIN, since the failure is found (and claimed) a reconcile after it.
REDELIVERY_ORPHANED_AFTER = timedelta(minutes=30)


@task(name="find-older-deployments", retries=2, retry_delay_seconds=1, cache_policy=NONE,
      task_run_name="deployments older than {application} {version}")
def find_older_deployments(application: str, version: str) -> list[str]:
    with session_scope() as session:
        return version_notices.older_deployments(session, application=application,
                                                 version=version)


@task(name="notify-deployment", retries=2, retry_delay_seconds=1, cache_policy=NONE,
      task_run_name="notify {deployment_id} of {application} {version}")
def notify_deployment(application: str, version: str, deployment_id: str) -> bool:
    """Record the notice; announce it (its event) only when it is new."""
    notice = version_notices.notify_version(application, version, deployment_id)
    if notice is not None:
        events.emit_notice(notice)
    return notice is not None


@task(name="find-newest-published", retries=2, retry_delay_seconds=1, cache_policy=NONE)
def find_newest_published() -> list[tuple[str, str]]:
    """(application, newest published version) for every application that has one."""
    return version_notices.newest_published()


@task(name="notify-missed", retries=2, retry_delay_seconds=1, cache_policy=NONE)
def notify_missed(published: list[tuple[str, str]]) -> int:
    """The notices a lost publish event left out, for every (application, newest published
    version): how many were new (each announced)."""
    added = 0
    for application, version in published:
        for notice in version_notices.notify_all(application, version):
            events.emit_notice(notice)
            added += 1
    if added:
        get_run_logger().info("%d notice(s) a lost publish event left out: recorded", added)
    return added


@task(name="announce-unreceived-notices", retries=2, retry_delay_seconds=1, cache_policy=NONE)
def announce_unreceived_notices() -> int:
    """Send again the events of recent notices the Prefect server never received (event
    delivery is best effort). A notice younger than ``ANNOUNCE_AGAIN_AFTER`` may still be on
    its way and is left for a later reconcile; each notice is announced again at most once,
    claimed on its record first, because a trigger can fire on an event before the server
    stores it, and a second emission in that gap would be delivered twice."""
    now = utcnow()
    with session_scope() as session:
        found = unannounced_notices(session, since=now - ANNOUNCE_AGAIN_WITHIN,
                                    until=now - ANNOUNCE_AGAIN_AFTER,
                                    limit=ANNOUNCE_AGAIN_AT_MOST)
    by_event = {notice.event_id: (row_id, notice) for row_id, notice in found if notice.event_id}
    sent = 0
    for event_id in events.missing_on_server(list(by_event)):
        row_id, notice = by_event[event_id]
        with session_scope() as session:
            claimed = claim_announcement(session, notification_id=row_id, at=utcnow())
        if claimed:
            events.emit_notice(notice)
            sent += 1
    if sent:
        get_run_logger().info("%d notice(s) never reached the Prefect server: sent again", sent)
    return sent


@task(name="claim-failed-deliveries", retries=2, retry_delay_seconds=1, cache_policy=NONE)
def claim_failed_deliveries() -> list[deliveries.FailedDelivery]:
    """The channel deliveries that failed within the last hour and were never sent again,
    each claimed on its record first (so each is sent again once, whoever reconciles), or
    whose claim was orphaned (``REDELIVERY_ORPHANED_AFTER``)."""
    claimed = []
    now = utcnow()
    for delivery in deliveries.failed_deliveries(since=now - ANNOUNCE_AGAIN_WITHIN):
        with session_scope() as session:
            if claim_redelivery(session, invocation=delivery.invocation,
                                channel=delivery.channel, event_id=delivery.event_id,
                                reason=delivery.reason,
                                stale_before=now - REDELIVERY_ORPHANED_AFTER):
                claimed.append(delivery)
    if claimed:
        get_run_logger().info("%d failed channel deliveries: sending them again", len(claimed))
    return claimed


@task(name="send-again", retries=3, retry_delay_seconds=[1, 5, 15], cache_policy=NONE,
      task_run_name="send again to {delivery.channel}")
def send_again(delivery: deliveries.FailedDelivery) -> bool:
    """The notice of a failed delivery, through the channel's block (Prefect retries it)."""
    sent = deliveries.redeliver(delivery)
    if not sent:
        get_run_logger().info("channel %s or its notice is gone: nothing to send",
                              delivery.channel)
    return sent


@task(name="end-redelivery", retries=2, retry_delay_seconds=1, cache_policy=NONE)
def end_redelivery(invocation: str, outcome: str) -> None:
    with session_scope() as session:
        record_redelivery_end(session, invocation=invocation, outcome=outcome)
