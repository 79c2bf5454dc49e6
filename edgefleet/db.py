"""The database: one engine per URL, schema brought to head by Alembic before first use.

Alembic is imported only when the schema is not at head: a database already there is
recognised by comparing its ``alembic_version`` row with the head read from the migration
scripts' text, which keeps read-only CLI commands fast.
"""

from __future__ import annotations

import random
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Engine, event, inspect, make_url, text
from sqlalchemy.exc import ArgumentError, OperationalError
from sqlmodel import Session, create_engine

from edgefleet.errors import EdgefleetError, InvalidInput
from edgefleet.schema_heads import MIGRATIONS, script_heads
from edgefleet.settings import get_settings

if TYPE_CHECKING:
    from alembic.config import Config



def alembic_config(url: str) -> Config:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def _sqlite_pragmas(dbapi_conn, _record) -> None:  # type: ignore[no-untyped-def]
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA busy_timeout=30000")
    cur.execute("PRAGMA foreign_keys=ON")
    # WAL stays set in the file once one connection set it. Switching needs the file to
    # itself, and SQLite answers "locked" at once (no busy wait) when another process of a
    # fresh home opens it at the same moment: ask again for a while.
    deadline = time.monotonic() + 30
    while True:
        try:
            if cur.execute("PRAGMA journal_mode").fetchone()[0].lower() == "wal":
                break
            cur.execute("PRAGMA journal_mode=WAL")
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(random.uniform(0.02, 0.2))
    cur.close()


@lru_cache(maxsize=8)
def get_engine(url: str | None = None) -> Engine:
    """The engine for ``url`` (default: the setting), migrated to the newest schema."""
    url = url or get_settings().database_url
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)
    else:
        engine = _other_engine(url)
    try:
        _upgrade(engine, url)  # under a lock that also holds between this process's threads
    except OperationalError as exc:
        engine.dispose()
        raise EdgefleetError(
            f"the database at {_shown(url)} did not answer: {' '.join(str(exc.orig).split())} "
            "(check EDGEFLEET_DATABASE_URL, and that the server runs)") from exc
    return engine


def _other_engine(url: str) -> Engine:
    """A server database (PostgreSQL): a bad URL or a missing driver named, not a trace."""
    try:
        return create_engine(url, pool_pre_ping=True)
    except ModuleNotFoundError as exc:
        raise InvalidInput(
            f"EDGEFLEET_DATABASE_URL {_shown(url)} needs the Python module {exc.name!r}: for "
            "PostgreSQL install edgefleet[postgres] and use postgresql+psycopg://") from exc
    except ArgumentError as exc:
        raise InvalidInput(f"EDGEFLEET_DATABASE_URL {_shown(url)} is not a database URL "
                           f"({exc}); "
                           "e.g. postgresql+psycopg://USER:PASSWORD@HOST/DB") from exc


def _shown(url: str) -> str:
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return repr(url)


def at_head(engine: Engine) -> bool:
    """Whether the database's stored revision is the scripts' head (False when unsure)."""
    heads = script_heads()
    if heads is None:
        return False
    with engine.connect() as conn:
        if not inspect(conn).has_table("alembic_version"):
            return False
        stored = conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all()
    return frozenset(stored) == heads


def _upgrade(engine: Engine, url: str) -> None:
    if at_head(engine):
        return
    from alembic import command
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    cfg = alembic_config(url)
    head = ScriptDirectory.from_config(cfg).get_current_head()
    with _migration_lock(engine), engine.connect() as conn:
        # asked again under the lock: another process may have just migrated it
        current = MigrationContext.configure(conn).get_current_revision()
        if current != head:
            conn.commit()
            with engine.begin() as migrating:
                cfg.attributes["connection"] = migrating
                command.upgrade(cfg, "head")


@contextmanager
def _migration_lock(engine: Engine) -> Iterator[None]:
    """One process migrates at a time (two commands on a fresh home both found no schema
    and both created it: one failed). A file lock beside a SQLite file; an advisory lock on
    PostgreSQL; other databases rely on their own DDL locking."""
    database = engine.url.database
    if engine.dialect.name == "sqlite" and database and database != ":memory:":
        import fcntl

        with open(f"{database}.migrate.lock", "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
    elif engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            conn.execute(text("SELECT pg_advisory_lock(727165)"))  # edgefleet's migration key
            try:
                yield
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(727165)"))
                conn.commit()
    else:
        yield


@contextmanager
def session_scope() -> Iterator[Session]:
    """A session that commits on success and rolls back on any error: nothing half-written."""
    with Session(get_engine(), expire_on_commit=False) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
