"""Shared fixtures: a throw-away EDGEFLEET_HOME for every session, and one real lab.

Tests never touch ``~/.edgefleet``: the whole session runs against a fresh temp home. The
``lab`` fixture brings up 2 dockerd edges (lab-1 a single-node swarm) and a registry once per
session, and takes them down at the end. Lab tests are marked ``@pytest.mark.lab``; run the
rest with ``pytest -m "not lab"``.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import pytest

from edgefleet import db
from edgefleet.lab import LabStatus, lab_down, lab_up
from edgefleet.lab.daemons import free_port
from edgefleet.settings import get_settings

RECONCILE_SECONDS = 20
# The served flows' soak (production: 30 s): an update still watches its containers, long
# enough for a test to kill the control plane mid-soak, while group rollouts of several
# edges end within a test's wait.
SERVED_SOAK_SECONDS = 12
SERVE_LOG_LINES = 150  # of each worker's log, shown with a failed lab test
# The figures tests measured (the issues' acceptance asks for them), for CI to keep.
FIGURES_FILE = Path(__file__).resolve().parent.parent / "test-artifacts" / "figures.json"
_figures: list[dict[str, Any]] = []
# Variables that would point a test at real state outside its temp home (the session's
# Prefect database too: another home's server keeps its own).
HOME_VARS = ("EDGEFLEET_HOME", "EDGEFLEET_LAB_DIR", "EDGEFLEET_DATABASE_URL",
             "EDGEFLEET_PREFECT_DATABASE_URL")


def _clear_caches() -> None:
    get_settings.cache_clear()
    db.get_engine.cache_clear()


@contextlib.contextmanager
def edgefleet_home_at(home: Path) -> Iterator[Path]:
    """Point edgefleet at ``home`` (records, lab dir) inside the block, then restore."""
    saved = {name: os.environ.get(name) for name in HOME_VARS}
    for name in HOME_VARS:
        os.environ.pop(name, None)
    os.environ["EDGEFLEET_HOME"] = str(home)
    _clear_caches()
    try:
        yield home
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        _clear_caches()


@pytest.fixture(scope="session", autouse=True)
def edgefleet_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A fresh EDGEFLEET_HOME for the whole session (records, lab state, certificates).

    A flow run here without `edgefleet up` starts the home's local Prefect server: on a free
    port (never another session's 4200), and stopped when the session ends.
    """
    from edgefleet import server

    saved_port = os.environ.get("EDGEFLEET_PREFECT_PORT")
    os.environ["EDGEFLEET_PREFECT_PORT"] = str(free_port(set()))
    try:
        with edgefleet_home_at(tmp_path_factory.mktemp("edgefleet-home")) as home:
            yield home
            if server.state_file().exists():
                server.down(progress=lambda _m: None)
    finally:
        if saved_port is None:
            os.environ.pop("EDGEFLEET_PREFECT_PORT", None)
        else:
            os.environ["EDGEFLEET_PREFECT_PORT"] = saved_port


@pytest.fixture(scope="session")
def postgres() -> Iterator[Any]:
    """A real PostgreSQL server for the session (started on first use, stopped at the end)."""
    from tests.postgres_server import PostgresServer

    server = PostgresServer()
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.lab)])
def empty_records(request: pytest.FixtureRequest, tmp_path: Path,
                  monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Empty records of the test's own, in SQLite and again in a real PostgreSQL database
    (the claim that any SQLAlchemy URL works is tested, not assumed): the URL."""
    monkeypatch.setenv("EDGEFLEET_HOME", str(tmp_path / "home"))
    database = None
    if request.param == "postgresql":
        server = request.getfixturevalue("postgres")
        database = server.new_database()
        monkeypatch.setenv("EDGEFLEET_DATABASE_URL", server.url(database))
    _clear_caches()
    url = get_settings().database_url
    try:
        yield url
    finally:
        db.get_engine(url).dispose()
        monkeypatch.undo()
        _clear_caches()
        if database:
            server.drop_database(database)


@pytest.fixture(scope="session")
def switch_home() -> Callable[[Path], AbstractContextManager[Path]]:
    """``with switch_home(path):`` runs a block against another home (e.g. a second lab)."""
    return edgefleet_home_at


@pytest.fixture(scope="session")
def lab(edgefleet_home: Path) -> Iterator[LabStatus]:
    """The real lab (2 edges, lab-1 in swarm mode), up once per session, down at the end."""
    if os.geteuid() != 0:
        pytest.skip("the lab starts dockerd and needs root")
    os.environ["EDGEFLEET_HOME"] = str(edgefleet_home)
    _clear_caches()
    try:
        status = lab_up(edges=2, swarm_edges=1)
    except BaseException:
        lab_down()
        raise
    try:
        yield status
    finally:
        os.environ["EDGEFLEET_HOME"] = str(edgefleet_home)
        _clear_caches()
        lab_down()


@pytest.fixture(scope="session")
def prefect_api(lab: LabStatus, edgefleet_home: Path) -> Iterator[str]:
    """`edgefleet up` once per session (a real Prefect server, the work pool, one worker):
    its API URL."""
    from edgefleet import server
    os.environ["EDGEFLEET_PREFECT_PORT"] = str(free_port(set()))
    # the reconciles (a lost event's safety net) act within a test's wait
    os.environ["EDGEFLEET_RECONCILE_SECONDS"] = str(RECONCILE_SECONDS)
    os.environ["EDGEFLEET_SOAK_SECONDS"] = str(SERVED_SOAK_SECONDS)
    _clear_caches()
    try:
        state = server.up(progress=lambda _m: None)
        yield str(state["api_url"])
    finally:
        from prefect.logging.handlers import APILogWorker

        APILogWorker.drain_all(timeout=10)  # this process's run logs, before the API goes
        server.down(progress=lambda _m: None)
        os.environ.pop("EDGEFLEET_PREFECT_PORT", None)
        os.environ.pop("EDGEFLEET_RECONCILE_SECONDS", None)
        os.environ.pop("EDGEFLEET_SOAK_SECONDS", None)
        _clear_caches()


@pytest.fixture
def local_runs(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Run flows in this process (still reporting to the lab's Prefect server)."""
    monkeypatch.setenv("EDGEFLEET_RUN_MODE", "local")
    _clear_caches()
    yield
    monkeypatch.undo()
    _clear_caches()


@pytest.fixture
def quick_local_runs(local_runs: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """In-process runs with a short soak and deploy timeout (updates end in seconds)."""
    monkeypatch.setenv("EDGEFLEET_SOAK_SECONDS", "3")
    monkeypatch.setenv("EDGEFLEET_DEPLOY_TIMEOUT", "25")
    get_settings.cache_clear()
    yield
    monkeypatch.undo()
    get_settings.cache_clear()


@pytest.fixture(scope="module")
def edges(lab: LabStatus, prefect_api: str) -> Iterator[dict[str, Any]]:
    """The lab's edges by name; what edgefleet created on them goes when the module ends."""
    from tests.lab_helpers import remove_managed

    by_name = {e.name: e for e in lab.edges}
    yield by_name
    for edge in by_name.values():
        remove_managed(edge.connection)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests marked ``disruptive`` (they kill the session's Prefect server and serving
    process, then start them again) run last, so no other test meets a control plane that
    was just restarted."""
    items.sort(key=lambda item: item.get_closest_marker("disruptive") is not None)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """A failed lab test shows the end of each worker's log (what the served flows did
    meanwhile): CI keeps only the test output."""
    report = yield
    if report.failed and call.when == "call" and item.get_closest_marker("lab"):
        for log in sorted((get_settings().home / "run").glob("worker-*.log")):
            lines = [line for line in log.read_text(errors="replace").splitlines()
                     if not ("Task run" in line and "Completed" in line)]
            report.sections.append((f"{log.name} (end)", "\n".join(lines[-SERVE_LOG_LINES:])))
    return report


@pytest.fixture
def figure(request: pytest.FixtureRequest) -> Callable[..., None]:
    """``figure(name, value, unit="s", note="")``: a measured figure, shown in the terminal
    summary (CI runs pytest without ``-s``, so prints are lost) and written to
    ``test-artifacts/figures.json``. Record it before asserting on it: a failed test shows
    its figure too."""

    def record(name: str, value: float, unit: str = "s", note: str = "") -> None:
        _figures.append({"test": request.node.nodeid, "figure": name,
                         "value": round(value, 3), "unit": unit, "note": note})

    return record


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not _figures:
        return
    terminalreporter.section("figures")
    for item in _figures:
        note = f"  ({item['note']})" if item["note"] else ""
        terminalreporter.write_line(f"{item['figure']}: {item['value']:g} {item['unit']}{note}"
                                    f"  [{item['test']}]")
    FIGURES_FILE.parent.mkdir(exist_ok=True)
    FIGURES_FILE.write_text(json.dumps(_figures, indent=2, ensure_ascii=False) + "\n",
                            encoding="utf-8")
