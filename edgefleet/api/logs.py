"""Deployment logs, fetched a page at a time per service and resumed where the last stopped.

The reference streams 200 lines at a time to limit bandwidth. We read the engine's log
stream from the stored cursor and stop reading after the page, so a long history is never
transferred at once; the cursor (last timestamp and how many lines carried it) is stored
per deployment and service, so nothing is repeated and nothing is skipped.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlmodel import select

from edgefleet.api.deployments import find_deployment
from edgefleet.db import session_scope
from edgefleet.edge_calls import on_edge
from edgefleet.engine import engine_client, observe
from edgefleet.errors import InvalidInput
from edgefleet.models.connections import EngineConnection, connection_of
from edgefleet.models.records import Edge, LogCursor
from edgefleet.settings import get_settings


def parse_timestamp(text: str) -> int:
    """RFC 3339 with up to nanoseconds (Docker trims trailing zeros) → ns since the epoch."""
    main, _, frac = text.rstrip("Z").partition(".")
    frac, tz = (frac[:-6], frac[-6:]) if frac[-6:-5] in ("+", "-") else (frac, "")
    if not tz and main[-6:-5] in ("+", "-"):
        main, tz = main[:-6], main[-6:]
    stamp = datetime.fromisoformat(main + (tz or "+00:00"))
    return int(stamp.timestamp()) * 1_000_000_000 + int((frac + "000000000")[:9] or 0)


def since_argument(ns: int) -> str:
    """The engine's ``since`` takes seconds with a fractional part (inclusive)."""
    return f"{ns // 1_000_000_000}.{ns % 1_000_000_000:09d}"


def fetch_logs(
    ref: str, *, service: str | None = None, lines: int | None = None, since: str | None = None
) -> dict[str, list[str]]:
    """Up to ``lines`` new log lines per service (with timestamps), resuming per service."""
    lines = lines or get_settings().log_lines
    if lines < 1:
        raise InvalidInput("--lines must be at least 1")
    explicit_since = _parse_since(since) if since else None
    with session_scope() as session:
        dep = find_deployment(session, ref)
        edge = session.get(Edge, dep.edge_id)
        assert edge is not None
        conn, dep_id = connection_of(edge), dep.id
        cursors = {c.service: c for c in session.exec(
            select(LogCursor).where(LogCursor.deployment_id == dep_id)).all()}
    starts = {svc: (parse_timestamp(c.last_timestamp), c.lines_at_timestamp)
              for svc, c in cursors.items()}
    result = read_log_pages(conn, dep_id, service, starts, explicit_since, lines)
    _store_cursors(dep_id, result, cursors)
    return result


@on_edge
def read_log_pages(conn: EngineConnection, deployment_id: str, service: str | None,
                   cursors: dict[str, tuple[int, int]], since_ns: int | None, lines: int
                   ) -> dict[str, list[str]]:
    """Up to ``lines`` lines per service from where its cursor (timestamp ns, lines already
    read at it) or ``since_ns`` says; on a pull edge, read by its agent."""
    result: dict[str, list[str]] = {}
    with engine_client(conn) as client:
        containers = observe(client, conn, deployment_id)
        services = sorted({c.service for c in containers})
        if service is not None and service not in services:
            raise InvalidInput(f"deployment {deployment_id[:12]} has no service {service!r} "
                               f"(services: {', '.join(services) or '-'})")
        for obs in containers:
            if service is not None and obs.service != service:
                continue
            start_ns, skip = (since_ns, 0) if since_ns is not None else \
                cursors.get(obs.service, (None, 0))
            page = _read_page(client, obs.container_id, start_ns, skip, lines)
            result.setdefault(obs.service, []).extend(page)
    return result


def _read_page(client: Any, container_id: str, start_ns: int | None, skip: int, lines: int
               ) -> list[str]:
    kwargs: dict[str, Any] = {"timestamps": True, "stream": True, "follow": False}
    if start_ns is not None:
        kwargs["since"] = float(since_argument(start_ns))
    stream = client.api.logs(container_id, **kwargs)
    page: list[str] = []
    buffer = ""
    skipped = 0
    try:
        for chunk in stream:
            buffer += chunk.decode(errors="replace")
            while "\n" in buffer and len(page) < lines:
                line, buffer = buffer.split("\n", 1)
                if not line:
                    continue
                stamp = parse_timestamp(line.split(" ", 1)[0])
                if start_ns is not None and stamp < start_ns:
                    continue
                if start_ns is not None and stamp == start_ns and skipped < skip:
                    skipped += 1
                    continue
                page.append(line)
            if len(page) >= lines:
                break
    finally:
        close = getattr(stream, "close", None)
        if close:
            close()
    return page


def _store_cursors(dep_id: str, result: dict[str, list[str]],
                   old: dict[str, LogCursor]) -> None:
    with session_scope() as session:
        for service, page in result.items():
            if not page:
                continue
            last = page[-1].split(" ", 1)[0]
            same = sum(1 for line in page if line.split(" ", 1)[0] == last)
            previous = old.get(service)
            if previous and previous.last_timestamp == last:
                same += previous.lines_at_timestamp
            row = session.exec(select(LogCursor).where(
                LogCursor.deployment_id == dep_id, LogCursor.service == service)).first()
            row = row or LogCursor(deployment_id=dep_id, service=service, last_timestamp=last)
            row.last_timestamp, row.lines_at_timestamp = last, same
            session.add(row)


def _parse_since(text: str) -> int:
    try:
        return parse_timestamp(text)
    except ValueError as exc:
        raise InvalidInput(f"--since {text!r} is not an RFC 3339 timestamp "
                           "(e.g. 2026-11-25T10:00:00Z)") from exc
