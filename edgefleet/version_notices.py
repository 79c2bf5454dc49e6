"""Who must hear that a version was published: deployments running an older version.

Plain functions over the records (no Prefect needed), used by the notify flow, by its
reconcile, and directly by `app publish` when no Prefect server runs.
"""

from __future__ import annotations

import semver
from sqlmodel import Session, select

from edgefleet import parameters as P
from edgefleet import version_changes
from edgefleet.crud import get_application, get_version, latest_published, notify_once
from edgefleet.db import session_scope
from edgefleet.models.policies import Answer, UpdatePolicy, answer
from edgefleet.models.records import Application, ApplicationVersion, Deployment, Edge
from edgefleet.notice_events import Notice, notice_of

# Deployments running on an edge (CREATED or STOPPED ones start on whatever version is chosen).
ACTIVE = ("STARTING", "STARTED", "UPDATING", "ERROR")


def older_deployments(session: Session, *, application: str, version: str) -> list[str]:
    """Ids of the application's active deployments on a version older than ``version``."""
    app = get_application(session, name=application)
    target = semver.Version.parse(version)
    rows = session.exec(select(Deployment, ApplicationVersion).where(
        Deployment.application_id == app.id, Deployment.version_id == ApplicationVersion.id,
    )).all()
    return sorted(dep.id for dep, ver in rows
                  if dep.state in ACTIVE and semver.Version.parse(ver.version) < target)


def notify_version(application: str, version: str, deployment_id: str) -> Notice | None:
    """One notification for this deployment and version, if its update policy wants it: the
    new notice (for the caller to announce once committed), None when it already exists or
    the policy leaves this version out."""
    with session_scope() as session:
        dep = session.get(Deployment, deployment_id)
        if dep is None:
            return None
        current = session.get(ApplicationVersion, dep.version_id)
        assert current is not None
        decision, _why = answer(UpdatePolicy.model_validate(dep.policy),
                                current.version, version)
        if decision is Answer.SKIP:
            return None
        dep.update_available = f"version {version} published"
        session.add(dep)
        target = get_version(session, application=get_application(session, name=application),
                             version=version)
        created = notify_once(
            session, deployment=dep, application=application, from_version=current.version,
            to_version=version, reason="version", key=version,
            message=(f"{application} {version} is published; deployment {dep.id[:12]} runs "
                     f"{current.version}{changed_note(application, current, target)}"
                     f"{privileges_note(target)}"),
            command=f"edgefleet update {dep.id} --to {version}",
        )
        edge = session.get(Edge, dep.edge_id)
        return notice_of(created, edge.name if edge else "?") if created else None


# what a container is made from; a version differing from another in none of these (only in
# its URLs) keeps the running containers
SPEC_FIELDS = ("kind", "image", "compose", "env", "ports", "registry_secret", "allow_privileged",
               "parameters", "files")


def definition_of(application: str, row: ApplicationVersion) -> version_changes.Definition:
    """What the notice compares of a version (``version_changes``)."""
    params = P.of_version(row.parameters, kind=row.kind, text=row.compose)
    return version_changes.Definition(
        images=version_changes.images_of(row.kind, row.image, row.compose, application),
        defaults={**P.defaults(params), **(row.env or {})},
        sensitive=frozenset(p.name for p in params if p.sensitive),
        files=dict(row.files or {}), urls=dict(row.urls or {}),
        other={f: getattr(row, f) for f in SPEC_FIELDS if f not in ("env", "parameters",
                                                                     "files")})


def changed_note(application: str, current: ApplicationVersion,
                 target: ApplicationVersion) -> str:
    """What changed from the running version (images, parameter defaults, files, URLs);
    whether updating keeps the running containers."""
    note = version_changes.changes_note(definition_of(application, current),
                                        definition_of(application, target))
    if (current.urls or {}) != (target.urls or {}) and all(
            getattr(current, f) == getattr(target, f) for f in SPEC_FIELDS):
        note += ". Only its URLs changed: updating keeps the running containers"
    return note


def urls_note(current: ApplicationVersion, target: ApplicationVersion) -> str:
    """Whether the version's named URLs changed (and whether nothing else did)."""
    if (current.urls or {}) == (target.urls or {}):
        return ""
    if all(getattr(current, f) == getattr(target, f) for f in SPEC_FIELDS):
        return ". Only its URLs changed: updating keeps the running containers"
    return ". Its URLs changed too"


def privileges_note(version: ApplicationVersion) -> str:
    """What an operator must know before updating to a version created --allow-privileged."""
    if not version.allow_privileged:
        return ""
    asked = "; ".join(version.privileges) or "none used yet"
    return (f". Created with --allow-privileged: its containers get host-level privileges "
            f"on the edge ({asked})")


def notify_all(application: str, version: str) -> list[Notice]:
    """Notify every older deployment; returns the notices that are new (to announce)."""
    with session_scope() as session:
        targets = older_deployments(session, application=application, version=version)
    found = (notify_version(application, version, dep_id) for dep_id in targets)
    return [notice for notice in found if notice is not None]


def newest_published() -> list[tuple[str, str]]:
    """(application, newest published version) for every application that has one."""
    with session_scope() as session:
        found = []
        for app in session.exec(select(Application)).all():
            row = latest_published(session, application=app)
            if row is not None:
                found.append((app.name, row.version))
        return found
