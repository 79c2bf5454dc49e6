"""The lab's state file: what ``lab up`` started, so ``status`` and ``down`` act on exactly that.

One JSON file, ``<lab dir>/state.json``, written atomically after every change. Paths are
absolute; PIDs are those of the processes the lab itself started (never found by name).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

from pydantic import BaseModel, ValidationError

from edgefleet.errors import LabError

STATE_FILE = "state.json"


class RegistryState(BaseModel):
    """The lab's image registry process."""

    port: int
    pid: int | None = None
    config: str
    log: str


class EdgeState(BaseModel):
    """One lab edge: a dockerd with its own data root, exec root, socket and TLS port; a
    pull edge's dockerd has the socket only, and an agent beside it."""

    name: str
    index: int
    port: int  # 0 for a pull edge: no TCP listener
    pid: int | None = None
    data_root: str
    exec_root: str
    socket: str
    pidfile: str
    log: str
    config_file: str
    server_certs: str
    client_certs: str
    address_pool: str
    swarm: bool = False
    swarm_port: int | None = None
    swarm_data_port: int | None = None
    swarm_pool: str | None = None
    mode: str = "push"
    agent_pid: int | None = None
    agent_log: str | None = None

    @property
    def pull(self) -> bool:
        return self.mode == "pull"

    @property
    def docker_host(self) -> str:
        return f"unix://{self.socket}" if self.pull else f"tcp://127.0.0.1:{self.port}"

    @property
    def tls_ca(self) -> str:
        return str(Path(self.client_certs) / "ca.pem")

    @property
    def tls_cert(self) -> str:
        return str(Path(self.client_certs) / "cert.pem")

    @property
    def tls_key(self) -> str:
        return str(Path(self.client_certs) / "key.pem")


class LabState(BaseModel):
    """Everything the lab started, keyed by what ``down`` needs to undo it."""

    lab_dir: str
    run_dir: str
    registry: RegistryState | None = None
    edges: list[EdgeState] = []
    samples: str | None = None  # hash of the sample images last pushed

    def edge(self, name: str) -> EdgeState | None:
        return next((e for e in self.edges if e.name == name), None)


def run_dir_for(lab_dir: Path) -> Path:
    """Where exec roots and sockets go: short, because unix socket paths stop at 108 bytes.

    Named by a hash of the lab dir, so two labs (e.g. a test's own) never share it.
    """
    digest = hashlib.sha256(str(lab_dir.resolve()).encode()).hexdigest()[:10]
    base = Path("/run") if os.access("/run", os.W_OK) else Path(tempfile.gettempdir())
    return base / f"edgefleet-lab-{digest}"


def state_path(lab_dir: Path) -> Path:
    return lab_dir / STATE_FILE


def load_state(lab_dir: Path) -> LabState | None:
    """The recorded state, or ``None`` when no lab was started from this directory."""
    path = state_path(lab_dir)
    if not path.is_file():
        return None
    try:
        return LabState.model_validate_json(path.read_text())
    except (OSError, ValidationError) as exc:
        raise LabError(
            f"the lab state file {path} is unreadable ({exc.__class__.__name__}); stop any "
            f"lab processes by hand and delete {lab_dir} to start over"
        ) from exc


def save_state(state: LabState) -> None:
    """Write atomically (temp file + rename) so a crash never leaves half a state file."""
    lab_dir = Path(state.lab_dir)
    lab_dir.mkdir(parents=True, exist_ok=True)
    path = state_path(lab_dir)
    fd, tmp = tempfile.mkstemp(dir=lab_dir, prefix=".state-", suffix=".json")
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(state.model_dump_json(indent=2))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
