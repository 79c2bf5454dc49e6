"""Starts the pool's flow runs warm: forked from a process that has Prefect and every flow
already imported, instead of a new interpreter importing them (3 to 4 s of CPU per run).

Each worker started by `edgefleet worker` (and so by `edgefleet up`) starts one *fork
server* beside it (``python -m edgefleet.flow_run_launcher serve PID``, in the worker's process
group, listening on an abstract unix socket named in ``EDGEFLEET_LAUNCHER_SOCKET``). The
pool's deployments run ``python -m edgefleet.flow_run_launcher`` instead of Prefect's
``python -m prefect.engine``: this small client hands its arguments, environment, working
directory and standard streams to the fork server, which forks a child that runs
``prefect.engine`` as its ``__main__`` exactly as the new interpreter would have.

What the worker sees is unchanged: the client is the flow run's process. A signal sent to
it (Prefect's cancellation sends SIGTERM) is passed on to the child, and it exits as the
child did (the same code, or killed by the same signal). If the client dies, the fork server
kills the child; if the fork server dies, the client kills the child. Killing the worker's
process group kills all three.

The client falls back to ``python -m prefect.engine`` when no fork server is named or none
answers, and the child does too (it ``exec``s it) when its environment differs from the one
the fork server imported with: other Prefect settings once resolved, or any other variable
but Prefect's per-run ``PREFECT__*`` ones. A warm start never runs with other settings than
a cold one would.
"""

from __future__ import annotations

import array
import contextlib
import json
import os
import selectors
import signal
import socket
import struct
import sys
from typing import Any, NoReturn

SOCKET_ENV = "EDGEFLEET_LAUNCHER_SOCKET"
COMMAND = "python -m edgefleet.flow_run_launcher"
ENGINE = ["-m", "prefect.engine"]
_LENGTH = struct.Struct("!I")
MAX_REQUEST = 4 << 20  # an environment is a few kB; a bigger request is refused
STREAMS = (0, 1, 2)
# Prefect's settings (compared once resolved: the worker passes its own on as variables,
# "1" becoming "1.0") and what it sets per run (PREFECT__FLOW_RUN_ID, the control channel's
# port...: read by prefect.engine as it runs, never by an import)
_PREFECT_PREFIX = "PREFECT_"


def new_socket_name() -> str:
    """An abstract socket name (no file to leave behind) unique to one fork server."""
    return f"edgefleet-launcher-{os.getpid()}-{os.urandom(6).hex()}"


def _address(name: str) -> str:
    return "\0" + name


def _cold_start(argv: list[str]) -> NoReturn:
    os.execv(sys.executable, [sys.executable, *ENGINE, *argv])


# --- the client: the flow run's process as the worker sees it ----------------------------

def _request(argv: list[str]) -> bytes:
    body = json.dumps({"argv": argv, "env": dict(os.environ), "cwd": os.getcwd()}).encode()
    return _LENGTH.pack(len(body)) + body


def _read_line(conn: socket.socket) -> str | None:
    """One ``\\n``-ended line from the fork server, or None at its end."""
    data = bytearray()
    while not data.endswith(b"\n"):
        chunk = conn.recv(1)
        if not chunk:
            return None
        data += chunk
    return data.decode().strip()


def _exit_as(status: int) -> None:
    """Exit as the child did: with its code, or killed by its signal."""
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        signal.signal(sig, signal.SIG_DFL)
        os.kill(os.getpid(), sig)
        sys.exit(128 + sig)  # a signal that does not kill (a stop): the shell's convention
    sys.exit(os.waitstatus_to_exitcode(status))


def client(argv: list[str]) -> None:
    """Run the flow run through the fork server named in the environment, else cold."""
    name = os.environ.get(SOCKET_ENV)
    if not name:
        _cold_start(argv)
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        conn.connect(_address(name))
        conn.sendmsg([_request(argv)],
                     [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", STREAMS))])
        reply = _read_line(conn)
    except OSError:
        reply = None
    if reply is None or not reply.startswith("pid "):
        conn.close()
        _cold_start(argv)  # no fork server here (or it refused): what Prefect would do
    child = int(reply.split()[1])

    def pass_on(signum: int, _frame: Any) -> None:
        # a signal the whole group got (Ctrl-C, `kill -- -PGID`) reached the child already
        if signum == signal.SIGTERM or os.getpgid(child) != os.getpgrp():
            os.kill(child, signum)

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, pass_on)
    try:
        ended = _read_line(conn)
    except OSError:
        ended = None
    if ended is None or not ended.startswith("exit "):  # the fork server died: so does it
        with contextlib.suppress(ProcessLookupError):
            os.kill(child, signal.SIGKILL)
        sys.exit(f"flow_run_launcher: the fork server went away; flow run process {child} "
                 "was killed")
    _exit_as(int(ended.split()[1]))


# --- the fork server ---------------------------------------------------------------------

def _warm_up(modules: list[str]) -> None:
    """Import what every flow run would: Prefect's engine and the pool's flows (named by
    the worker that starts the fork server, see ``edgefleet.workers``)."""
    import importlib

    for module in ["prefect.engine", "prefect.flow_engine", "prefect.task_engine", *modules]:
        importlib.import_module(module)


def differences(env: dict[str, str], warm_env: dict[str, str]) -> list[str]:
    """The variables but Prefect's in which ``env`` differs from the fork server's."""
    keys = set(env) | set(warm_env)
    return sorted(k for k in keys
                  if not k.startswith(_PREFECT_PREFIX) and env.get(k) != warm_env.get(k))


def _prefect_settings() -> dict[str, Any]:
    """Prefect's settings as this process resolved them from its environment (and profile)."""
    from prefect.settings import get_current_settings

    return get_current_settings().model_dump(mode="json")


def _receive(conn: socket.socket) -> tuple[dict[str, Any], list[int]]:
    """The client's request and its three streams; ValueError if it is malformed."""
    conn.settimeout(10)
    fds = array.array("i")
    data, ancillary, _flags, _addr = conn.recvmsg(64 << 10, socket.CMSG_SPACE(
        len(STREAMS) * fds.itemsize))
    for level, kind, payload in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(payload[:len(payload) - len(payload) % fds.itemsize])
    try:
        if len(data) < _LENGTH.size or len(fds) != len(STREAMS):
            raise ValueError("a request is its length, its JSON and three streams")
        (length,) = _LENGTH.unpack_from(data)
        if length > MAX_REQUEST:
            raise ValueError(f"request of {length} bytes")
        body = bytearray(data[_LENGTH.size:])
        while len(body) < length:
            chunk = conn.recv(min(64 << 10, length - len(body)))
            if not chunk:
                raise ValueError("request cut short")
            body += chunk
        request = json.loads(body)
        if not (isinstance(request, dict) and isinstance(request.get("argv"), list)
                and isinstance(request.get("env"), dict) and isinstance(request.get("cwd"), str)
                and all(isinstance(a, str) for a in request["argv"])
                and all(isinstance(k, str) and isinstance(v, str)
                        for k, v in request["env"].items())):
            raise ValueError("request fields: argv (strings), env (strings), cwd")
    except Exception:
        for fd in fds:
            os.close(fd)
        raise
    return request, list(fds)


def _become_flow_run(request: dict[str, Any], streams: list[int], differ: list[str],
                     warm_settings: dict[str, Any]) -> None:
    """In the forked child: take the client's place and run ``prefect.engine``. Never
    returns."""
    code = 1
    try:
        for target, fd in zip(STREAMS, streams, strict=True):
            os.dup2(fd, target)
            os.close(fd)
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCHLD):
            signal.signal(signum, signal.SIG_DFL)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        import prefect.context

        prefect.context.refresh_global_settings_context()
        if not differ and _prefect_settings() != warm_settings:
            differ = ["Prefect's settings"]
        if differ:
            print("flow_run_launcher: started cold, as its environment differs from the fork "
                  f"server's in {', '.join(differ)}", file=sys.stderr, flush=True)
            _cold_start(request["argv"])
        import runpy

        import prefect.engine

        from edgefleet.settings import get_settings

        get_settings.cache_clear()
        sys.argv = [prefect.engine.__file__, *request["argv"]]
        del sys.modules["prefect.engine"]  # run afresh as __main__, as `-m` would
        try:
            runpy.run_module("prefect.engine", run_name="__main__", alter_sys=True)
            code = 0
        except SystemExit as done:
            code = done.code if isinstance(done.code, int) else (0 if done.code is None else 1)
            if not isinstance(done.code, int | None):
                print(done.code, file=sys.stderr)
        except BaseException:
            import traceback
            traceback.print_exc()
        import atexit

        atexit._run_exitfuncs()  # Prefect drains its logs and events at exit
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):  # a closed stream has nothing to flush
                stream.flush()
        os._exit(code)


class ForkServer:
    """Accepts clients and forks a child per request; watches the clients and children."""

    def __init__(self, name: str, worker: int) -> None:
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(_address(name))  # bound first: clients queue while it warms up
        self.listener.listen(64)
        self.worker = worker  # its parent: the worker, once the starter has exec'd it
        self.selector = selectors.DefaultSelector()
        self.children: dict[int, tuple[socket.socket, int]] = {}  # pid: (client, pidfd)
        self.warm_env: dict[str, str] = {}
        self.warm_settings: dict[str, Any] = {}

    def serve(self, modules: list[str]) -> None:
        _warm_up(modules)
        self.warm_env = dict(os.environ)
        self.warm_settings = _prefect_settings()
        self.selector.register(self.listener, selectors.EVENT_READ, ("accept", None))
        while self.listener.fileno() >= 0 or self.children:
            for key, _events in self.selector.select(timeout=1):
                kind, pid = key.data
                if kind == "accept":
                    self._accept()
                elif kind == "client gone":
                    self._kill(pid)
                else:
                    self._reap(pid)
            if os.getppid() != self.worker and self.listener.fileno() >= 0:
                # the worker is gone: take no more runs, let the ones in flight end
                self.selector.unregister(self.listener)
                self.listener.close()

    def _accept(self) -> None:
        conn, _ = self.listener.accept()
        try:
            uid = struct.unpack("3i", conn.getsockopt(
                socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i")))[1]
            if uid != os.getuid():
                raise ValueError(f"client of uid {uid}")
            request, streams = _receive(conn)
        except (OSError, ValueError) as exc:
            print(f"flow_run_launcher: request refused: {exc}", file=sys.stderr, flush=True)
            conn.close()
            return
        differ = differences(request["env"], self.warm_env)
        sys.stdout.flush()
        sys.stderr.flush()
        try:
            pid = os.fork()
        except OSError as exc:  # out of processes or memory: the client starts it cold
            print(f"flow_run_launcher: cannot fork: {exc}", file=sys.stderr, flush=True)
            for fd in streams:
                os.close(fd)
            conn.close()
            return
        if pid == 0:
            self.selector.close()
            self.listener.close()
            for other, pidfd in self.children.values():
                other.close()
                os.close(pidfd)
            conn.close()
            _become_flow_run(request, streams, differ, self.warm_settings)
        for fd in streams:
            os.close(fd)
        pidfd = os.pidfd_open(pid)
        self.children[pid] = (conn, pidfd)
        with contextlib.suppress(OSError):  # the client is gone: seen as its end below
            conn.sendall(f"pid {pid}\n".encode())
        conn.settimeout(None)
        self.selector.register(conn, selectors.EVENT_READ, ("client gone", pid))
        self.selector.register(pidfd, selectors.EVENT_READ, ("exited", pid))

    def _kill(self, pid: int) -> None:
        """The client ended (killed with its worker, or by Prefect): its child goes too."""
        conn, _pidfd = self.children[pid]
        self.selector.unregister(conn)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)

    def _reap(self, pid: int) -> None:
        conn, pidfd = self.children.pop(pid)
        _, status = os.waitpid(pid, 0)
        self.selector.unregister(pidfd)
        os.close(pidfd)
        if self.selector.get_map().get(conn.fileno()) is not None:
            self.selector.unregister(conn)
        with contextlib.suppress(OSError):
            conn.sendall(f"exit {status}\n".encode())
        conn.close()


def serve_command(worker: int, modules: list[str]) -> list[str]:
    """The fork server of the worker of PID ``worker`` (its parent: it ends when that one
    is gone), importing ``modules``."""
    return [sys.executable, "-m", "edgefleet.flow_run_launcher", "serve", str(worker),
            *modules]


def main(args: list[str]) -> None:
    """``serve WORKER_PID MODULE...`` (the fork server, named by
    ``EDGEFLEET_LAUNCHER_SOCKET``), else the client: the arguments are ``prefect.engine``'s."""
    if args[:1] == ["serve"]:
        name = os.environ.get(SOCKET_ENV)
        if not name or len(args) < 2 or not args[1].isdigit():
            raise SystemExit(f"usage: {SOCKET_ENV}=NAME python -m edgefleet.flow_run_launcher "
                             "serve WORKER_PID [MODULE...]")
        ForkServer(name, int(args[1])).serve(args[2:])
    else:
        client(args)


if __name__ == "__main__":
    main(sys.argv[1:])
