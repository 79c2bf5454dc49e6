"""Notifications: an operator is told once per deployment and reason that something happened.

They are written by ``edgefleet.crud.notify_once``; uniqueness is enforced by the records
(deployment, reason, key), so a trigger that fires twice, a second sweep or a reconcile can
never duplicate one. Here operators list and acknowledge them.
"""

from __future__ import annotations

from typing import Any

from sqlmodel import col, select

from edgefleet.db import session_scope
from edgefleet.errors import NotFound
from edgefleet.models.records import Notification, as_dict


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
