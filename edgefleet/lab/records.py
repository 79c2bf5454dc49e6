"""The lab's edges in edgefleet's own records: registered on ``up``, forgotten on ``down``."""

from __future__ import annotations

from edgefleet.api.edges import add_edge, remove_edge, show_edge
from edgefleet.crud import get_edge
from edgefleet.db import session_scope
from edgefleet.errors import AlreadyExists, InvalidInput, NotFound
from edgefleet.lab.state import EdgeState


def register_edge(edge: EdgeState) -> str:
    """Add the edge (engine checked); an existing record is kept, or corrected if it moved.

    Returns what happened: ``added``, ``kept`` or ``updated``.
    """
    tls = (None, None, None) if edge.pull else (edge.tls_ca, edge.tls_cert, edge.tls_key)
    try:
        add_edge(edge.name, edge.docker_host, tls_ca=tls[0], tls_cert=tls[1], tls_key=tls[2],
                 check=True, mode=edge.mode)
        return "added"
    except AlreadyExists:
        pass
    wanted = (edge.docker_host, *tls, edge.mode)
    current = show_edge(edge.name)
    if (current.docker_host, current.tls_ca, current.tls_cert, current.tls_key,
            current.mode) == wanted:
        return "kept"
    with session_scope() as session:
        record = get_edge(session, name=edge.name)
        (record.docker_host, record.tls_ca, record.tls_cert, record.tls_key,
         record.mode) = wanted
        session.add(record)
    return "updated"


def unregister_edge(edge: EdgeState) -> str:
    """Forget the edge if the record is this lab's and has no deployments.

    Returns ``removed``, ``absent``, ``foreign`` (same name, another engine) or the reason it
    was kept.
    """
    try:
        current = show_edge(edge.name)
    except NotFound:
        return "absent"
    if current.docker_host != edge.docker_host:
        return "foreign"
    try:
        remove_edge(edge.name)
    except NotFound:
        return "absent"
    except InvalidInput as exc:
        return f"kept: {exc}"
    return "removed"
