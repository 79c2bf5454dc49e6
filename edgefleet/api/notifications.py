"""Notifications: an operator is told once per deployment and reason that something happened.

Uniqueness is enforced by the records (deployment, reason, key), so a trigger that fires
twice, a second sweep or a reconcile can never duplicate one.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from edgefleet.db import session_scope
from edgefleet.errors import NotFound
from edgefleet.models.records import Deployment, Notification, as_dict
from edgefleet.settings import get_settings


def ui_link(deployment: Deployment) -> str:
    """Where to look: the Prefect UI's page of the deployment's last flow run."""
    base = f"http://127.0.0.1:{get_settings().prefect_port}"
    if deployment.flow_run_id:
        return f"{base}/runs/flow-run/{deployment.flow_run_id}"
    return f"{base}/deployments"


def notify_once(session: Session, *, deployment: Deployment, application: str,
                from_version: str, to_version: str, reason: str, key: str, command: str,
                message: str) -> Notification | None:
    """Add the notification unless the same (deployment, reason, key) exists; None then."""
    exists = session.exec(select(Notification).where(
        Notification.deployment_id == deployment.id, Notification.reason == reason,
        Notification.key == key)).first()
    if exists is not None:
        return None
    row = Notification(deployment_id=deployment.id, application=application,
                       from_version=from_version, to_version=to_version, reason=reason, key=key,
                       link=ui_link(deployment), command=command, message=message)
    try:
        with session.begin_nested():
            session.add(row)
    except IntegrityError:  # a concurrent run added it first
        return None
    return row


def list_notifications(*, include_acknowledged: bool = False) -> list[dict[str, Any]]:
    with session_scope() as session:
        query = select(Notification).order_by(col(Notification.created_at))
        if not include_acknowledged:
            query = query.where(col(Notification.acknowledged).is_(False))
        return [as_dict(n) for n in session.exec(query).all()]


def acknowledge(notification_id: int) -> dict[str, Any]:
    with session_scope() as session:
        row = session.get(Notification, notification_id)
        if row is None:
            raise NotFound(f"no notification {notification_id} (see `edgefleet notifications`)")
        row.acknowledged = True
        session.add(row)
        return as_dict(row)
