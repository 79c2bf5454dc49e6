"""Records access shared by the API, the tasks and the notification rules.

Functions over edgefleet's records, keyword-only after the session, which the caller owns
(opens with ``edgefleet.db.session_scope`` and commits): a task and an API call that both
need "the version V of application A" read it the same way, and neither imports the other.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any, cast

import semver
from sqlalchemy import CursorResult, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from edgefleet.errors import NotFound
from edgefleet.models.policies import UpdatePolicy
from edgefleet.models.records import (
    Application,
    ApplicationVersion,
    ContainerStatus,
    Deployment,
    Edge,
    Notification,
    Redelivery,
)
from edgefleet.selectors import Selector, matches
from edgefleet.settings import get_settings

if TYPE_CHECKING:  # the image rules are only needed by running_images (not by a listing)
    from edgefleet.image_updates import RunningImage
    from edgefleet.notice_events import Notice


def get_application(session: Session, *, name: str) -> Application:
    app = session.exec(select(Application).where(Application.name == name)).first()
    if app is None:
        raise NotFound(f"no application named {name!r} (see `edgefleet app list`)")
    return app


def get_version(session: Session, *, application: Application, version: str) -> ApplicationVersion:
    row = session.exec(
        select(ApplicationVersion).where(
            ApplicationVersion.application_id == application.id,
            ApplicationVersion.version == version,
        )
    ).first()
    if row is None:
        known = ", ".join(v.version for v in versions_of(session, application=application))
        raise NotFound(
            f"application {application.name!r} has no version {version!r} (known: {known or '-'})"
        )
    return row


def versions_of(session: Session, *, application: Application) -> list[ApplicationVersion]:
    rows = session.exec(
        select(ApplicationVersion).where(ApplicationVersion.application_id == application.id)
    ).all()
    return sorted(rows, key=lambda v: semver.Version.parse(v.version))


def latest_published(session: Session, *, application: Application) -> ApplicationVersion | None:
    published = [v for v in versions_of(session, application=application) if v.published]
    return published[-1] if published else None


def get_edge(session: Session, *, name: str, for_update: bool = False) -> Edge:
    """The edge named ``name``; with ``for_update`` its row stays locked until the session
    ends, so that a change read from it and written back (labels merged) never drops
    another's change made meanwhile. The lock is a no-op UPDATE: it takes SQLite's write lock
    (where ``SELECT ... FOR UPDATE`` does nothing) and PostgreSQL's row lock alike."""
    if for_update:
        session.exec(update(Edge).where(col(Edge.name) == name)
                     .values(name=Edge.name).execution_options(synchronize_session=False))
    edge = session.exec(select(Edge).where(Edge.name == name)).first()
    if edge is None:
        raise NotFound(f"no edge named {name!r} (see `edgefleet edge list`)")
    return edge


def select_edges(session: Session, *, selector: Selector | None = None) -> list[Edge]:
    """Edges by name; with ``selector``, only those whose labels match it.

    The one place edges are picked by label: matched here in Python, after loading them
    (cheap for thousands of edges); the place to move into SQL when a fleet outgrows that.
    """
    edges = session.exec(select(Edge).order_by(col(Edge.name))).all()
    if selector is None:
        return list(edges)
    return [edge for edge in edges if matches(selector, edge.labels)]


def containers_of(session: Session, *, deployment_id: str) -> list[ContainerStatus]:
    """The deployment's recorded per-container status, by service."""
    return list(session.exec(select(ContainerStatus).where(
        ContainerStatus.deployment_id == deployment_id).order_by(ContainerStatus.service)).all())


def running_images(session: Session) -> list[RunningImage]:
    """Images of every STARTED deployment, from the recorded per-container status (those
    pinned by digest left out: they cannot move)."""
    from edgefleet.image_updates import RunningImage, is_checkable

    rows = session.exec(
        select(ContainerStatus, Deployment, Application, ApplicationVersion)
        .where(ContainerStatus.deployment_id == Deployment.id,
               Deployment.application_id == Application.id,
               Deployment.version_id == ApplicationVersion.id,
               Deployment.state == "STARTED")
    ).all()
    return [RunningImage(deployment_id=dep.id, application=app.name, version=ver.version,
                         service=cs.service, ref=cs.image, digest=cs.digest,
                         policy=UpdatePolicy.model_validate(dep.policy),
                         registry_secret=ver.registry_secret)
            for cs, dep, app, ver in rows if is_checkable(cs.image)]


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


def unannounced_notices(session: Session, *, since: datetime, until: datetime, limit: int
                        ) -> list[tuple[int, Notice]]:
    """The notices recorded between ``since`` and ``until`` (newest first, at most
    ``limit``) that were never announced again, each with its row id and event id."""
    from edgefleet.notice_events import notice_of

    rows = session.exec(select(Notification, Edge.name).where(
        col(Notification.created_at) >= since, col(Notification.created_at) <= until,
        col(Notification.announced_again_at).is_(None),
        Notification.deployment_id == Deployment.id,
        Deployment.edge_id == Edge.id).order_by(col(Notification.id).desc()).limit(limit)).all()
    return [(row.id, notice_of(row, edge)) for row, edge in rows if row.id is not None]


def claim_announcement(session: Session, *, notification_id: int, at: datetime) -> bool:
    """Mark the notice as announced again unless a concurrent reconcile did (compare and
    set): only the caller that gets True sends its event."""
    statement = (update(Notification)
                 .where(col(Notification.id) == notification_id,
                        col(Notification.announced_again_at).is_(None))
                 .values(announced_again_at=at)
                 .execution_options(synchronize_session=False))
    result = cast(CursorResult[Any], session.exec(statement))  # type: ignore[call-overload]
    return result.rowcount == 1


def claim_redelivery(session: Session, *, invocation: str, channel: str, event_id: str,
                     reason: str) -> bool:
    """Record that a failed delivery is sent again; False when another run claimed it."""
    if session.get(Redelivery, invocation) is not None:
        return False
    try:
        with session.begin_nested():
            session.add(Redelivery(invocation=invocation, channel=channel, event_id=event_id,
                                   reason=reason[:1000]))
    except IntegrityError:  # a concurrent reconcile claimed it first
        return False
    return True


def end_redelivery(session: Session, *, invocation: str, outcome: str) -> None:
    row = session.get(Redelivery, invocation)
    if row is not None:
        row.outcome = outcome[:1000]
        session.add(row)


def redeliveries(session: Session, *, channel: str) -> list[Redelivery]:
    """A channel's deliveries sent again, newest first."""
    return list(session.exec(select(Redelivery).where(Redelivery.channel == channel)
                             .order_by(col(Redelivery.created_at).desc())).all())

