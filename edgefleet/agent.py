"""How a pull edge's agent is started: `edgefleet agent --edge NAME`, run beside the edge's
engine (and by the lab for its pull edges).

The agent is one process with two jobs. Its child is a Prefect worker of the pool
``edgefleet-pull`` polling only its edge's queue (``edgefleet.edge_calls``): the steps the
control plane asks for. Itself, it samples the local engine every few seconds and sends each
reading as an event (``edgefleet.agent_readings``): telemetry costs no flow run. It needs the
Prefect API and nothing else: no inbound port and no database credentials (they are removed
from its environment, so not even a flow run it starts can reach the records). Its worker's
heartbeats are the edge's: the telemetry sweep judges ONLINE/OFFLINE from them.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from types import FrameType

from edgefleet.edge_calls import (
    AGENT_DOCKER_HOST_ENV,
    AGENT_HEARTBEAT_SECONDS,
    DEFAULT_LOCAL_ENGINE,
    agent_name,
    local_connection,
    queue_of,
)
from edgefleet.models.connections import AGENT_EDGE_ENV
from edgefleet.server import WORKER_API_ENV
from edgefleet.settings import get_settings
from edgefleet.workers import PULL_POOL

RUNS_PER_AGENT = 4
PR_SET_PDEATHSIG = 1  # linux/prctl.h
SAMPLE_SECONDS = 30.0  # a reading sent this often (a sweep takes the newest when one is due)
# Never handed to an agent: what would reach the records or start a control plane.
WITHHELD = ("EDGEFLEET_DATABASE_URL", "EDGEFLEET_PREFECT_DATABASE_URL",
            "PREFECT_API_DATABASE_CONNECTION_URL")


def command(edge: str, limit: int = RUNS_PER_AGENT,
            sample_seconds: float = SAMPLE_SECONDS) -> list[str]:
    """The agent process (``serve``), run in the environment ``environment`` makes."""
    return [sys.executable, "-m", "edgefleet.agent", edge, str(limit), str(sample_seconds)]


def process_marker(edge: str) -> str:
    """What the agent of ``edge`` shows in its command line (``/proc/PID/cmdline``, NULs as
    spaces): ``pull-1`` is not ``pull-10``."""
    return f"-m edgefleet.agent {edge} "


def worker_command(edge: str, limit: int) -> list[str]:
    return [sys.executable, "-m", "prefect", "worker", "start", "--pool", PULL_POOL,
            "--work-queue", queue_of(edge), "--type", "process", "--name", agent_name(edge),
            "--limit", str(limit)]


def environment(api_url: str, edge: str, docker_host: str | None,
                base: dict[str, str] | None = None) -> dict[str, str]:
    """``base`` without the records' credentials, for the agent of ``edge``."""
    env = {k: v for k, v in (os.environ if base is None else base).items()
           if k not in WITHHELD}
    env.update({
        "PREFECT_API_URL": api_url,
        WORKER_API_ENV: api_url,  # its runs' Secret blocks and events: the same API
        AGENT_EDGE_ENV: edge,
        AGENT_DOCKER_HOST_ENV: docker_host or DEFAULT_LOCAL_ENGINE,
        "PREFECT_WORKER_QUERY_SECONDS": "1",
        "PREFECT_WORKER_PREFETCH_SECONDS": "5",
        "PREFECT_WORKER_HEARTBEAT_SECONDS": str(AGENT_HEARTBEAT_SECONDS),
    })
    return env


def command_line(edge: str, docker_host: str | None, api_url: str | None) -> str:
    """What ``edge add --pull`` prints: the command to run on the edge."""
    api = f"PREFECT_API_URL={api_url} " if api_url else ""
    host = f" --docker-host {docker_host}" if docker_host and \
        docker_host != DEFAULT_LOCAL_ENGINE else ""
    return f"{api}edgefleet agent --edge {edge}{host}"


def run(api_url: str, edge: str, docker_host: str | None, limit: int = RUNS_PER_AGENT,
        sample_seconds: float = SAMPLE_SECONDS) -> None:
    """Become the agent (``exec``, so the credentials withheld are gone from this process
    too): its signals, exit code and output are the caller's."""
    args = command(edge, limit, sample_seconds)
    os.execve(args[0], args, environment(api_url, edge, docker_host))


def serve(edge: str, limit: int, sample_seconds: float) -> int:
    """The agent: its worker as a child (in this process group, so the group's signals reach
    both), a reading sent every ``sample_seconds`` while the worker runs; the worker's exit
    code. SIGTERM and SIGINT are passed on to the worker, which ends its runs and exits."""
    from edgefleet.agent_readings import ReadingSender  # Prefect's events: the agent only

    api_url = os.environ["PREFECT_API_URL"]
    worker = subprocess.Popen(worker_command(edge, limit), preexec_fn=ends_with_parent())

    def pass_on(signum: int, _frame: FrameType | None) -> None:
        with contextlib.suppress(ProcessLookupError):
            worker.send_signal(signum)

    signal.signal(signal.SIGTERM, pass_on)
    signal.signal(signal.SIGINT, pass_on)
    settings = get_settings()
    sender = ReadingSender(local_connection(edge, None), settings.telemetry_timeout,
                           settings.telemetry_disk_seconds)
    while worker.poll() is None:
        sender.send(api_url)
        with contextlib.suppress(subprocess.TimeoutExpired):
            worker.wait(timeout=sample_seconds)
    return worker.returncode


def ends_with_parent() -> Callable[[], None] | None:
    """For ``Popen(preexec_fn=)``: the child gets SIGTERM when this process dies, however it
    dies (a worker left alone would keep the edge ONLINE by its heartbeats, with no
    readings). Looked up before the fork: the child only calls it. None off Linux."""
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    return lambda: prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


if __name__ == "__main__":
    sys.exit(serve(sys.argv[1], int(sys.argv[2]), float(sys.argv[3])))
