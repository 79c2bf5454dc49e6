"""A throw-away PostgreSQL server for the tests that hold edgefleet's records there.

Debian's ``postgresql`` binaries (``./scripts/test.sh`` installs the package when missing),
run as the ``postgres`` user (the server refuses root) on a free port of 127.0.0.1, with
the data directory in a temporary folder that goes with :meth:`stop`. Each test gets a
database of its own (:meth:`new_database`).
"""

from __future__ import annotations

import glob
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path

from edgefleet.lab.daemons import free_port

RUN_AS = ["runuser", "-u", "postgres", "--"]
LABEL = "eftest"  # every database a test creates starts with it


def _initdbs() -> list[str]:
    """Debian's PostgreSQL ``initdb`` of each installed version, oldest first."""
    return sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))


def installed() -> bool:
    """Debian's PostgreSQL binaries are there (a server can be started)."""
    return bool(_initdbs())


def _bin_dir() -> Path:
    found = _initdbs()
    if not found:
        raise RuntimeError("PostgreSQL is not installed: run ./scripts/test.sh (it installs "
                           "Debian's postgresql) or `apt-get install -y postgresql`")
    return Path(found[-1]).parent


class PostgresServer:
    def __init__(self) -> None:
        self.bin = _bin_dir()
        self.folder = Path(tempfile.mkdtemp(prefix="ef-postgres-"))
        self.port = free_port(set())
        shutil.chown(self.folder, "postgres", "postgres")
        self._run("initdb", "-D", str(self.folder / "data"), "-A", "trust", "-U", "postgres",
                  "--no-sync", "-E", "UTF8")
        options = (f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 "
                   "-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
                   # not UTC, as many servers: stored times must not shift with it
                   "-c timezone=America/New_York")
        self._run("pg_ctl", "-D", str(self.folder / "data"), "-o", options,
                  "-l", str(self.folder / "server.log"), "-w", "-t", "60", "start")

    def _run(self, program: str, *args: str) -> None:
        done = subprocess.run([*RUN_AS, str(self.bin / program), *args], capture_output=True,
                              text=True, timeout=120, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"{program} failed ({done.returncode}): "
                               f"{(done.stderr or done.stdout)[-2000:]}")

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def _admin(self, statement: str) -> None:
        import psycopg

        with psycopg.connect(f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres",
                             autocommit=True) as conn:
            conn.execute(statement)  # type: ignore[arg-type]  # names made here, not input

    def new_database(self) -> str:
        name = f"{LABEL}_{uuid.uuid4().hex[:12]}"
        self._admin(f'CREATE DATABASE "{name}"')
        return name

    def drop_database(self, name: str) -> None:
        self._admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def stop(self) -> None:
        try:
            self._run("pg_ctl", "-D", str(self.folder / "data"), "-m", "immediate", "-w",
                      "stop")
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)
