"""Tasks of the notification flows: who runs an older version, and one notification each."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NONE

from edgefleet import events, version_notices
from edgefleet.db import session_scope


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
