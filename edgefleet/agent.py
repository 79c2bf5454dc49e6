"""How a pull edge's agent is started: `edgefleet agent --edge NAME`, run beside the edge's
engine (and by the lab for its pull edges).

The agent is a Prefect worker of the pool ``edgefleet-pull`` polling only its edge's queue
(``edgefleet.edge_calls``). It needs the Prefect API and nothing else: no inbound port and no
database credentials (they are removed from its environment, so not even a flow run it
starts can reach the records). Its worker heartbeats are the edge's heartbeats: the
telemetry sweep judges ONLINE/OFFLINE from them.
"""

from __future__ import annotations

import os
import sys

from edgefleet.edge_calls import (
    AGENT_DOCKER_HOST_ENV,
    AGENT_HEARTBEAT_SECONDS,
    agent_name,
    queue_of,
)
from edgefleet.models.connections import AGENT_EDGE_ENV, DEFAULT_LOCAL_ENGINE
from edgefleet.server import WORKER_API_ENV
from edgefleet.workers import PULL_POOL

RUNS_PER_AGENT = 4
# Never handed to an agent: what would reach the records or start a control plane.
WITHHELD = ("EDGEFLEET_DATABASE_URL", "EDGEFLEET_PREFECT_DATABASE_URL",
            "PREFECT_API_DATABASE_CONNECTION_URL")


def command(edge: str, limit: int = RUNS_PER_AGENT) -> list[str]:
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


def run(api_url: str, edge: str, docker_host: str | None, limit: int = RUNS_PER_AGENT) -> None:
    """Become the agent (``exec``): its signals, exit code and output are the caller's."""
    args = command(edge, limit)
    os.execve(args[0], args, environment(api_url, edge, docker_host))
