"""What edgefleet tells people, as Prefect events: the kinds, their resources, their text.

Pure: builds the event (name, resource, related resources, payload) from a notice; the
caller emits it after the notice is committed. A notice is recorded once per deployment,
reason and key (the records enforce it), and its event is emitted only when the record is
new, so a reconcile that finds a notice again never announces it twice.

Every event names the edge and, where there is one, the deployment and the application as
related resources (role ``edge`` / ``deployment`` / ``application``), so one automation
filter works for every kind: see :func:`channel_filters`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from uuid import NAMESPACE_URL, uuid5

# notify kind (what `edgefleet notify add --on` takes) -> Prefect event name
KINDS: dict[str, str] = {
    "update-available": "edgefleet.update.available",
    "rolled-back": "edgefleet.update.rolled-back",
    "failed": "edgefleet.update.failed",
    "offline": "edgefleet.edge.offline",
    "online": "edgefleet.edge.online",
    "halted": "edgefleet.group.halted",
    "awaiting-approval": "edgefleet.group.awaiting-approval",
}
# notification reason (the records) -> notify kind
KIND_OF_REASON = {"version": "update-available", "image": "update-available",
                  "rollback": "rolled-back", "failed": "failed"}


@dataclass(frozen=True)
class Notice:
    """One thing worth telling, with where it happened and what to do."""

    kind: str
    message: str
    edge: str
    deployment_id: str | None = None
    application: str | None = None
    from_version: str | None = None
    to_version: str | None = None
    command: str | None = None
    link: str | None = None
    event_id: str | None = None  # fixed for a recorded notice: see notice_event_id
    extra: dict[str, Any] = field(default_factory=dict)


def notice_event_id(row: Any) -> str | None:
    """The event id of a recorded notice (a notification row or its dict), the same whoever
    emits it and however often: the Prefect server keeps one event per id, and deliveries are
    traced back to the notice. Made of what identifies the notice (deployment, reason, key),
    never of its row id: the database reuses a deleted row's id, and a new notice with an
    old notice's event id would be taken for it and never delivered."""
    fields = row if isinstance(row, dict) else {
        name: getattr(row, name, None) for name in ("id", "deployment_id", "reason", "key")}
    if fields.get("id") is None:
        return None
    return str(uuid5(NAMESPACE_URL, "edgefleet.notification.{}.{}.{}".format(
        fields["deployment_id"], fields["reason"], fields["key"])))


def related(role: str, name: str) -> dict[str, str]:
    return {"prefect.resource.id": f"edgefleet.{role}.{name}",
            "prefect.resource.role": role, "prefect.resource.name": name}


def text_of(notice: Notice) -> str:
    """The message a person reads: what, where, from → to, the command, the link."""
    lines = [notice.message]
    where = f"edge {notice.edge}"
    if notice.deployment_id:
        where = f"deployment {notice.deployment_id[:12]} of {notice.application} on {where}"
    lines.append(f"where: {where}")
    if notice.from_version or notice.to_version:
        lines.append(f"version: {notice.from_version or '?'} → {notice.to_version or '?'}")
    if notice.command:
        lines.append(f"command: {notice.command}")
    if notice.link:
        lines.append(f"link: {notice.link}")
    return "\n".join(lines)


def event_of(notice: Notice) -> dict[str, Any]:
    """``emit_event`` arguments for the notice (the edge itself is related too, so a channel
    filtered by edge matches its offline/online events as well as its updates)."""
    if notice.kind not in KINDS:
        raise ValueError(f"unknown notice kind {notice.kind!r}")
    if notice.deployment_id:
        resource = {"prefect.resource.id": f"edgefleet.deployment.{notice.deployment_id}",
                    "prefect.resource.name": notice.deployment_id[:12]}
    else:
        resource = {"prefect.resource.id": f"edgefleet.edge.{notice.edge}",
                    "prefect.resource.name": notice.edge}
    links = [related("edge", notice.edge)]
    if notice.application:
        links.append(related("application", notice.application))
    if notice.deployment_id:
        links.append(related("deployment", notice.deployment_id))
    payload = {"kind": notice.kind, "message": notice.message, "text": text_of(notice),
               "edge": notice.edge, "deployment_id": notice.deployment_id,
               "application": notice.application, "from_version": notice.from_version,
               "to_version": notice.to_version, "command": notice.command,
               "link": notice.link, **notice.extra}
    fields = {"event": KINDS[notice.kind], "resource": resource, "related": links,
              "payload": payload}
    if notice.event_id:
        fields["id"] = notice.event_id
    return fields


def channel_filters(application: str | None, edge: str | None) -> list[dict[str, str]]:
    """``match_related`` of a channel's automation: every given filter must match."""
    found = []
    if application:
        found.append({"prefect.resource.role": "application",
                      "prefect.resource.id": f"edgefleet.application.{application}"})
    if edge:
        found.append({"prefect.resource.role": "edge",
                      "prefect.resource.id": f"edgefleet.edge.{edge}"})
    return found


def parse_kinds(text: str | list[str]) -> list[str]:
    """``update-available,rolled-back`` → the kinds, each checked; a bad one is named."""
    items = text.split(",") if isinstance(text, str) else [k for t in text for k in t.split(",")]
    kinds = [k.strip() for k in items if k.strip()]
    if not kinds:
        raise ValueError(f"--on needs at least one kind: {', '.join(KINDS)}")
    unknown = [k for k in kinds if k not in KINDS]
    if unknown:
        raise ValueError(f"unknown notification kind {', '.join(map(repr, unknown))}: use "
                         f"{', '.join(KINDS)}")
    return list(dict.fromkeys(kinds))


def notice_of(row: Any, edge: str) -> Notice:
    """The notice of a notification record (any object with its fields) on ``edge``."""
    return Notice(kind=KIND_OF_REASON.get(row.reason, "update-available"), message=row.message,
                  edge=edge, deployment_id=row.deployment_id, application=row.application,
                  from_version=row.from_version, to_version=row.to_version,
                  command=row.command, link=row.link, event_id=notice_event_id(row))


def group_event_of(kind: str, *, group: str, application: str, version: str, message: str,
                   edges: list[str], command: str | None = None, event_id: str | None = None,
                   extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """``emit_event`` arguments for a notice about a whole deployment group (``halted``,
    ``awaiting-approval``): the group is the resource; the application and every member edge
    are related, so a channel filtered by application or by one of its edges hears of it."""
    if kind not in KINDS:
        raise ValueError(f"unknown notice kind {kind!r}")
    where = f"group {group} of {application} ({len(edges)} edge{'' if len(edges) == 1 else 's'})"
    lines = [message, f"where: {where}", f"version: {version}"]
    if command:
        lines.append(f"command: {command}")
    payload = {"kind": kind, "message": message, "text": "\n".join(lines), "group": group,
               "edge": None, "deployment_id": None, "application": application,
               "from_version": None, "to_version": version, "command": command, "link": None,
               "edges": list(edges), **(extra or {})}
    fields: dict[str, Any] = {
        "event": KINDS[kind],
        "resource": {"prefect.resource.id": f"edgefleet.group.{group}",
                     "prefect.resource.name": group},
        "related": [related("application", application)]
        + [related("edge", edge) for edge in sorted(edges)],
        "payload": payload}
    if event_id:
        fields["id"] = event_id
    return fields


def group_event_id(group: str, kind: str, occasion: str) -> str:
    """A fixed event id for one notice of a group (``occasion``: the rollout's flow run), so a
    retried task announces it once."""
    return str(uuid5(NAMESPACE_URL, f"edgefleet.group.{group}.{kind}.{occasion}"))
