"""The Prefect server's own database follows the records: beside them on PostgreSQL
(``<records database>_prefect``, created by `edgefleet up`), or where
``EDGEFLEET_PREFECT_DATABASE_URL`` says, else Prefect's SQLite."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import psycopg
import pytest

from edgefleet.errors import InvalidInput
from edgefleet.lab.daemons import free_port
from edgefleet.prefect_database import server_database_url
from edgefleet.settings import Settings

CLI = [sys.executable, "-c", "from edgefleet.cli.main import app; app()"]
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def no_session_prefect_database(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only what a test gives: not the lab session's own Prefect database."""
    monkeypatch.delenv("EDGEFLEET_PREFECT_DATABASE_URL", raising=False)


def _settings(tmp_path: Path, **values: str) -> Settings:
    return Settings(home=tmp_path, **values)  # type: ignore[arg-type]


def test_sqlite_records_leave_prefect_on_its_own_sqlite(tmp_path: Path) -> None:
    assert server_database_url(_settings(tmp_path)) is None


def test_postgresql_records_put_prefect_in_a_database_of_its_own_beside_them(
        tmp_path: Path) -> None:
    settings = _settings(tmp_path, database_url="postgresql://ef:s3cret@db.example:5433/fleet"
                                                "?sslmode=require")
    assert server_database_url(settings) == (
        "postgresql+asyncpg://ef:s3cret@db.example:5433/fleet_prefect?ssl=require")


def test_an_explicit_prefect_database_is_used_as_given_with_prefect_s_driver(
        tmp_path: Path) -> None:
    settings = _settings(tmp_path, database_url="postgresql://ef@db/fleet",
                         prefect_database_url="postgresql://p@other:5432/orchestration")
    assert server_database_url(settings) == "postgresql+asyncpg://p@other:5432/orchestration"
    sqlite = _settings(tmp_path, prefect_database_url=f"sqlite+aiosqlite:///{tmp_path}/p.db")
    assert server_database_url(sqlite) == f"sqlite+aiosqlite:///{tmp_path}/p.db"


@pytest.mark.parametrize(("values", "words"), [
    ({"prefect_database_url": "not a url"}, "EDGEFLEET_PREFECT_DATABASE_URL is not a database"),
    ({"database_url": "postgresql://ef@db"}, "names no database"),
])
def test_a_bad_database_url_is_refused_by_name(tmp_path: Path, values: dict[str, str],
                                               words: str) -> None:
    with pytest.raises(InvalidInput, match=words):
        server_database_url(_settings(tmp_path, **values))


def _tables(url: str) -> set[str]:
    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://")) as conn:
        rows = conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        return {str(r[0]) for r in rows}


@pytest.mark.lab  # a real PostgreSQL server and a real Prefect server (about 30 s)
def test_edgefleet_up_on_postgresql_records_runs_prefect_on_postgresql(
        tmp_path: Path, postgres: Any) -> None:
    database = postgres.new_database()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "EDGEFLEET_"))}
    env.update({"EDGEFLEET_HOME": str(tmp_path / "home"),
                "EDGEFLEET_PREFECT_PORT": str(free_port(set())),
                "EDGEFLEET_DATABASE_URL": postgres.url(database),
                "PREFECT_HOME": str(tmp_path / "prefect-client")})

    def edgefleet(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*CLI, *args], env=env, cwd=ROOT, text=True,
                              capture_output=True, timeout=300, check=False)

    try:
        started = edgefleet("up")
        assert started.returncode == 0, started.stderr
        own = _tables(postgres.url(f"{database}_prefect"))
        assert {"flow_run", "deployment", "automation"} <= own  # Prefect's schema, there
        with psycopg.connect(postgres.url(f"{database}_prefect").replace(
                "postgresql+psycopg://", "postgresql://")) as conn:
            (served,) = conn.execute("SELECT count(*) FROM deployment").fetchone() or (0,)
        assert served >= 10, served  # `up` registered the flows in the server's PostgreSQL
        assert "flow_run" not in _tables(postgres.url(database))  # the records stay apart
        assert not (tmp_path / "home" / "prefect" / "prefect.db").exists()
        again = edgefleet("down")
        assert again.returncode == 0, again.stderr
        assert edgefleet("up").returncode == 0  # the database exists already: reused
    finally:
        edgefleet("down")
        postgres.drop_database(f"{database}_prefect")
        postgres.drop_database(database)
