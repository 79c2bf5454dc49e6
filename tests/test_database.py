"""Where the records live: a bad or unreachable EDGEFLEET_DATABASE_URL is named, not a trace.

The records themselves run on PostgreSQL too: ``empty_records`` (tests/conftest.py) runs
the records and telemetry-rules tests on SQLite and again on a real PostgreSQL server.
"""

from typing import Any

import pytest
from typer.testing import CliRunner

from edgefleet import db
from edgefleet.cli.main import app
from edgefleet.errors import EdgefleetError, InvalidInput
from edgefleet.lab.daemons import free_port
from edgefleet.settings import Settings


def test_a_bare_postgresql_url_uses_the_driver_edgefleet_installs() -> None:
    for bare in ("postgresql://u@db.example/fleet", "postgres://u@db.example/fleet"):
        assert Settings(database_url=bare).database_url == "postgresql+psycopg://u@db.example/fleet"


@pytest.mark.parametrize("url, reason", [
    ("not a url", "is not a database URL"),
    ("mysql+nosuchdriver://u:pw@h/x", "is not a database URL"),
    ("mysql://u:secret@h/x", "needs the Python module 'MySQLdb'"),
])
def test_a_bad_database_url_is_refused_by_name(url: str, reason: str) -> None:
    with pytest.raises(InvalidInput, match=reason) as caught:
        db.get_engine(url)
    assert "secret" not in str(caught.value)


def test_a_database_that_does_not_answer_is_named_without_its_password() -> None:
    url = f"postgresql+psycopg://fleet:secret@127.0.0.1:{free_port(set())}/records"
    with pytest.raises(EdgefleetError, match="did not answer") as caught:
        db.get_engine(url)
    assert "fleet:***@127.0.0.1" in str(caught.value) and "secret" not in str(caught.value)


def test_the_cli_prints_the_error_text_as_written(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGEFLEET_DATABASE_URL", "mysql://u:secret@h/x")
    db.get_engine.cache_clear()
    from edgefleet.settings import get_settings

    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(app, ["edge", "list"])
    finally:
        monkeypatch.undo()
        get_settings.cache_clear()
        db.get_engine.cache_clear()
    assert result.exit_code == 1
    assert "edgefleet[postgres]" in result.output  # brackets are text here, not markup


def test_every_migration_applies_over_records_that_refer_to_each_other(tmp_path: Any) -> None:
    """A fleet upgrades with its records in place: an edge, an application, a version and a
    deployment on it (foreign keys on, as edgefleet connects), then every later migration,
    and back down again."""
    import sqlite3

    from alembic import command
    from sqlalchemy import create_engine, event

    url = f"sqlite:///{tmp_path / 'records.db'}"
    engine = create_engine(url)
    event.listen(engine, "connect", db._sqlite_pragmas)
    cfg = db.alembic_config(url)

    def migrate(step: Any, revision: str) -> None:
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            step(cfg, revision)

    migrate(command.upgrade, "0006")
    rows = sqlite3.connect(tmp_path / "records.db")
    rows.executescript("""
        INSERT INTO edge (name, docker_host, telemetry_interval, heartbeat_interval, status,
                          created_at)
            VALUES ('e', 'tcp://10.0.0.7:2376', 60, 20, 'ONLINE', '2026-01-01');
        INSERT INTO application (name, created_at) VALUES ('a', '2026-01-01');
        INSERT INTO application_version (application_id, version, kind, env, ports, published,
                                         created_at)
            VALUES (1, '1.0.0', 'image', '{}', '[]', 1, '2026-01-01');
        INSERT INTO deployment (id, application_id, version_id, edge_id, env, state, created_at,
                                updated_at, policy) VALUES ('d1', 1, 1, 1, '{}', 'STARTED',
                                '2026-01-01', '2026-01-01', '{}');
    """)
    rows.close()
    migrate(command.upgrade, "0015")
    rows = sqlite3.connect(tmp_path / "records.db")
    rows.executescript("""
        INSERT INTO deployment_group (id, name, application_id, version, env, state, wave,
                                      waves, created_at, updated_at)
            VALUES ('g1', 'g', 1, '1.0.0', '{}', 'STARTED', 1, 1, '2026-01-01', '2026-01-01');
        UPDATE deployment SET group_id = 'g1';
    """)
    rows.close()
    migrate(command.upgrade, "head")
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT state FROM deployment").scalar() == "STARTED"
        assert conn.exec_driver_sql("SELECT labels FROM edge").scalar() == "{}"  # 0012
        assert conn.exec_driver_sql(  # 0016: a group made before does not auto-update
            "SELECT auto_update, auto_update_since FROM deployment_group").one() == ("off", None)
    migrate(command.downgrade, "0006")
    engine.dispose()


def test_the_schema_check_skips_alembic_only_at_head(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A database at head is recognised without Alembic; a fresh or an older one is migrated."""
    from alembic import command
    from alembic.script import ScriptDirectory
    from sqlalchemy import inspect

    url = f"sqlite:///{tmp_path / 'records.db'}"
    cfg = db.alembic_config(url)
    assert db.script_heads() == frozenset(ScriptDirectory.from_config(cfg).get_heads())
    try:
        engine = db.get_engine(url)  # a fresh database: migrated
        assert db.at_head(engine)
        command.downgrade(cfg, "-1")  # an older schema
        assert not db.at_head(engine)
        db.get_engine.cache_clear()
        engine = db.get_engine(url)
        assert db.at_head(engine)
        assert "policy" in {c["name"] for c in inspect(engine).get_columns("deployment")}
    finally:
        db.get_engine(url).dispose()
        db.get_engine.cache_clear()


def test_commands_opening_a_fresh_home_at_once_migrate_it_once(tmp_path: Any) -> None:
    """Two commands started together on a new home both found no schema and both created
    it (one failed with 'table ... already exists'): the migration runs under a lock."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "EDGEFLEET_HOME": str(tmp_path)}
    env.pop("EDGEFLEET_DATABASE_URL", None)
    script = "from edgefleet.db import get_engine; get_engine()"
    procs = [subprocess.Popen([sys.executable, "-c", script], env=env, stderr=subprocess.PIPE,
                              text=True) for _ in range(4)]
    errors = [p.communicate(timeout=120)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0, 0], errors
