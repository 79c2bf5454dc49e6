"""Edges: register, list, show, change and remove the Docker engines we drive."""

from __future__ import annotations

import stat
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlmodel import col, delete, select

from edgefleet.crud import get_edge, select_edges
from edgefleet.db import session_scope
from edgefleet.errors import AlreadyExists, InvalidInput
from edgefleet.models.records import Deployment, Edge
from edgefleet.models.telemetry import EdgeAvailability, EdgeSample, EdgeSampleHourly
from edgefleet.record_views import edge_view
from edgefleet.selectors import Selector, parse_keys, parse_labels, parse_selector, relabel
from edgefleet.url_templates import check_address
from edgefleet.validation import validated

# labels as a mapping or as "KEY=VALUE" entries (the CLI form; a single string is one entry)
LabelsArg = Mapping[str, str] | Iterable[str] | str | None


def add_edge(
    name: str,
    docker_host: str,
    *,
    address: str | None = None,
    tls_ca: str | None = None,
    tls_cert: str | None = None,
    tls_key: str | None = None,
    telemetry_interval: int = 60,
    heartbeat_interval: int = 20,
    labels: LabelsArg = None,
    check: bool = True,
    mode: str = "push",
) -> Edge:
    """Register an edge; with ``check`` (the default) its engine must answer first.

    ``address``: the host name or (VPN) address its users reach, used in its deployments'
    URLs (default: the host of ``docker_host``). ``mode="pull"``: the edge's agent
    (`edgefleet agent --edge NAME`) reaches the engine at ``docker_host`` (a local socket) and
    runs every step there; nothing is checked now, the agent's heartbeats make it ONLINE.
    ``labels``: ``{"site": "plant-7"}`` or
    ``["site=plant-7", ...]``, picked by ``list_edges(selector=...)`` (``edgefleet.selectors``).
    """
    from edgefleet.models.inputs import EdgeCreate  # yaml, semver: only to add one

    _check_intervals(telemetry_interval, heartbeat_interval)
    spec = validated(
        EdgeCreate,
        name=name,
        docker_host=docker_host,
        address=None if address is None else check_address(address),
        labels=parse_labels(labels),
        tls_ca=tls_ca,
        tls_cert=tls_cert,
        tls_key=tls_key,
        telemetry_interval=telemetry_interval,
        heartbeat_interval=heartbeat_interval,
        mode=mode,
    )
    with session_scope() as session:
        if session.exec(select(Edge).where(Edge.name == spec.name)).first():
            raise AlreadyExists(f"an edge named {spec.name!r} already exists")
    edge = Edge(**spec.model_dump())
    if check and edge.mode == "push":
        from edgefleet.engine import ping  # docker: only to check the engine answers
        from edgefleet.models.connections import connection_of

        ping(connection_of(edge))
        edge.status = "ONLINE"
        edge.last_contact = datetime.now(UTC)
    with session_scope() as session:
        session.add(edge)
        try:  # the unique name decides: another add may have won since the check above
            session.flush()
        except IntegrityError as exc:
            raise AlreadyExists(f"an edge named {spec.name!r} already exists") from exc
    return edge


def _check_intervals(telemetry: int | None, heartbeat: int | None) -> None:
    """The same one-line refusal from `edge add` and `edge set` (the model checks again)."""
    from edgefleet.models.inputs import MIN_HEARTBEAT_SECONDS, check_interval  # yaml, semver

    for label, value, minimum in (("telemetry interval", telemetry, 1),
                                  ("heartbeat interval", heartbeat, MIN_HEARTBEAT_SECONDS)):
        if value is not None:
            try:
                check_interval(value, label, minimum)
            except ValueError as exc:
                raise InvalidInput(str(exc)) from exc


def set_edge(
    name: str, *, telemetry_interval: int | None = None, heartbeat_interval: int | None = None,
    address: str | None = None, clear_address: bool = False, labels: LabelsArg = None,
    unlabel: Iterable[str] | str | None = None,
) -> Edge:
    """Change an edge's telemetry and heartbeat intervals (seconds), the address its users
    reach (``clear_address``: back to the docker host's) and its labels: ``labels`` are added
    or replace the values of the same keys, the keys in ``unlabel`` are removed (a key the
    edge does not have is ignored). Everything is checked before anything is written."""
    if address is not None and clear_address:
        raise InvalidInput("give --address or --clear-address, not both")
    if address is not None:
        address = check_address(address)
    _check_intervals(telemetry_interval, heartbeat_interval)
    add, remove = parse_labels(labels), parse_keys(unlabel)
    relabel({}, add=add, remove=remove)  # a key both set and removed: refused before the edge
    with session_scope() as session:
        edge = get_edge(session, name=name, for_update=bool(add or remove))
        if add or remove:
            edge.labels = relabel(edge.labels, add=add, remove=remove, owner=f"edge {name!r}")
        if telemetry_interval is not None:
            edge.telemetry_interval = telemetry_interval
        if heartbeat_interval is not None:
            edge.heartbeat_interval = heartbeat_interval
        if address is not None or clear_address:
            edge.address = address
        session.add(edge)
    return edge


def key_file_warnings(edge: Edge) -> list[str]:
    """Warnings about the edge's TLS client key file: whoever reads it drives the engine
    as root, so it should be readable by its owner only (mode 600)."""
    if not edge.tls_key:
        return []
    path = Path(edge.tls_key)
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except OSError as exc:
        return [f"edge {edge.name}: cannot read the TLS key {path}: {exc.strerror}"]
    if mode & 0o077:
        return [f"edge {edge.name}: the TLS key {path} is readable by others (mode {mode:04o}); "
                f"whoever reads it controls the engine: chmod 600 {path}"]
    return []


def list_edges(*, selector: str | Selector | None = None) -> list[Edge]:
    """Every edge by name; with ``selector`` (``"site=plant-7,tier!=canary,!retired"``, see
    ``edgefleet.selectors``) only the edges whose labels match it."""
    chosen = (selector if selector is None or isinstance(selector, Selector)
              else parse_selector(selector))
    with session_scope() as session:
        return select_edges(session, selector=chosen)


def show_edge(name: str) -> Edge:
    with session_scope() as session:
        return get_edge(session, name=name)


def remove_edge(name: str) -> None:
    """Forget an edge; refused while deployments still point at it."""
    with session_scope() as session:
        edge = get_edge(session, name=name)
        used = session.exec(select(Deployment).where(Deployment.edge_id == edge.id)).all()
        if used:
            raise InvalidInput(
                f"edge {name!r} still has {len(used)} deployment(s); delete them first "
                f"(`edgefleet deployments`)"
            )
        for model in (EdgeSample, EdgeSampleHourly, EdgeAvailability):  # its telemetry
            session.exec(delete(model).where(col(model.edge_id) == edge.id))  # type: ignore[call-overload]
        session.delete(edge)


def edge_public(edge: Edge) -> dict[str, Any]:
    return edge_view(edge.model_dump())
