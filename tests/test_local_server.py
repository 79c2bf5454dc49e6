"""Without `edgefleet up`, flow-running commands share one local Prefect server.

The CLI runs as real processes in a throw-away home where no server runs and no
``PREFECT_API_URL`` is set; the server they start is found by its recorded PID and by its
command line, and whatever a test started is stopped when it ends.
"""

from __future__ import annotations

import importlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from prefect.settings import PREFECT_API_URL, PREFECT_HOME, temporary_settings

from edgefleet import server
from edgefleet.lab.daemons import free_port

NOTICE = "edgefleet: starting a local Prefect server at"
CLI = [sys.executable, "-c", "from edgefleet.cli.main import app; app()"]
ROOT = Path(__file__).resolve().parent.parent  # `python -c` imports from its cwd first


@dataclass
class BareHome:
    """A home of its own for CLI processes: no server, no PREFECT_API_URL, a free port."""

    home: Path
    port: int
    env: dict[str, str]

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    def state(self) -> dict[str, Any]:
        path = self.home / "run" / "prefect.json"
        return json.loads(path.read_text()) if path.exists() else {}

    def start(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen([*CLI, *args], env=self.env, cwd=ROOT, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def run(self, *args: str) -> tuple[subprocess.CompletedProcess[str], float]:
        """Run ``edgefleet ARGS``: the finished process and its wall time."""
        started = time.perf_counter()
        proc = self.start(*args)
        stdout, stderr = proc.communicate(timeout=300)
        done = subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)
        assert done.returncode == 0, f"edgefleet {' '.join(args)} failed:\n{stderr}"
        return done, time.perf_counter() - started


def server_processes(port: int) -> list[int]:
    """PIDs of the `prefect server start` processes listening on ``port`` (from /proc)."""
    pids = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        if "prefect" in args and "server" in args and "start" in args and str(port) in args:
            pids.append(int(cmdline.parent.name))
    return sorted(pids)


@pytest.fixture
def bare_home(tmp_path: Path, switch_home: Callable[[Path], AbstractContextManager[Path]]
              ) -> Iterator[BareHome]:
    home = tmp_path / "home"
    port = free_port(set())
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PREFECT_", "EDGEFLEET_"))}
    env.update({"EDGEFLEET_HOME": str(home), "EDGEFLEET_PREFECT_PORT": str(port),
                # the commands' own Prefect home: no profile of this machine's user applies
                "PREFECT_HOME": str(tmp_path / "prefect-client")})
    bare = BareHome(home=home, port=port, env=env)
    try:
        yield bare
    finally:  # whatever the test left running, by its recorded PIDs, then by its port
        with switch_home(home):
            server.down(progress=lambda _m: None)
        for pid in server_processes(port):
            os.kill(pid, signal.SIGKILL)


def flow_runs_on(api_url: str) -> int:
    resp = httpx.post(f"{api_url}/flow_runs/count", json={}, timeout=10, trust_env=False)
    resp.raise_for_status()
    return int(resp.json())


@pytest.mark.lab  # starts a real Prefect server (10-40 s here); no dockerd needed
def test_commands_without_up_share_one_server_that_up_adopts_and_down_stops(
    bare_home: BareHome,
) -> None:
    first, first_s = bare_home.run("check-updates", "--json")
    assert first.stderr.count(NOTICE) == 1, first.stderr
    assert json.loads(first.stdout)["references"] == 0
    state = bare_home.state()
    pid = state["server_pid"]
    assert state["api_url"] == bare_home.api_url
    assert "pool" not in state and not state.get("workers")  # no pool, no worker until `up`
    assert server_processes(bare_home.port) == [pid]

    second, second_s = bare_home.run("check-updates", "--json")
    print(f"check-updates without `edgefleet up`: first {first_s:.1f} s (starts the server), "
          f"second {second_s:.1f} s")
    assert NOTICE not in second.stderr, second.stderr
    assert json.loads(second.stdout)["references"] == 0
    assert bare_home.state()["server_pid"] == pid
    assert server_processes(bare_home.port) == [pid]
    # both flow runs are on that server: neither command ran a temporary one of its own
    assert flow_runs_on(bare_home.api_url) == 2

    up, _ = bare_home.run("up", "--json")
    adopted = json.loads(up.stdout)
    assert adopted["server_pid"] == pid
    assert adopted["pool"] == "edgefleet"
    (worker_pid,) = adopted["worker_pids"]
    assert server.pid_alive(worker_pid)
    assert server_processes(bare_home.port) == [pid]

    bare_home.run("down")
    assert not server.pid_alive(pid)
    assert not server.pid_alive(worker_pid)
    assert server_processes(bare_home.port) == []
    assert bare_home.state() == {}


@pytest.mark.lab
def test_two_commands_at_once_start_one_server(bare_home: BareHome) -> None:
    # the records first: two processes creating a fresh SQLite schema at once collide
    # ("table ... already exists"), a race of the records, not of the server
    bare_home.run("edge", "list", "--json")
    procs = [bare_home.start("check-updates", "--json") for _ in range(2)]
    outputs = [proc.communicate(timeout=300) for proc in procs]
    for proc, (_out, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err[-3000:]
    assert sum(err.count(NOTICE) for _out, err in outputs) == 1
    pid = bare_home.state()["server_pid"]
    assert server_processes(bare_home.port) == [pid]
    assert flow_runs_on(bare_home.api_url) == 2


def test_a_users_own_prefect_api_url_is_used_and_nothing_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    switch_home: Callable[[Path], AbstractContextManager[Path]],
) -> None:
    def no_start(api_url: str) -> int:
        raise AssertionError(f"started a server at {api_url}")

    monkeypatch.setattr(server, "_start_server", no_start)
    notices: list[str] = []
    with switch_home(tmp_path / "home"), \
            temporary_settings({PREFECT_API_URL: "http://127.0.0.1:9/api"}):
        assert server.flow_api_url(notice=notices.append) == "http://127.0.0.1:9/api"
        assert server.read_state() == {}
    assert notices == []


def test_a_process_that_reuses_a_recorded_pid_is_neither_used_nor_stopped(
    tmp_path: Path, switch_home: Callable[[Path], AbstractContextManager[Path]],
) -> None:
    """Say a reboot left the state file and another process got the server's PID."""
    stranger = subprocess.Popen(["sleep", "60"], start_new_session=True)
    try:
        with switch_home(tmp_path / "home"):
            server._write({"api_url": "http://127.0.0.1:9/api", "server_pid": stranger.pid})
            assert server.running_api_url() == "http://127.0.0.1:9/api"  # the very process
            state = server.read_state()
            state["server_started"] -= 1  # recorded when the previous owner of the PID started
            server.state_file().write_text(json.dumps(state))
            assert server.running_api_url() is None
            server.down(progress=lambda _m: None)
            assert stranger.poll() is None  # still running: down never signalled it
            assert server.read_state() == {}
    finally:
        stranger.kill()
        stranger.wait(10)


def test_the_server_keeps_concurrency_leases_in_its_home_on_disk(
    tmp_path: Path, switch_home: Callable[[Path], AbstractContextManager[Path]],
) -> None:
    """The storage Prefect loads by module name exists in the installed Prefect, and writes
    under the server's PREFECT_HOME (tests/test_faults.py sees a held slot's lease there)."""
    with switch_home(tmp_path / "home") as home:
        env = server.prefect_env("http://127.0.0.1:9/api")
    storage = importlib.import_module(env["PREFECT_SERVER_CONCURRENCY_LEASE_STORAGE"])
    with temporary_settings({PREFECT_HOME: env["PREFECT_HOME"]}):
        leases = storage.ConcurrencyLeaseStorage()
    assert Path(env["PREFECT_HOME"]).resolve() == (home / "prefect").resolve()
    assert leases.storage_path == Path(env["PREFECT_HOME"]) / "concurrency_leases"
