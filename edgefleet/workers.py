"""How a worker of the ``edgefleet`` work pool is started: what `edgefleet up` starts N of,
and what `edgefleet worker` runs in the foreground on any machine.

A worker needs only ``PREFECT_API_URL`` (the control plane's Prefect API) and the records'
``EDGEFLEET_DATABASE_URL``; it keeps no state a later run needs. It polls twice a second
(not Prefect's every 10 s) so a submitted job starts at once, its flow runs start warm from
its fork server (``edgefleet.flow_run_launcher``: no new interpreter importing Prefect per
run), and they send a heartbeat every ``run_heartbeat_seconds``: three missed tell
reconcile-deployments that a run's process is gone (its worker was killed), wherever the
next reconcile runs.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import uuid

from edgefleet.server import WORKER_API_ENV
from edgefleet.settings import get_settings

POOL = "edgefleet"
# The pool of pull edges' agents (a queue per edge) and the one deployment they run
# (``edgefleet.edge_calls``).
PULL_POOL = "edgefleet-pull"
OPERATION_FLOW = "edge-operation"
RUNS_PER_WORKER = 8
# what the fork server of a worker's flow runs imports once (every flow of the pool)
WARM_MODULES = ["edgefleet.deployments.work_pool"]


def default_name() -> str:
    """Says where it runs, unique among the pool's workers: ``<host>-<random>``."""
    return f"{socket.gethostname()}-{uuid.uuid4().hex[:8]}"


def valid_name(name: str) -> bool:
    """A name that is one argument and one Prefect worker name, never an option or a path."""
    return re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}", name) is not None


def command(name: str, limit: int = RUNS_PER_WORKER) -> list[str]:
    return [sys.executable, "-m", "prefect", "worker", "start", "--pool", POOL,
            "--type", "process", "--name", name, "--limit", str(limit)]


def start_command(name: str, limit: int = RUNS_PER_WORKER) -> list[str]:
    """What `edgefleet up` starts: ``run`` (its fork server, then the worker in its place)."""
    return [sys.executable, "-m", "edgefleet.workers", name, str(limit)]


def environment(api_url: str, base: dict[str, str] | None = None) -> dict[str, str]:
    """``base`` (this process's environment) for a worker reporting to ``api_url``."""
    settings = get_settings()
    env = dict(os.environ if base is None else base)
    env.setdefault("PREFECT_HOME", str(settings.home / "prefect"))
    # the pool's deployments run `python -m edgefleet.flow_run_launcher`: this interpreter
    bin_dir = os.path.dirname(sys.executable)
    env["PATH"] = os.pathsep.join([bin_dir, *(p for p in env.get("PATH", "").split(os.pathsep)
                                              if p and p != bin_dir)])
    env.update({
        "PREFECT_API_URL": api_url,
        WORKER_API_ENV: api_url,  # its flow runs' events and notices go there
        "PREFECT_WORKER_QUERY_SECONDS": "0.5",
        "PREFECT_WORKER_PREFETCH_SECONDS": "5",
        "PREFECT_WORKER_HEARTBEAT_SECONDS": "10",
        # inherited by every flow run it starts (its own process)
        "PREFECT_FLOWS_HEARTBEAT_FREQUENCY": str(settings.run_heartbeat_seconds),
    })
    return env


def start_fork_server(env: dict[str, str]) -> dict[str, str]:
    """Start the fork server its flow runs start from (``edgefleet.flow_run_launcher``) as a
    child of this process, in its process group; ``env`` naming it for the worker."""
    from edgefleet.flow_run_launcher import SOCKET_ENV, new_socket_name, serve_command

    env = {**env, SOCKET_ENV: new_socket_name()}
    subprocess.Popen(serve_command(os.getpid(), WARM_MODULES), env=env,
                     stdin=subprocess.DEVNULL)
    return env


def run(api_url: str, name: str | None = None, limit: int = RUNS_PER_WORKER) -> None:
    """Become the worker (``exec``) beside its fork server: its signals, exit code and
    output are the caller's."""
    args = command(name or default_name(), limit)
    os.execve(args[0], args, start_fork_server(environment(api_url)))


if __name__ == "__main__":  # start_command: `python -m edgefleet.workers NAME LIMIT`
    run(os.environ["PREFECT_API_URL"], sys.argv[1], int(sys.argv[2]))
