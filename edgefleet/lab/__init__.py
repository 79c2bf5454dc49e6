"""The lab: a registry and N real dockerd edges on this machine, reached over mutual TLS.

``lab_up`` installs what is missing (Debian packages), makes certificates, starts the
registry and the edges, turns the first M edges into single-node swarms, builds and pushes
the sample images and registers the edges in edgefleet's records. It is idempotent: what
already runs and answers is reused. ``lab_down`` undoes exactly that, by the recorded PIDs.

Modules, one concept each: ``packages`` (apt), ``certs`` (CA and certificates), ``daemons``
(processes), ``engines`` (talking to an edge), ``images`` (sample images), ``records``
(edgefleet's edge records), ``state`` (the JSON state file).
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import os
import shutil
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from pydantic import BaseModel

from edgefleet.errors import EdgefleetError, LabError
from edgefleet.lab import certs, daemons, engines, images, packages, records
from edgefleet.lab.state import EdgeState, LabState, load_state, run_dir_for, save_state
from edgefleet.models.connections import EngineConnection
from edgefleet.settings import get_settings

__all__ = ["LabEdge", "LabStatus", "lab_down", "lab_shrink", "lab_status", "lab_up"]

MAX_EDGES = 50
MAX_PULL_EDGES = 20
PULL_INDEX = 1000  # pull-K is edge PULL_INDEX + K: after every lab-N
Progress = Callable[[str], None]


class LabEdge(BaseModel):
    """One lab edge as ``lab status`` reports it."""

    name: str
    pid: int | None
    docker_host: str
    swarm: bool
    answering: bool
    tls_ca: str
    tls_cert: str
    tls_key: str
    mode: str = "push"  # pull: no TCP listener; its agent runs edgefleet's steps
    agent_pid: int | None = None  # a pull edge's agent, while it runs

    @property
    def connection(self) -> EngineConnection:
        """How this machine reaches the engine: mutual TLS with the edge's client
        certificate, or a pull edge's local socket (edgefleet goes through its agent)."""
        if self.mode == "pull":
            return EngineConnection(name=self.name, docker_host=self.docker_host)
        return EngineConnection(
            name=self.name, docker_host=self.docker_host,
            tls_ca=self.tls_ca, tls_cert=self.tls_cert, tls_key=self.tls_key,
        )


class LabStatus(BaseModel):
    """The lab as it is now: registry address (``host:port``) and each edge."""

    lab_dir: str
    registry: str | None = None
    registry_pid: int | None = None
    registry_answering: bool = False
    edges: list[LabEdge] = []

    @property
    def running(self) -> bool:
        return self.registry_answering and bool(self.edges) and all(
            e.answering for e in self.edges
        )

    def edge(self, name: str) -> LabEdge:
        for edge in self.edges:
            if edge.name == name:
                return edge
        raise LabError(f"the lab has no edge {name!r} (edges: "
                       f"{', '.join(e.name for e in self.edges) or 'none'})")


def _quiet(_: str) -> None:
    pass


@contextlib.contextmanager
def _locked(lab_dir: Path) -> Iterator[None]:
    """One ``up``/``down`` at a time per lab dir (the lock lives beside it, it survives down)."""
    lab_dir.parent.mkdir(parents=True, exist_ok=True)
    with open(lab_dir.parent / f".{lab_dir.name}.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def lab_up(edges: int = 2, swarm_edges: int = 0, progress: Progress | None = None,
           pull_edges: int = 0) -> LabStatus:
    """Bring the lab up (or complete it) and return its status. ``pull_edges``: that many
    more edges (pull-1..K) whose dockerd listens on its socket only, each with its agent."""
    say = progress or _quiet
    if not 1 <= edges <= MAX_EDGES:
        raise LabError(f"--edges {edges}: the lab runs 1 to {MAX_EDGES} edges")
    if not 0 <= swarm_edges <= edges:
        raise LabError(f"--swarm-edges {swarm_edges}: must be between 0 and --edges ({edges})")
    if not 0 <= pull_edges <= MAX_PULL_EDGES:
        raise LabError(f"--pull-edges {pull_edges}: the lab runs 0 to {MAX_PULL_EDGES}")
    if os.geteuid() != 0:
        raise LabError("the lab starts dockerd, which needs root: run `edgefleet lab up` as root")
    packages.ensure_packages(say)
    lab_dir = get_settings().lab_path.expanduser().resolve()
    with _locked(lab_dir):
        state = load_state(lab_dir) or LabState(
            lab_dir=str(lab_dir), run_dir=str(run_dir_for(lab_dir))
        )
        save_state(state)
        taken = _ports_of(state)
        registry = _ensure_registry(state, taken, say)
        wanted = [(i, f"lab-{i}", "push") for i in range(1, edges + 1)]
        wanted += [(PULL_INDEX + i, f"pull-{i}", "pull") for i in range(1, pull_edges + 1)]
        _ensure_edges(state, wanted, taken, say)
        for edge in [e for e in state.edges if not e.pull][:swarm_edges]:
            _ensure_swarm(state, edge, taken, say)
        state.samples = images.ensure_sample_images(
            engines.connection(state.edges[0]), registry, say, built=state.samples
        )
        save_state(state)
        for edge in state.edges:
            outcome = records.register_edge(edge)
            say(f"{edge.name}: {outcome} in edgefleet's edges ({edge.docker_host})")
        for edge in state.edges:
            if edge.pull:
                _ensure_agent(state, edge, say)
    return lab_status()


def _ensure_agent(state: LabState, edge: EdgeState, say: Progress) -> None:
    """The pull edge's agent, as an operator runs it on the edge: the Prefect API only, a
    home of its own, no database URL (``edgefleet.agent.environment`` withholds it)."""
    from edgefleet import agent, server
    from edgefleet.edge_calls import agent_name

    if daemons.pid_running(edge.agent_pid, agent_name(edge.name)):
        say(f"{edge.name}: agent running (pid {edge.agent_pid})")
        return
    home = Path(state.lab_dir) / "agents" / edge.name
    home.mkdir(parents=True, exist_ok=True)
    env = agent.environment(server.flow_api_url(), edge.name, edge.docker_host)
    env.update({"EDGEFLEET_HOME": str(home), "PREFECT_HOME": str(home / "prefect")})
    edge.agent_log = str(Path(state.lab_dir) / "logs" / f"{edge.name}-agent.log")
    edge.agent_pid = daemons.spawn(agent.command(edge.name), Path(edge.agent_log), env=env)
    save_state(state)
    say(f"{edge.name}: agent started (pid {edge.agent_pid}, log {edge.agent_log})")


def _stop_agent(edge: EdgeState) -> None:
    from edgefleet.edge_calls import agent_name

    if edge.agent_pid:
        daemons.stop_tree(edge.agent_pid, agent_name(edge.name))


def _ports_of(state: LabState) -> set[int]:
    ports = {state.registry.port} if state.registry else set()
    for edge in state.edges:
        ports.update(p for p in (edge.port, edge.swarm_port) if p)
    return ports


def _ensure_registry(state: LabState, taken: set[int], say: Progress) -> str:
    reg = state.registry
    if reg and daemons.pid_running(reg.pid, reg.config) and daemons.registry_answers(reg.port):
        say(f"registry: running on 127.0.0.1:{reg.port} (pid {reg.pid})")
        return f"127.0.0.1:{reg.port}"
    if reg:
        daemons.stop_process(reg.pid, reg.config)
    port = reg.port if reg and daemons.port_free(reg.port) else daemons.free_port(taken)
    state.registry = daemons.start_registry(Path(state.lab_dir), port)
    save_state(state)
    say(f"registry: started on 127.0.0.1:{port} (pid {state.registry.pid})")
    return f"127.0.0.1:{port}"


def _new_edge(state: LabState, index: int, name: str, mode: str, taken: set[int]
              ) -> EdgeState:
    lab_dir, run_dir = Path(state.lab_dir), Path(state.run_dir)
    folder, run = lab_dir / "edges" / name, run_dir / name
    return EdgeState(
        name=name,
        index=index,
        mode=mode,
        port=0 if mode == "pull" else daemons.free_port(taken),
        data_root=str(folder / "data"),
        exec_root=str(run),
        socket=str(run / "docker.sock"),
        pidfile=str(run / "dockerd.pid"),
        log=str(lab_dir / "logs" / f"{name}.log"),
        config_file=str(folder / "daemon.json"),
        server_certs=str(lab_dir / "certs" / name / "server"),
        client_certs=str(lab_dir / "certs" / name / "client"),
        address_pool=engines.allocate_pool(engines.pools_in_use(state)),
    )


def _ensure_edges(state: LabState, wanted: list[tuple[int, str, str]], taken: set[int],
                  say: Progress) -> None:
    """Reuse running edges; start the missing ones (index, name, mode) together, then wait
    for each."""
    certs_dir = Path(state.lab_dir) / "certs"
    starting: list[EdgeState] = []
    for index, name, mode in wanted:
        edge = state.edge(name)
        if edge is None:
            edge = _new_edge(state, index, name, mode, taken)
            state.edges.append(edge)
            state.edges.sort(key=lambda e: e.index)
            save_state(state)
        certs.ensure_edge_certs(certs_dir, edge.name)
        if daemons.pid_running(edge.pid, edge.data_root):
            if _answers_soon(edge):
                say(f"{edge.name}: running at {edge.docker_host} (pid {edge.pid})")
                continue
            say(f"{edge.name}: pid {edge.pid} does not answer; restarting it")
            daemons.stop_process(edge.pid, edge.data_root)
        for pid in daemons.stale_containerd(edge.exec_root):
            say(f"{edge.name}: stopping containerd {pid} left by its dead dockerd")
            daemons.stop_process(pid, edge.exec_root)
        if not edge.pull and not daemons.port_free(edge.port):
            taken.discard(edge.port)
            edge.port = daemons.free_port(taken)
        edge.pid = daemons.spawn(daemons.dockerd_command(_prepared(edge)), Path(edge.log))
        save_state(state)
        starting.append(edge)
    for edge in starting:
        try:
            _wait_for_dockerd(edge)
        except LabError as exc:
            if "exited during start-up" not in str(exc):
                raise
            # seen once in CI, restarting an engine that was killed, with nothing in its log:
            # one more start before the failure is reported (with the log's end)
            say(f"{edge.name}: dockerd exited during start-up; starting it once more")
            time.sleep(2)
            for pid in daemons.stale_containerd(edge.exec_root):
                daemons.stop_process(pid, edge.exec_root)
            edge.pid = daemons.spawn(daemons.dockerd_command(_prepared(edge)), Path(edge.log))
            save_state(state)
            _wait_for_dockerd(edge)
        say(f"{edge.name}: started at {edge.docker_host} (pid {edge.pid})")


def _wait_for_dockerd(edge: EdgeState) -> None:
    assert edge.pid is not None
    daemons.wait_until(
        functools.partial(engines.answers, edge), pid=edge.pid, marker=edge.data_root,
        what=f"dockerd of {edge.name} ({edge.docker_host})", log=edge.log,
    )


def _answers_soon(edge: EdgeState, tries: int = 3) -> bool:
    return any(engines.answers(edge) for _ in range(tries))


def _prepared(edge: EdgeState) -> EdgeState:
    """Create the edge's folders and its own (empty) daemon.json before dockerd starts.

    The config file keeps a host's /etc/docker/daemon.json from applying to lab edges.
    """
    for folder in (edge.data_root, edge.exec_root):
        Path(folder).mkdir(parents=True, exist_ok=True)
    config = Path(edge.config_file)
    if not config.is_file():
        config.write_text("{}\n")
    Path(edge.pidfile).unlink(missing_ok=True)
    return edge


def _ensure_swarm(state: LabState, edge: EdgeState, taken: set[int], say: Progress) -> None:
    if not edge.swarm_port:
        edge.swarm_port = daemons.free_port(taken)
    if not edge.swarm_data_port:
        edge.swarm_data_port = engines.free_data_path_port(
            {e.swarm_data_port for e in state.edges if e.swarm_data_port}
        )
    if not edge.swarm_pool:
        edge.swarm_pool = engines.allocate_pool(engines.pools_in_use(state))
    save_state(state)
    if engines.ensure_swarm(edge, edge.swarm_pool):
        say(f"{edge.name}: swarm initialised (advertise 127.0.0.1, port {edge.swarm_port})")
    else:
        say(f"{edge.name}: swarm already active")
    edge.swarm = True
    save_state(state)


def lab_status() -> LabStatus:
    """What runs and answers now (an empty status when no lab was started)."""
    lab_dir = get_settings().lab_path.expanduser().resolve()
    state = load_state(lab_dir)
    status = LabStatus(lab_dir=str(lab_dir))
    if state is None:
        return status
    if state.registry:
        reg = state.registry
        status.registry = f"127.0.0.1:{reg.port}"
        status.registry_pid = reg.pid
        status.registry_answering = daemons.pid_running(
            reg.pid, reg.config
        ) and daemons.registry_answers(reg.port)
    for edge in state.edges:
        alive = daemons.pid_running(edge.pid, edge.data_root)
        swarm = engines.swarm_active(edge) if alive else None
        status.edges.append(
            LabEdge(
                name=edge.name, pid=edge.pid, docker_host=edge.docker_host,
                swarm=edge.swarm if swarm is None else swarm,
                answering=swarm is not None,
                tls_ca=edge.tls_ca, tls_cert=edge.tls_cert, tls_key=edge.tls_key,
                mode=edge.mode, agent_pid=_agent_pid(edge),
            )
        )
    return status


def _agent_pid(edge: EdgeState) -> int | None:
    from edgefleet.edge_calls import agent_name

    running = edge.pull and daemons.pid_running(edge.agent_pid, agent_name(edge.name))
    return edge.agent_pid if running else None


def _stop_edge(edge: EdgeState) -> list[str]:
    """Stop a pull edge's agent, remove the edge's containers (while it answers), stop its
    dockerd, then leftovers."""
    lines = []
    if edge.pull:
        _stop_agent(edge)
        lines.append(f"{edge.name}: agent stopped")
    if daemons.pid_running(edge.pid, edge.data_root):
        try:
            removed = engines.clear_edge(edge)
            lines.append(f"{edge.name}: removed {removed} container(s)")
        except EdgefleetError as exc:
            lines.append(f"{edge.name}: could not list its containers ({exc}); stopping it")
        except Exception as exc:  # any SDK failure: still stop the daemon
            lines.append(f"{edge.name}: clearing containers failed ({exc}); stopping it")
    daemons.stop_process(edge.pid, edge.data_root)
    # dockerd's own containerd and any shim it left (with the containers below it) carry the
    # exec root on their command line: they are the lab's too.
    for pid in daemons.processes_with(edge.exec_root):
        daemons.stop_tree(pid, edge.exec_root)
    lines.append(f"{edge.name}: stopped")
    return lines


def lab_down(progress: Progress | None = None) -> None:
    """Stop what the lab started (containers first), forget its edges, delete its state."""
    say = progress or _quiet
    lab_dir = get_settings().lab_path.expanduser().resolve()
    with _locked(lab_dir):
        state = load_state(lab_dir)
        run_dir = Path(state.run_dir) if state else run_dir_for(lab_dir)
        if state is None:
            busy = daemons.processes_with(str(lab_dir)) + daemons.processes_with(str(run_dir))
            if busy:
                raise LabError(
                    f"no lab state in {lab_dir}, yet processes {busy} use it: stop them by "
                    "hand, then run `edgefleet lab down` again"
                )
            say("no lab is recorded here; nothing to stop")
        else:
            _stop_lab(state, say)
        for path in (run_dir, lab_dir):
            daemons.unmount_under(path)
            shutil.rmtree(path, ignore_errors=True)
            if path.exists():
                raise LabError(f"could not delete {path}; check `grep {path} /proc/mounts`")
    say(f"lab state removed ({lab_dir})")


def _stop_lab(state: LabState, say: Progress) -> None:
    # In parallel: a swarm edge's dockerd alone takes ~6 s to stop (it waits 5 s for the
    # ingress network to go away).
    with ThreadPoolExecutor(max_workers=min(8, len(state.edges) or 1)) as pool:
        for lines in pool.map(_stop_edge, state.edges):
            for line in lines:
                say(line)
    if state.registry:
        daemons.stop_process(state.registry.pid, state.registry.config)
        say("registry: stopped")
    for edge in state.edges:
        try:
            outcome = records.unregister_edge(edge)
        except EdgefleetError as exc:
            outcome = f"kept: {exc}"
        say(f"{edge.name}: {outcome} from edgefleet's edges")


def lab_shrink(edges: int, progress: Progress | None = None) -> LabStatus:
    """Stop and forget the edges past the first ``edges`` (``lab_up`` with fewer edges does
    not): their containers, dockerd and folders go, their records too (kept, and said so,
    while a deployment is still recorded on one). The registry and the other edges stay, so
    a test can grow the lab for a while and give it back as it found it."""
    say = progress or _quiet
    if not 1 <= edges <= MAX_EDGES:
        raise LabError(f"--edges {edges}: the lab runs 1 to {MAX_EDGES} edges")
    lab_dir = get_settings().lab_path.expanduser().resolve()
    with _locked(lab_dir):
        state = load_state(lab_dir)
        if state is None:
            say("no lab is recorded here; nothing to stop")
            return lab_status()
        extra = [e for e in state.edges if not e.pull and e.index > edges]
        with ThreadPoolExecutor(max_workers=min(8, len(extra) or 1)) as pool:
            for lines in pool.map(_stop_edge, extra):
                for line in lines:
                    say(line)
        for edge in extra:
            try:
                outcome = records.unregister_edge(edge)
            except EdgefleetError as exc:
                outcome = f"kept: {exc}"
            say(f"{edge.name}: {outcome} from edgefleet's edges")
            for folder in (Path(edge.data_root).parent, Path(edge.exec_root)):
                daemons.unmount_under(folder)
                shutil.rmtree(folder, ignore_errors=True)
        state.edges = [e for e in state.edges if e not in extra]
        save_state(state)
    return lab_status()
