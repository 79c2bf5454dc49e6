"""The Prefect server's own database: on PostgreSQL when edgefleet's records are there.

The server `edgefleet up` starts keeps its runs, events and automations in SQLite by
default, whose one writer at a time is what a burst of flow runs (a fleet rollout, many edges
back at once) waits on. When ``EDGEFLEET_DATABASE_URL`` is PostgreSQL, the server uses a
database of its own on the same PostgreSQL server, ``<records database>_prefect``, created
when missing; ``EDGEFLEET_PREFECT_DATABASE_URL`` names another one instead (used as given,
never created). Prefect talks to PostgreSQL through asyncpg, so the URL is rewritten for it.
"""

from __future__ import annotations

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from edgefleet.errors import EdgefleetError, InvalidInput
from edgefleet.settings import Settings

SUFFIX = "_prefect"
ASYNC_DRIVER = "postgresql+asyncpg"


def _parsed(url: str, what: str) -> URL:
    try:
        return make_url(url)
    except ArgumentError as exc:
        raise InvalidInput(f"{what} is not a database URL ({exc}); write it as "
                           "postgresql://USER:PASSWORD@HOST:PORT/DATABASE") from exc


def for_asyncpg(url: URL) -> URL:
    """``url`` with Prefect's PostgreSQL driver; libpq's ``sslmode`` becomes asyncpg's
    ``ssl`` (asyncpg refuses a keyword it does not know)."""
    query = dict(url.query)
    if "sslmode" in query:
        query["ssl"] = query.pop("sslmode")
    return url.set(drivername=ASYNC_DRIVER, query=query)


def server_database_url(settings: Settings) -> str | None:
    """The connection URL for the Prefect server's database, or None for Prefect's default
    (SQLite in its home: the records are not on PostgreSQL and nothing else is asked)."""
    if settings.prefect_database_url:
        given = _parsed(settings.prefect_database_url, "EDGEFLEET_PREFECT_DATABASE_URL")
        if given.get_backend_name() == "postgresql":
            given = for_asyncpg(given)
        return given.render_as_string(hide_password=False)
    records = _parsed(settings.database_url, "EDGEFLEET_DATABASE_URL")
    if records.get_backend_name() != "postgresql":
        return None
    if not records.database:
        raise InvalidInput("EDGEFLEET_DATABASE_URL names no database; the Prefect server's "
                           f"would be <database>{SUFFIX} beside it")
    own = for_asyncpg(records.set(database=f"{records.database}{SUFFIX}"))
    return own.render_as_string(hide_password=False)


def ensure_server_database(settings: Settings) -> None:
    """Create ``<records database>_prefect`` on the records' PostgreSQL server when it is
    missing (only the derived one: a database named by ``EDGEFLEET_PREFECT_DATABASE_URL`` is
    the operator's to provide)."""
    if settings.prefect_database_url:
        return
    records = _parsed(settings.database_url, "EDGEFLEET_DATABASE_URL")
    if records.get_backend_name() != "postgresql" or not records.database:
        return
    import psycopg
    from psycopg import sql
    from psycopg.conninfo import make_conninfo

    name = f"{records.database}{SUFFIX}"
    params: dict[str, str | int | None] = {k: v for k, v in {
        "host": records.host, "port": records.port, "user": records.username,
        "password": records.password, "dbname": "postgres"}.items() if v is not None}
    params.update({k: v for k, v in records.query.items() if isinstance(v, str)})
    try:
        with psycopg.connect(make_conninfo("", **params), autocommit=True) as conn:
            found = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s",
                                 (name,)).fetchone()
            if found is None:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    except psycopg.errors.DuplicateDatabase:
        return  # another `edgefleet up` created it meanwhile
    except psycopg.Error as exc:
        raise EdgefleetError(
            f"could not create the Prefect server's database {name!r} on "
            f"{records.host}:{records.port or 5432} ({str(exc).strip()}); create it, or let "
            "EDGEFLEET_PREFECT_DATABASE_URL name one that exists") from exc
