"""`edgefleet up` / `down`: a local Prefect server, the ``edgefleet`` work pool and its workers.

The server and N workers are started in the background with their PIDs recorded under
``<home>/run``; ``down`` stops exactly those. `up` registers every flow as a deployment of
the ``process`` work pool ``edgefleet`` (see ``edgefleet.deployments.work_pool``). While the
pool is registered, jobs are submitted as flow runs of those deployments (visible in the
UI, runnable with ``prefect deployment run``) and run by whichever worker of the pool asks
first: one that `up` started, or `edgefleet worker` on another machine.

Without `edgefleet up`, a command that runs a flow in its own process needs a Prefect API
too; left alone, Prefect would start a temporary server for that one process (about 20 s
each time). ``flow_api_url`` starts the same local server instead, alone ("server only"),
once, in the background: later commands reuse it, `edgefleet up` adopts it and adds the
pool and its workers, `edgefleet down` stops it. A user's own ``PREFECT_API_URL`` is used as
it is. A lock file in ``<home>/run`` keeps two commands starting at once from starting two.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
from tenacity import RetryCallState, Retrying, retry_if_result, stop_after_delay, wait_fixed
from tenacity.stop import stop_base

from edgefleet.errors import EdgefleetError
from edgefleet.settings import get_settings

SERVED_FLOWS = ("deploy-application", "stop-application", "update-application",
                "notify-application-update", "reconcile-notifications", "check-image-updates",
                "collect-telemetry", "reconcile-deployments", "clean-up-edge", "rollout-group",
                "stop-group", "reconcile-groups", "auto-update-groups",
                "launch-application")


def run_dir() -> Path:
    path = get_settings().home / "run"
    path.mkdir(parents=True, exist_ok=True)
    return path


def state_file() -> Path:
    return run_dir() / "prefect.json"


def lock_file() -> Path:
    return run_dir() / "prefect.lock"


@contextlib.contextmanager
def _locked() -> Iterator[None]:
    """Hold the home's server lock: one process at a time starts, adopts or stops servers.

    A ``flock``: released by the kernel when the holder exits, however it exits. Children
    are spawned with ``close_fds`` (the default), so they never inherit it.
    """
    with lock_file().open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split(") ")[-1].startswith("Z"))


def _start_ticks(pid: int) -> int | None:
    """When process ``pid`` started (clock ticks since boot): tells it from a later process
    that got the same PID, say after a reboot left the state file behind."""
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def recorded_pid(state: dict[str, Any], name: str) -> int | None:
    """The PID recorded as ``<name>_pid`` while that very process runs, else None."""
    return _same_process(state.get(f"{name}_pid"), state.get(f"{name}_started"))


def _same_process(pid: int | None, started: int | None) -> int | None:
    """``pid`` while the process recorded with it (started at ``started``) runs, else None."""
    if pid is None or not pid_alive(pid):
        return None
    if started is not None and _start_ticks(int(pid)) != started:
        return None
    return int(pid)


def read_state() -> dict[str, Any]:
    path = state_file()
    return json.loads(path.read_text()) if path.exists() else {}


# set by a worker of the pool for itself and the flow runs it starts: on a machine with no
# `edgefleet up` of its own, they still know the server that serves the pool (events, notices)
WORKER_API_ENV = "EDGEFLEET_WORKER_API_URL"


def worker_api_url() -> str | None:
    """In a worker of the pool, or a flow run it started: the Prefect API it takes jobs from."""
    return os.environ.get(WORKER_API_ENV) or None


def running_api_url() -> str | None:
    """The API URL while the local server runs (started by `edgefleet up` or a command), or
    the pool's server in a worker's flow run."""
    if url := worker_api_url():
        return url
    state = read_state()
    return str(state["api_url"]) if recorded_pid(state, "server") else None


def served_api_url() -> str | None:
    """The API URL when `edgefleet up` runs (the server alive, the work pool registered),
    or in a worker's flow run, wherever it runs; else None. The workers may all run
    elsewhere (`up --workers 0`)."""
    if url := worker_api_url():
        return url
    state = read_state()
    if recorded_pid(state, "server") and state.get("pool"):
        return str(state["api_url"])
    return None


def alive_workers(state: dict[str, Any]) -> list[dict[str, Any]]:
    """The recorded workers whose very process still runs (see ``recorded_pid``)."""
    return [w for w in state.get("workers", [])
            if _same_process(w.get("pid"), w.get("started"))]


def user_api_url() -> str | None:
    """``PREFECT_API_URL`` as the user set it (environment or Prefect profile), if at all."""
    from prefect.settings import PREFECT_API_URL  # Prefect only when a flow is about to run

    url = PREFECT_API_URL.value()
    return str(url) if url else None


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def flow_api_url(notice: Callable[[str], None] = _stderr) -> str:
    """The Prefect API a flow run in this process reports to; never a temporary server.

    The local server when it runs (`edgefleet up`'s, or the one an earlier command started);
    else the user's own ``PREFECT_API_URL``; else a local server started now in the
    background, alone, and left running for later commands. Only the command that starts
    it says so (``notice``, stderr by default); the next ones reuse it silently.
    """
    api_url = running_api_url()
    if api_url and _healthy(api_url):
        return api_url
    if api_url is None:
        user_url = user_api_url()
        if user_url:
            return user_url
    with _locked():  # another command may be starting it right now: then wait for it
        state = read_state()
        server_pid = recorded_pid(state, "server")
        if server_pid:
            api_url = str(state["api_url"])
            _wait(lambda: _healthy(api_url), "the Prefect server",
                  run_dir() / "prefect-server.log", 90, server_pid)
            return api_url
        return _start_alone(notice)


def reachable_api_url() -> str | None:
    """The Prefect API that answers now (the local server's, else the user's own), or None:
    for a clean-up that is not worth starting a server for."""
    api_url = running_api_url()
    if api_url and _healthy(api_url):
        return api_url
    return user_api_url() if api_url is None else None


def _start_alone(notice: Callable[[str], None]) -> str:
    """Start the local server without the pool and workers (the caller holds the lock)."""
    api_url = configured_api_url()
    notice(f"edgefleet: starting a local Prefect server at {api_url} for flow runs; later "
           "commands reuse it (stop it with 'edgefleet down')")
    server_pid = _start_server(api_url)
    _write({"api_url": api_url, "ui_url": api_url.removesuffix("/api"), "server_pid": server_pid})
    try:
        _wait(lambda: _healthy(api_url), "the Prefect server", run_dir() / "prefect-server.log",
              90, server_pid)
    except BaseException:  # a server that never answered is no use to the next command
        _terminate(server_pid)
        state_file().unlink(missing_ok=True)
        raise
    return api_url


def configured_api_url() -> str:
    """Where this machine reaches the local server: ``EDGEFLEET_PREFECT_HOST`` (127.0.0.1 when
    it listens on every address), port ``EDGEFLEET_PREFECT_PORT``."""
    settings = get_settings()
    host = settings.prefect_host
    shown = "127.0.0.1" if host.is_unspecified else f"[{host}]" if host.version == 6 else str(host)
    return f"http://{shown}:{settings.prefect_port}/api"


LEASE_STORAGE = "prefect.server.concurrency.lease_storage.filesystem"


def prefect_env(api_url: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update({
        "PREFECT_HOME": str(get_settings().home / "prefect"),
        "PREFECT_API_URL": api_url,
        "PREFECT_UI_API_URL": api_url,
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_RUNNER_POLL_FREQUENCY": "1",
        # concurrency slots' leases on disk, not in the server's memory: a server killed
        # while a run held a slot would otherwise come back with the slot taken for good
        # (the count stays in the database, the lease that would free it is gone)
        "PREFECT_SERVER_CONCURRENCY_LEASE_STORAGE": LEASE_STORAGE,
    })
    from edgefleet import prefect_database  # SQLAlchemy's URL parsing: only when starting

    if (database := prefect_database.server_database_url(get_settings())) is not None:
        env["PREFECT_API_DATABASE_CONNECTION_URL"] = database  # PostgreSQL, beside the records
    return env


def _healthy(api_url: str) -> bool:
    try:
        return httpx.get(f"{api_url}/health", timeout=2, trust_env=False).status_code == 200
    except httpx.HTTPError:
        return False


def _spawn(args: list[str], log: Path, env: dict[str, str]) -> int:
    with log.open("ab") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True, stdin=subprocess.DEVNULL)
    return proc.pid


class _StopWhenDead(stop_base):
    """Stop waiting for a process that has died."""

    def __init__(self, pid: int) -> None:
        self.pid = pid

    def __call__(self, retry_state: RetryCallState) -> bool:
        return not pid_alive(self.pid)


def _wait(check: Any, what: str, log: Path, timeout: float, pid: int) -> None:
    """Until ``check()`` is true; fails after ``timeout`` or as soon as ``pid`` has died."""
    ready = Retrying(stop=stop_after_delay(timeout) | _StopWhenDead(pid),
                     wait=wait_fixed(0.5), retry=retry_if_result(lambda ok: not ok),
                     retry_error_callback=lambda _state: False)(check)
    if ready:
        return
    tail = "\n".join(log.read_text(errors="replace").splitlines()[-15:]) if log.exists() else ""
    raise EdgefleetError(f"{what} did not come up within {timeout:.0f}s; see {log}:\n{tail}")


def _start_server(api_url: str) -> int:
    """Spawn ``prefect server start`` for ``api_url`` on ``EDGEFLEET_PREFECT_HOST``; its PID."""
    port = api_url.removesuffix("/api").rsplit(":", 1)[1]
    if _healthy(api_url):
        raise EdgefleetError(
            f"another Prefect server already answers on port {port}; stop it or set "
            "EDGEFLEET_PREFECT_PORT to a free port (or PREFECT_API_URL to use that server)"
        )
    from edgefleet import prefect_database

    prefect_database.ensure_server_database(get_settings())
    host = str(get_settings().prefect_host)
    return _spawn([sys.executable, "-m", "prefect", "server", "start", "--host", host,
                   "--port", port], run_dir() / "prefect-server.log", prefect_env(api_url))


def up(progress: Any = print, workers: int = 1) -> dict[str, Any]:
    """Start (or reuse) the Prefect server, register the work pool and its deployments, and
    start workers until ``workers`` of this home run (none is stopped); idempotent.

    A server that a command started alone (see ``flow_api_url``) is adopted as it is.
    """
    if workers < 0:
        raise EdgefleetError(f"--workers must be 0 or more, not {workers}")
    with _locked():
        return _up(progress, workers)


def _up(progress: Any, workers: int) -> dict[str, Any]:
    from edgefleet import workers as worker

    state = read_state()
    folder = run_dir()
    if (legacy := recorded_pid(state, "serve")) is not None:  # replaced by the pool's workers
        progress(f"stopping the serving process of an earlier release (pid {legacy})")
        _terminate(legacy)
    server_pid = recorded_pid(state, "server")
    if server_pid is None:
        api_url = configured_api_url()
        progress(f"starting Prefect server on {api_url}")
        server_pid = _start_server(api_url)
        state = {"api_url": api_url, "server_pid": server_pid}
        _write(state)
    else:
        api_url = str(state["api_url"])
        progress(f"Prefect server already running on {api_url} (pid {server_pid})")
    env = prefect_env(api_url)
    _wait(lambda: _healthy(api_url), "the Prefect server", folder / "prefect-server.log", 90,
          server_pid)
    register = not state.get("pool") or not _deployments_ready(api_url)
    running = alive_workers(state)
    steps = ["register"] if register else []
    if register or (not running and workers):  # what a dead control plane left, settled now
        steps.append("at-start")
    if register:
        progress(f"registering edgefleet's flows as deployments of work pool {worker.POOL!r}")
    if steps:
        _work_pool(steps, env, folder / "work-pool.log")
    started: list[dict[str, Any]] = []
    for index in range(len(running), workers):
        name = worker.default_name()
        log = folder / f"worker-{index + 1}.log"
        pid = _spawn(worker.start_command(name), log, worker.environment(api_url, env))
        started.append({"pid": pid, "name": name, "log": str(log)})
        progress(f"started worker {name} (pid {pid})")
    state = {"api_url": api_url, "ui_url": api_url.removesuffix("/api"),
             "server_pid": server_pid, "pool": worker.POOL, "workers": running + started}
    _write(state)
    for new in started:
        _wait(lambda name=new["name"]: name in online_workers(api_url), f"worker {new['name']}",
              Path(new["log"]), 90, new["pid"])
    return public_state(read_state())


def _work_pool(steps: list[str], env: dict[str, str], log: Path, timeout: float = 180) -> None:
    """Register the pool's deployments and/or submit the runs at start, in a process of its
    own: it imports every flow, and its Prefect settings must name this server (this
    process may have loaded others)."""
    with log.open("ab") as out:
        try:
            done = subprocess.run([sys.executable, "-m", "edgefleet.deployments.work_pool",
                                   *steps],
                                  stdout=out, stderr=subprocess.STDOUT, env=env,
                                  stdin=subprocess.DEVNULL, timeout=timeout, check=False)
            failed = done.returncode != 0
        except subprocess.TimeoutExpired:
            failed = True
    if failed:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-15:])
        raise EdgefleetError(f"registering the work pool's deployments ({' and '.join(steps)}) "
                             f"failed; see {log}:\n{tail}")


def online_workers(api_url: str) -> list[str]:
    """Names of the pool's workers that Prefect sees ONLINE (heartbeats), wherever they run."""
    from edgefleet.workers import POOL

    try:
        resp = httpx.post(f"{api_url}/work_pools/{POOL}/workers/filter", json={"limit": 200},
                          timeout=5, trust_env=False)
        resp.raise_for_status()
        return [w["name"] for w in resp.json() if w.get("status") == "ONLINE"]
    except (httpx.HTTPError, ValueError, KeyError, TypeError):
        return []


def public_state(state: dict[str, Any]) -> dict[str, Any]:
    """What `up --json` prints: URLs, the server's PID, the pool and this home's workers."""
    workers = alive_workers(state)
    return {"api_url": state.get("api_url"), "ui_url": state.get("ui_url"),
            "server_pid": state.get("server_pid"), "pool": state.get("pool"),
            "worker_pids": [w["pid"] for w in workers],
            "workers": [{"name": w["name"], "pid": w["pid"], "log": w.get("log")}
                        for w in workers]}


def _deployments_ready(api_url: str) -> bool:
    from edgefleet.workers import OPERATION_FLOW, POOL, PULL_POOL

    try:
        resp = httpx.post(f"{api_url}/deployments/filter", json={"limit": 50}, timeout=5,
                          trust_env=False)
        found = {(d["work_pool_name"], d["name"]) for d in resp.json()}
    except (httpx.HTTPError, ValueError, KeyError, TypeError):
        return False
    return all((POOL, name) in found for name in SERVED_FLOWS) \
        and (PULL_POOL, OPERATION_FLOW) in found


def _write(state: dict[str, Any]) -> None:
    """Record ``state``, with when each of its processes started (see ``recorded_pid``)."""
    state = dict(state)
    if state.get("server_pid"):
        state["server_started"] = _start_ticks(int(state["server_pid"]))
    state["workers"] = [{**w, "started": w.get("started") or _start_ticks(int(w["pid"]))}
                        for w in state.get("workers", [])]
    state_file().write_text(json.dumps(state, indent=2))


def down(progress: Any = print) -> None:
    """Stop this home's workers, then the server, by their recorded PIDs (whoever started
    them). Workers on other machines are theirs to stop."""
    with _locked():
        state = read_state()
        for worker in alive_workers(state):  # never a process that merely reuses a PID
            progress(f"stopping worker {worker['name']} (pid {worker['pid']})")
            _terminate(int(worker["pid"]))
        for name in ("serve", "server"):  # "serve": the serving process of earlier releases
            pid = recorded_pid(state, name)
            if pid is not None:
                progress(f"stopping {name} (pid {pid})")
                _terminate(pid)
        state_file().unlink(missing_ok=True)


def _terminate(pid: int, grace: float = 15) -> None:
    try:
        os.killpg(pid, signal.SIGTERM)
    except OSError:
        return
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and pid_alive(pid):
        time.sleep(0.2)
    if pid_alive(pid):
        with contextlib.suppress(OSError):
            os.killpg(pid, signal.SIGKILL)


def status() -> dict[str, Any]:
    state = read_state()
    workers = alive_workers(state)
    return {
        "api_url": state.get("api_url"),
        "server_pid": state.get("server_pid"),
        "server_running": recorded_pid(state, "server") is not None,
        "pool": state.get("pool"),
        "worker_pids": [w["pid"] for w in workers],
        "serving": served_api_url() is not None and bool(workers),
    }
