"""The fork server the pool's flow runs start from (``edgefleet.flow_run_launcher``): a run
started through it behaves as ``python -m prefect.engine`` would, to the worker that
started it (output, exit code, signals), and no process outlives the one it belongs to.

A real fork server (Prefect and the flows imported) runs ``prefect.engine`` in its
children; the Prefect API they are given never answers (a socket that accepts no
connection), so a run with a valid id waits for it and one with a bad id fails at once.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import struct
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from edgefleet import flow_run_launcher as launcher
from edgefleet.workers import WARM_MODULES

pytestmark = pytest.mark.slow  # a fork server imports Prefect and every flow once


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    env: dict[str, str]

    def children(self) -> list[int]:
        path = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        return [int(p) for p in path.read_text().split()] if path.exists() else []

    def client(self, *args: str, env: dict[str, str] | None = None
               ) -> subprocess.Popen[str]:
        return subprocess.Popen([sys.executable, "-m", "edgefleet.flow_run_launcher", *args],
                                env=env or self.env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)


def start_server(env: dict[str, str]) -> subprocess.Popen[bytes]:
    """A fork server, once it listens (a client queues while it imports)."""
    process = subprocess.Popen(launcher.serve_command(os.getpid(), WARM_MODULES), env=env,
                               stdin=subprocess.DEVNULL)
    assert wait_for(lambda: env[launcher.SOCKET_ENV] in Path("/proc/net/unix").read_text())
    return process


@pytest.fixture(scope="module")
def silent_api() -> Iterator[str]:
    """A Prefect API URL whose socket takes connections and never answers them."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    yield f"http://127.0.0.1:{listener.getsockname()[1]}/api"
    listener.close()


@pytest.fixture(scope="module")
def fork_server(silent_api: str) -> Iterator[Server]:
    env = {**os.environ, launcher.SOCKET_ENV: launcher.new_socket_name(),
           "PREFECT_API_URL": silent_api}
    process = start_server(env)
    yield Server(process, env)
    process.kill()
    process.wait()


def wait_for(check, timeout: float = 30) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.1)
    return False


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(") ")[-1][0] != "Z"
    except FileNotFoundError:
        return False


def waiting_run(server: Server) -> tuple[subprocess.Popen[str], int]:
    """A client whose run waits on the silent API; and its child in the fork server."""
    before = set(server.children())
    client = server.client(str(uuid.uuid4()))
    assert wait_for(lambda: set(server.children()) - before), "no child forked"
    (child,) = set(server.children()) - before
    return client, child


def test_a_run_runs_warm_with_the_client_s_output_and_exit_code(fork_server: Server) -> None:
    client = fork_server.client("not-a-flow-run-id")
    _out, err = client.communicate(timeout=120)
    assert client.returncode == 1
    assert "Invalid flow run id" in err  # prefect.engine's own words, on the client's stderr
    assert "started cold" not in err


def test_another_environment_starts_cold_and_says_in_what(fork_server: Server) -> None:
    env = {**fork_server.env, "EDGEFLEET_LAUNCHER_TEST": "1"}
    client = fork_server.client("not-a-flow-run-id", env=env)
    _out, err = client.communicate(timeout=120)
    assert client.returncode == 1
    assert "started cold" in err and "EDGEFLEET_LAUNCHER_TEST" in err
    assert "Invalid flow run id" in err


def test_other_prefect_settings_start_cold(fork_server: Server) -> None:
    env = {**fork_server.env, "PREFECT_API_REQUEST_TIMEOUT": "7"}
    client = fork_server.client("not-a-flow-run-id", env=env)
    _out, err = client.communicate(timeout=120)
    assert "started cold" in err and "Prefect's settings" in err
    assert client.returncode == 1


@pytest.mark.parametrize("name", [None, "edgefleet-launcher-nobody-listens"])
def test_without_a_fork_server_the_client_runs_the_engine_itself(
        fork_server: Server, name: str | None) -> None:
    env = {k: v for k, v in fork_server.env.items() if k != launcher.SOCKET_ENV}
    if name:
        env[launcher.SOCKET_ENV] = name
    client = fork_server.client("not-a-flow-run-id", env=env)
    _out, err = client.communicate(timeout=120)
    assert client.returncode == 1 and "Invalid flow run id" in err


def test_sigterm_to_the_client_reaches_the_run_and_it_exits_as_the_run_did(
        fork_server: Server) -> None:
    client, child = waiting_run(fork_server)
    assert os.getpgid(child) == os.getpgid(fork_server.process.pid)  # killed with its group
    time.sleep(0.5)  # the client has its handlers by now
    client.send_signal(signal.SIGTERM)
    client.wait(timeout=60)
    assert client.returncode == -signal.SIGTERM  # as the engine's own process would
    assert wait_for(lambda: not alive(child))


def test_a_client_killed_takes_its_run_with_it(fork_server: Server) -> None:
    client, child = waiting_run(fork_server)
    client.kill()
    client.wait()
    assert wait_for(lambda: not alive(child), timeout=10)
    # the fork server goes on serving
    again = fork_server.client("not-a-flow-run-id")
    assert again.wait(timeout=120) == 1


def test_a_fork_server_killed_takes_its_runs_with_it(silent_api: str) -> None:
    env = {**os.environ, launcher.SOCKET_ENV: launcher.new_socket_name(),
           "PREFECT_API_URL": silent_api}
    process = start_server(env)
    try:
        server = Server(process, env)
        client, child = waiting_run(server)
        process.kill()
        process.wait()
        client.wait(timeout=30)
        assert client.returncode != 0
        assert "fork server went away" in (client.stderr.read() if client.stderr else "")
        assert wait_for(lambda: not alive(child), timeout=10)
    finally:
        process.kill()
        process.wait()


def raw_request(name: str, payload: bytes, fds: list[int] | None = None) -> bytes:
    """What the fork server answers a hand-made request (b"" when it hangs up)."""
    import array

    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    conn.settimeout(30)
    conn.connect(launcher._address(name))
    try:
        if fds:
            conn.sendmsg([payload], [(socket.SOL_SOCKET, socket.SCM_RIGHTS,
                                      array.array("i", fds))])
        else:
            conn.sendall(payload)
        return conn.recv(100)
    except (BrokenPipeError, ConnectionResetError):  # it hung up before reading it all
        return b""
    finally:
        conn.close()


@pytest.mark.parametrize("payload", [
    b"garbage",                                        # no length, no streams
    struct.pack("!I", 1 << 30) + b"{",                 # a length past the limit
    struct.pack("!I", 9) + b"not json!",               # not JSON
    struct.pack("!I", 13) + b'{"argv": "x"}',          # fields of the wrong kind
    struct.pack("!I", 50) + b'{"argv": []}',           # cut short
])
def test_hostile_requests_are_refused_and_it_serves_on(fork_server: Server,
                                                       payload: bytes) -> None:
    name = fork_server.env[launcher.SOCKET_ENV]
    before = set(fork_server.children())
    with_streams = None if payload == b"garbage" else [0, 1, 2]
    assert raw_request(name, payload, with_streams) == b""
    assert set(fork_server.children()) <= before  # nothing forked
    assert fork_server.client("not-a-flow-run-id").wait(timeout=120) == 1


@pytest.mark.skipif(os.getuid() != 0, reason="needs root to connect as another user")
def test_another_user_is_refused(fork_server: Server) -> None:
    name = fork_server.env[launcher.SOCKET_ENV]
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # a process of user nobody asks for a run
        try:
            os.setgid(65534)
            os.setuid(65534)
            answer = raw_request(name, launcher._request(["not-a-flow-run-id"]), [0, 1, 2])
            os.write(write_end, b"hung up" if answer == b"" else answer)
        except BaseException as exc:
            os.write(write_end, repr(exc).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    os.waitpid(pid, 0)
    with os.fdopen(read_end, "rb") as reply:
        assert reply.read() == b"hung up"


def test_only_prefect_s_and_per_run_variables_may_differ() -> None:
    warm = {"PATH": "/bin", "EDGEFLEET_HOME": "/a", "PREFECT_API_URL": "http://x/api"}
    run = {**warm, "PREFECT__FLOW_RUN_ID": "1", "PREFECT_WORKER_QUERY_SECONDS": "1.0"}
    assert launcher.differences(run, warm) == []
    assert launcher.differences({**run, "EDGEFLEET_HOME": "/b", "X": "1"}, warm) == [
        "EDGEFLEET_HOME", "X"]
    assert launcher.differences({k: v for k, v in run.items() if k != "PATH"}, warm) == ["PATH"]


def test_a_fork_server_whose_worker_is_gone_takes_no_more_runs_and_ends(silent_api: str) -> None:
    env = {**os.environ, launcher.SOCKET_ENV: launcher.new_socket_name(),
           "PREFECT_API_URL": silent_api}
    # its parent (the worker, here a Python that only starts it) ends at once
    starter = ("import os, subprocess as s, sys; print(s.Popen([sys.executable, '-m', "
               "'edgefleet.flow_run_launcher', 'serve', str(os.getpid()), *sys.argv[1:]], "
               "stdout=s.DEVNULL, stderr=s.DEVNULL).pid)")
    done = subprocess.run([sys.executable, "-c", starter, *WARM_MODULES], env=env,
                          capture_output=True, text=True, timeout=60, check=True)
    pid = int(done.stdout)
    try:
        assert wait_for(lambda: not alive(pid), timeout=120)  # once warm, it sees and ends
        assert env[launcher.SOCKET_ENV] not in Path("/proc/net/unix").read_text()
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
