"""The CLI's import discipline: `--help` and the commands that only read records load neither
Prefect, nor docker, nor Alembic (nor the compose adapter), so they answer at once.

Checked in a fresh interpreter (this test process has imported everything already); what
is asserted is which modules were loaded, never a time (bench/cli_latency.py times them).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path

import edgefleet

# what the fast commands must not load: packages by top-level name, and our compose adapter
HEAVY = ("prefect", "docker", "alembic", "edgefleet.compose_cli")

PROBE = """
import json, sys
HEAVY = {heavy!r}
def loaded():
    return sorted(h for h in HEAVY if h in sys.modules)
report = {{}}
import edgefleet.cli.main
report["import edgefleet.cli.main"] = [0, loaded()]
from typer.testing import CliRunner
for args in json.loads(sys.argv[1]):
    result = CliRunner().invoke(edgefleet.cli.main.app, args)
    report[" ".join(args)] = [result.exit_code, loaded()]
print(json.dumps(report))
"""


def probe(commands: list[list[str]], heavy: tuple[str, ...] = HEAVY) -> dict[str, list]:
    """Run the commands one after the other in one fresh interpreter; per command its exit
    code and the heavy modules loaded so far."""
    proc = subprocess.run([sys.executable, "-c", PROBE.format(heavy=heavy), json.dumps(commands)],
                          capture_output=True, text=True, timeout=300, env=dict(os.environ))
    assert proc.returncode == 0, proc.stderr[-2000:]
    report: dict[str, list] = json.loads(proc.stdout.strip().splitlines()[-1])
    return report


def test_help_loads_no_prefect_docker_or_alembic() -> None:
    report = probe([["--help"], ["deploy", "--help"], ["edge", "--help"], ["app", "--help"]])
    assert report == {label: [0, []] for label in (
        "import edgefleet.cli.main", "--help", "deploy --help", "edge --help", "app --help")}


def test_read_only_commands_load_no_prefect_docker_or_alembic(
        tmp_path: Path, switch_home: Callable[[Path], AbstractContextManager[Path]]) -> None:
    with switch_home(tmp_path / "home"):
        # records written here first: the schema is at head before the probe reads it
        edgefleet.add_edge("fast-1", "tcp://127.0.0.1:2376", check=False)
        edgefleet.create_application("fast", "1.0.0", image="registry.local/fast:1.0.0")
        dep = edgefleet.create_deployment("fast", "fast-1", version="1.0.0",
                                          allow_unpublished=True)
        commands = [
            ["edge", "list", "--json"], ["edge", "list"], ["edge", "show", "fast-1", "--json"],
            ["edge", "list", "--selector", "site=plant-7,!retired", "--json"],
            ["app", "list", "--json"], ["app", "show", "fast"], ["deployments", "--json"],
            ["deployments"], ["status", dep.id, "--json"], ["status", dep.id],
            ["policy", dep.id, "--json"], ["notifications", "--json"], ["telemetry", "--json"],
            ["telemetry"], ["group", "list", "--json"], ["group", "list"], ["group", "--help"],
        ]
        report = probe(commands)
    assert report == {" ".join(args): [0, []] for args in [["import edgefleet.cli.main"],
                                                          *commands]}


def test_list_show_and_status_do_not_build_the_orm(
        tmp_path: Path, switch_home: Callable[[Path], AbstractContextManager[Path]]) -> None:
    """On SQLite records at head they read with the standard library (record_reads): SQLModel
    and SQLAlchemy alone cost about half a second per command."""
    with switch_home(tmp_path / "home"):
        edgefleet.add_edge("fast-1", "tcp://127.0.0.1:2376", check=False, labels=["site=a"])
        edgefleet.create_application("fast", "1.0.0", image="registry.local/fast:1.0.0")
        dep = edgefleet.create_deployment("fast", "fast-1", version="1.0.0",
                                          allow_unpublished=True)
        commands = [["edge", "list", "--json"], ["edge", "list"], ["deployments", "--json"],
                    ["deployments"], ["edge", "show", "fast-1", "--json"],
                    ["edge", "list", "--selector", "site=a", "--json"],
                    ["status", dep.id, "--json"], ["status", dep.id[:8]],
                    ["app", "list", "--json"], ["app", "list"], ["app", "show", "fast"],
                    ["telemetry", "--json"], ["telemetry", "fast-1", "--since", "2d"]]
        report = probe(commands, heavy=("sqlmodel", "sqlalchemy", *HEAVY))
        # a name or id the records lack: the API (and so the ORM) says what is wrong
        missing = probe([["edge", "show", "nope"]], heavy=("sqlmodel",))
    assert report == {" ".join(args): [0, []] for args in [["import edgefleet.cli.main"],
                                                          *commands]}
    assert missing["edge show nope"] == [1, ["sqlmodel"]]
