"""Flows `notify-application-update` (run by the publish event) and its periodic reconcile.

Publishing a version notifies every deployment running an older one, once: the records
refuse a duplicate, so a trigger that fires twice or a reconcile adds nothing.
"""

from __future__ import annotations

from prefect import flow, task
from prefect.cache_policies import NONE

from edgefleet import version_notices


@task(name="find-older-deployments", retries=2, retry_delay_seconds=1, cache_policy=NONE,
      task_run_name="deployments older than {application} {version}")
def find_older_deployments(application: str, version: str) -> list[str]:
    from edgefleet.db import session_scope

    with session_scope() as session:
        return version_notices.older_deployments(session, application=application,
                                                 version=version)


@task(name="notify-deployment", retries=2, retry_delay_seconds=1, cache_policy=NONE,
      task_run_name="notify {deployment_id} of {application} {version}")
def notify_deployment(application: str, version: str, deployment_id: str) -> bool:
    return version_notices.notify_version(application, version, deployment_id)


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
               for app, version in version_notices.newest_published())
