"""The database: one engine per URL, schema brought to head by Alembic before first use."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, event, make_url
from sqlalchemy.exc import ArgumentError, OperationalError
from sqlmodel import Session, create_engine

from edgefleet.errors import EdgefleetError, InvalidInput
from edgefleet.settings import get_settings

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def _sqlite_pragmas(dbapi_conn, _record) -> None:  # type: ignore[no-untyped-def]
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA busy_timeout=30000")
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
        _upgrade(engine, url)
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


def _upgrade(engine: Engine, url: str) -> None:
    cfg = alembic_config(url)
    head = ScriptDirectory.from_config(cfg).get_current_head()
    with engine.connect() as conn:
        current = MigrationContext.configure(conn).get_current_revision()
    if current != head:
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")


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
