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
from edgefleet.notice_events import notice_event_id


def list_notifications(*, include_acknowledged: bool = False) -> list[dict[str, Any]]:
    """The notices (unacknowledged unless asked), each with the channels that delivered it
    (``delivered_to``: from the automations' events and edgefleet's re-sends; None when no
    Prefect server answers, as who delivered is then unknown)."""
    with session_scope() as session:
        query = select(Notification).order_by(col(Notification.created_at))
        if not include_acknowledged:
            query = query.where(col(Notification.acknowledged).is_(False))
        rows = [as_dict(n) for n in session.exec(query).all()]
    import httpx

    from edgefleet.api.channels import delivered_to  # Prefect only when a server runs

    ids = {row["id"]: notice_event_id(row) for row in rows}
    try:
        delivered = delivered_to([i for i in ids.values() if i])
    except httpx.HTTPError:  # the server did not answer: who delivered is unknown (None)
        delivered = None
    for row in rows:
        row["delivered_to"] = (None if delivered is None
                               else delivered.get(ids[row["id"]] or "", []))
    return rows


def acknowledge(notification_id: int) -> dict[str, Any]:
    with session_scope() as session:
        row = session.get(Notification, notification_id)
        if row is None:
            raise NotFound(f"no notification {notification_id} (see `edgefleet notifications`)")
        row.acknowledged = True
        session.add(row)
        return as_dict(row)
