"""Tasks of the notification flows: who runs an older version, and one notification each."""

from __future__ import annotations

from datetime import timedelta

from prefect import get_run_logger, task
from prefect.cache_policies import NONE

from edgefleet import events, version_notices
from edgefleet.crud import recent_notices
from edgefleet.db import session_scope
from edgefleet.models.records import utcnow

# How far back a notice whose event never reached the server is announced again, and how
# many are looked at (newest first) in one reconcile.
ANNOUNCE_AGAIN_WITHIN = timedelta(hours=1)
ANNOUNCE_AGAIN_AT_MOST = 500


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
    delivery is best effort; each notice's event id is fixed, so nothing is sent twice)."""
    with session_scope() as session:
        notices = recent_notices(session, since=utcnow() - ANNOUNCE_AGAIN_WITHIN,
                                 limit=ANNOUNCE_AGAIN_AT_MOST)
    by_id = {n.event_id: n for n in notices if n.event_id}
    missing = events.missing_on_server(list(by_id))
    for event_id in missing:
        events.emit_notice(by_id[event_id])
    if missing:
        get_run_logger().info("%d notice(s) never reached the Prefect server: sent again",
                              len(missing))
    return len(missing)
