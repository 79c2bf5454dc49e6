"""Edges, deployments, applications and telemetry read straight from a SQLite records file,
without the ORM, for the commands that only show them (list, show, status, telemetry).

They run far more often than anything changes, and building SQLModel's tables alone costs
about half a second per command. Here the standard library's sqlite3 reads the same rows in
one snapshot (its converters turn the columns' declared types, DATETIME, JSON and BOOLEAN,
into what the ORM gives) and ``edgefleet.record_views`` / ``telemetry_views`` map them
exactly as the API does. For anything else (PostgreSQL records, no file yet, a schema
not at head) these return None and the caller asks the API, which migrates first.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections import defaultdict
from collections.abc import Iterator
from contextlib import closing, contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from edgefleet.record_views import application_view, deployment_view, edge_view
from edgefleet.schema_heads import script_heads
from edgefleet.telemetry_views import parse_since, telemetry_view


def _utc(raw: bytes) -> datetime:
    """A stored time as the records' type gives it: UTC, aware (SQLite keeps no offset)."""
    value = datetime.fromisoformat(raw.decode())
    return value.replace(tzinfo=UTC) if value.utcoffset() is None else value.astimezone(UTC)


def _stored(moment: datetime) -> str:
    """A time as the records store it (UTC, SQLAlchemy's SQLite text form), to compare with."""
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


# Only connections opened here ask for them (detect_types): others in the process are untouched.
sqlite3.register_converter("DATETIME", _utc)
sqlite3.register_converter("JSON", json.loads)
sqlite3.register_converter("BOOLEAN", lambda raw: bool(int(raw)))


def records_file(environ: dict[str, str] | None = None) -> Path | None:
    """The records' SQLite file as ``edgefleet.settings`` names it (EDGEFLEET_DATABASE_URL,
    else ``$EDGEFLEET_HOME/edgefleet.db``), read without loading the settings; None when
    the records are elsewhere or the environment is unusual (the settings then decide)."""
    found = {k.lower(): v for k, v in (os.environ if environ is None else environ).items()}
    url = found.get("edgefleet_database_url", "")
    if not url:
        home = found.get("edgefleet_home")
        if home == "":
            return None
        return (Path(home) if home is not None else Path.home() / ".edgefleet") / "edgefleet.db"
    if not url.startswith("sqlite:///") or url == "sqlite:///:memory:":
        return None
    return Path(url.removeprefix("sqlite:///"))


@contextmanager
def _snapshot() -> Iterator[sqlite3.Connection | None]:
    """One read transaction on the records at head, or None (then the API reads)."""
    path = records_file()
    if path is None or not path.is_file():
        yield None
        return
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=rw", uri=True, timeout=30,
                               detect_types=sqlite3.PARSE_DECLTYPES, isolation_level=None)
    except sqlite3.Error:
        yield None
        return
    with closing(conn):
        conn.row_factory = sqlite3.Row
        try:
            conn.execute("BEGIN")
            stored = {row[0] for row in conn.execute("SELECT version_num FROM alembic_version")}
        except sqlite3.Error:
            stored = set()
        heads = script_heads()
        yield conn if heads is not None and stored == heads else None


def _rows(conn: sqlite3.Connection, query: str, *args: Any) -> list[SimpleNamespace]:
    return [SimpleNamespace(**dict(row)) for row in conn.execute(query, args)]


def edge_views(selector: str | None = None, *, name: str | None = None
               ) -> list[dict[str, Any]] | None:
    """``edge list``: every edge by name (matching ``selector``), as ``edge_public`` shows
    it; with ``name`` that edge only (None when there is none: the API names the error)."""
    with _snapshot() as conn:
        if conn is None:
            return None
        rows = [dict(row) for row in conn.execute(
            "SELECT * FROM edge WHERE ? IS NULL OR name = ? ORDER BY name", (name, name))]
    if name is not None and not rows:
        return None
    if selector is not None:
        from edgefleet.selectors import matches, parse_selector

        chosen = parse_selector(selector)
        rows = [row for row in rows if matches(chosen, row["labels"])]
    return [edge_view(row) for row in rows]


def deployment_views(ref: str | None = None) -> list[dict[str, Any]] | None:
    """``deployments``: every deployment, oldest first, as ``list_deployments`` shows it;
    with ``ref`` the one deployment of that id, or of that unique prefix of at least 4
    characters, as ``status`` finds it (None otherwise: the API names the error)."""
    with _snapshot() as conn:
        if conn is None:
            return None
        if ref is None:
            deployments = _rows(conn, "SELECT * FROM deployment ORDER BY created_at")
        else:
            deployments = _rows(conn, "SELECT * FROM deployment WHERE id = ?", ref)
            if not deployments and len(ref) >= 4:
                deployments = _rows(conn, "SELECT * FROM deployment WHERE substr(id, 1, ?) = ?",
                                    len(ref), ref)
            if len(deployments) != 1:
                return None
        # every deployment's, or the one's (each query names the deployments it serves)
        of = ("SELECT {} FROM deployment" if ref is None
              else "SELECT {} FROM deployment WHERE id = ?")
        args = () if ref is None else (deployments[0].id,)
        applications = {r.id: r for r in _rows(conn, "SELECT * FROM application")}
        edges = {r.id: r for r in _rows(conn, "SELECT * FROM edge")}
        versions = {r.id: r for r in _rows(
            conn, f"SELECT * FROM application_version WHERE id IN ({of.format('version_id')})",
            *args)}
        applied = {r.id: r for r in _rows(
            conn, f"SELECT * FROM applied_spec WHERE id IN ({of.format('spec_id')})", *args)}
        containers: dict[str, list[SimpleNamespace]] = defaultdict(list)
        for row in _rows(conn, "SELECT * FROM container_status WHERE deployment_id IN "
                               f"({of.format('id')}) ORDER BY service", *args):
            containers[row.deployment_id].append(row)
    return [deployment_view(dep, application=applications[dep.application_id],
                            version=versions[dep.version_id], edge=edges[dep.edge_id],
                            containers=containers[dep.id], applied=applied.get(dep.spec_id))
            for dep in deployments]


def application_views(name: str | None = None) -> list[dict[str, Any]] | None:
    """``app list``: every application by name with its versions, as ``list_applications``
    shows it; with ``name`` that one only (None when there is none: the API names the error)."""
    with _snapshot() as conn:
        if conn is None:
            return None
        apps = [dict(row) for row in conn.execute(
            "SELECT * FROM application WHERE ? IS NULL OR name = ? ORDER BY name", (name, name))]
        versions: dict[int, list[dict[str, Any]]] = defaultdict(list)
        for row in conn.execute("SELECT * FROM application_version WHERE application_id IN "
                                "(SELECT id FROM application WHERE ? IS NULL OR name = ?)",
                                (name, name)):
            versions[row["application_id"]].append(dict(row))
    if name is not None and not apps:
        return None
    return [application_view(app, versions[app["id"]]) for app in apps]


def telemetry_views(edge: str | None = None, *, since: str | timedelta = "1h",
                    now: datetime | None = None) -> list[dict[str, Any]] | None:
    """``telemetry``: per edge (or ``edge`` only) what ``edge_telemetry`` shows (None when
    the edge is unknown: the API names the error)."""
    from edgefleet.metrics import hour_floor

    window = parse_since(since)  # a bad --since is refused before anything is read
    moment = now or datetime.now(UTC)
    start = moment - window
    views = []
    with _snapshot() as conn:
        if conn is None:
            return None
        edges = _rows(conn, "SELECT * FROM edge WHERE ? IS NULL OR name = ? ORDER BY name",
                      edge, edge)
        if edge is not None and not edges:
            return None
        since_text = _stored(start)
        for row in edges:
            latest = _rows(conn, "SELECT * FROM edge_sample WHERE edge_id = ? AND reachable "
                                 "IS 1 ORDER BY time DESC LIMIT 1", row.id)
            count, failed = conn.execute(
                "SELECT count(*), sum(CASE WHEN reachable IS 0 THEN 1 ELSE 0 END) FROM "
                "edge_sample WHERE edge_id = ? AND time >= ?", (row.id, since_text)).fetchone()
            points = [(p.time, p.cpu_percent, p.memory_used, p.containers_running)
                      for p in _rows(conn, "SELECT time, cpu_percent, memory_used, "
                                           "containers_running FROM edge_sample WHERE "
                                           "edge_id = ? AND time >= ? AND reachable IS 1",
                                     row.id, since_text)]
            oldest_raw = min((p[0] for p in points), default=moment)
            points += [(h.hour, h.cpu_percent, h.memory_used, h.containers_running)
                       for h in _rows(conn, "SELECT * FROM edge_sample_hourly WHERE edge_id = ? "
                                            "AND hour >= ? AND hour < ?", row.id, since_text,
                                      _stored(hour_floor(oldest_raw)))]
            history = _rows(conn, "SELECT * FROM edge_availability WHERE edge_id = ? AND "
                                  "time >= ? ORDER BY time", row.id, since_text)
            views.append(telemetry_view(row, latest=latest[0] if latest else None,
                                        samples=int(count or 0), unreachable=int(failed or 0),
                                        points=points, history=history, start=start,
                                        now=moment))
    return views
