"""Start, check and stop the lab's processes: one registry and one dockerd per edge.

Every process is started in its own session with its output in a log file under the lab dir,
and is later found again only by the PID recorded in the state file, checked against its
command line (a recycled PID never gets signalled).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import httpx
from tenacity import Retrying, retry_if_result, stop_after_delay, wait_fixed

from edgefleet.errors import LabError
from edgefleet.lab.state import EdgeState, RegistryState

DOCKERD = "/usr/sbin/dockerd"
REGISTRY = "/usr/bin/docker-registry"
START_TIMEOUT = 60.0
STOP_TIMEOUT = 20.0


# ---------------------------------------------------------------- ports and processes


def port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port(taken: set[int]) -> int:
    """A TCP port on 127.0.0.1 that is free now and not in ``taken`` (ports we reserved)."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port not in taken:
            taken.add(port)
            return port
    raise LabError("no free TCP port on 127.0.0.1")


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(
            errors="replace"
        )
    except OSError:
        return ""


def _zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rpartition(")")[2].split()[0] in ("Z", "X")


def pid_running(pid: int | None, marker: str) -> bool:
    """True when ``pid`` is a live (not zombie) process whose command line holds ``marker``."""
    if not pid or pid <= 0:
        return False
    return marker in cmdline(pid) and not _zombie(pid)


def _reap(pid: int) -> None:
    """Collect the exit status when the process is our own child (else it stays a zombie)."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def poll_until(check: Callable[[], bool], *, timeout: float, pause: float) -> bool:
    """Call ``check`` every ``pause`` seconds until it is true (True) or ``timeout`` has
    passed (False); an exception from ``check`` ends the wait at once."""
    return bool(Retrying(stop=stop_after_delay(timeout), wait=wait_fixed(pause),
                         retry=retry_if_result(lambda done: not done),
                         retry_error_callback=lambda _state: False)(check))


def stop_process(pid: int | None, marker: str, timeout: float = STOP_TIMEOUT) -> None:
    """SIGTERM, wait up to ``timeout``, then SIGKILL; only if ``pid`` is still our process."""
    if not pid_running(pid, marker):
        if pid:
            _reap(pid)
        return
    assert pid is not None

    def gone() -> bool:
        _reap(pid)
        return not pid_running(pid, marker)

    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    if poll_until(gone, timeout=timeout, pause=0.1):
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    if not poll_until(gone, timeout=5.0, pause=0.05):
        raise LabError(f"process {pid} ({marker}) survived SIGKILL; check `ps -p {pid}`")


def processes_with(marker: str) -> list[int]:
    """PIDs of live processes whose command line mentions ``marker`` (a lab-owned path)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            pid = int(entry.name)
            if marker in cmdline(pid) and not _zombie(pid):
                found.append(pid)
    return found


def children(pid: int) -> list[int]:
    """Direct children of ``pid`` (from /proc/*/stat)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            fields = stat.rpartition(")")[2].split()
            if len(fields) > 1 and fields[1] == str(pid):
                found.append(int(entry.name))
    return found


def stop_tree(pid: int, marker: str) -> None:
    """Stop ``pid`` after SIGKILLing everything below it.

    For a containerd-shim whose dockerd died: the container processes are its children and
    would otherwise outlive it (re-parented to init).
    """
    if not pid_running(pid, marker):
        return
    todo, below = [pid], []
    while todo:
        kids = children(todo.pop())
        below.extend(kids)
        todo.extend(kids)
    for child in reversed(below):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(child, signal.SIGKILL)
    stop_process(pid, marker)


def stale_containerd(exec_root: str) -> list[int]:
    """containerd processes of a dockerd that is gone (started with its exec root): a new
    dockerd would start a second one on the same state and wait on it. Not the shims (they
    carry the same path, and their containers are the edge's)."""
    return [pid for pid in processes_with(exec_root.rstrip("/") + "/")  # not lab-10 for lab-1
            if Path(cmdline(pid).split(" ", 1)[0]).name == "containerd"]


def spawn(cmd: list[str], log: Path, env: dict[str, str] | None = None) -> int:
    """Start ``cmd`` detached (own session), output appended to ``log``; return its PID.
    ``env``: its whole environment (default: ours)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        out.write(f"\n--- {time.strftime('%Y-%m-%dT%H:%M:%S')} {' '.join(cmd)}\n".encode())
        out.flush()
        try:
            proc = subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True, close_fds=True,
                env={k: v for k, v in (os.environ if env is None else env).items()
                     if not k.startswith("DOCKER_")},
            )
        except OSError as exc:
            raise LabError(f"could not start {cmd[0]}: {exc}") from exc
    return proc.pid


def log_tail(log: Path | str, lines: int = 15) -> str:
    """The log's last ``lines`` lines, without gRPC's reconnect chatter (dockerd writes a
    few of those a second while its containerd is not up: they would hide why)."""
    try:
        text = Path(log).read_text(errors="replace")
    except OSError:
        return "(no log)"
    kept = [line for line in text.rstrip().splitlines() if "module=grpc" not in line]
    return "\n".join(kept[-lines:])


def wait_until(
    answers: Callable[[], bool], *, pid: int, marker: str, what: str, log: str,
    timeout: float = START_TIMEOUT,
) -> None:
    """Poll ``answers`` until true; fail early if the process dies, else after ``timeout``."""

    def ready() -> bool:
        if answers():
            return True
        _reap(pid)
        if not pid_running(pid, marker):
            raise LabError(f"{what} exited during start-up; the end of {log}:\n{log_tail(log)}")
        return False

    if not poll_until(ready, timeout=timeout, pause=0.2):
        raise LabError(
            f"{what} did not answer within {timeout:.0f} s; the end of {log}:\n{log_tail(log)}"
        )


def unmount_under(path: Path) -> None:
    """Lazily unmount anything a killed dockerd left mounted below ``path`` (deepest first)."""
    prefix = str(path.resolve()) + "/"
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return
    points = [line.split()[4] for line in lines if len(line.split()) > 4]
    for point in sorted((p for p in points if p.startswith(prefix)), key=len, reverse=True):
        with contextlib.suppress(OSError, subprocess.TimeoutExpired):
            subprocess.run(["umount", "-l", point], capture_output=True, timeout=10, check=False)


# ---------------------------------------------------------------- the registry


def registry_config(storage: Path, port: int, secret: str) -> str:
    """The distribution registry's config: filesystem storage, deletes on, http on loopback."""
    return (
        "version: 0.1\n"
        "log:\n"
        "  level: info\n"
        "  fields:\n"
        "    service: edgefleet-lab-registry\n"
        "storage:\n"
        "  filesystem:\n"
        f"    rootdirectory: {storage}\n"
        "  delete:\n"
        "    enabled: true\n"
        "  cache:\n"
        "    blobdescriptor: inmemory\n"
        "http:\n"
        f"  addr: 127.0.0.1:{port}\n"
        f"  secret: {secret}\n"
        "  headers:\n"
        "    X-Content-Type-Options: [nosniff]\n"
    )


def registry_answers(port: int, timeout: float = 2.0) -> bool:
    try:
        resp = httpx.get(f"http://127.0.0.1:{port}/v2/", timeout=timeout, trust_env=False)
    except httpx.HTTPError:
        return False
    return resp.status_code == 200


def start_registry(lab_dir: Path, port: int) -> RegistryState:
    folder = lab_dir / "registry"
    storage = folder / "data"
    storage.mkdir(parents=True, exist_ok=True)
    config = folder / "config.yml"
    config.write_text(registry_config(storage, port, secrets.token_hex(16)))
    log = lab_dir / "logs" / "registry.log"
    pid = spawn([REGISTRY, "serve", str(config)], log)
    state = RegistryState(port=port, pid=pid, config=str(config), log=str(log))
    wait_until(
        lambda: registry_answers(port), pid=pid, marker=str(config),
        what=f"the registry on 127.0.0.1:{port}", log=str(log),
    )
    return state


# ---------------------------------------------------------------- dockerd edges


def dockerd_command(edge: EdgeState) -> list[str]:
    """dockerd for one edge: own roots and socket, mTLS on a loopback port, no iptables."""
    server = Path(edge.server_certs)
    listen = [] if edge.pull else [  # a pull edge: its socket only, no inbound port
        "--host", edge.docker_host,
        "--tlsverify",
        "--tlscacert", str(server / "ca.pem"),
        "--tlscert", str(server / "cert.pem"),
        "--tlskey", str(server / "key.pem"),
    ]
    return [
        DOCKERD,
        "--config-file", edge.config_file,
        "--data-root", edge.data_root,
        "--exec-root", edge.exec_root,
        "--pidfile", edge.pidfile,
        "--host", f"unix://{edge.socket}",
        *listen,
        "--iptables=false",
        "--ip6tables=false",
        "--bridge=none",
        "--ip-masq=false",
        "--default-address-pool", f"base={edge.address_pool},size=24",
    ]

