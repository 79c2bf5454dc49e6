"""Talking to a lab edge's engine: does it answer, swarm mode, a sample workload, and
clearing it before shutdown.

Always over TCP with the edge's client certificate, like edgefleet itself, so a lab that
comes up is a lab whose mTLS works.
"""

from __future__ import annotations

import contextlib
import re
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import docker.errors
import requests.exceptions

from edgefleet.engine import engine_client, ping
from edgefleet.errors import EdgefleetError, LabError
from edgefleet.lab.daemons import processes_with
from edgefleet.lab.state import EdgeState, LabState
from edgefleet.models.connections import EngineConnection

PING_TIMEOUT = 3.0
CLEAR_TIMEOUT = 30.0
POOL_RE = re.compile(r"base=10\.(\d{1,3})\.0\.0/16")


def connection(edge: EdgeState) -> EngineConnection:
    """The lab's own way in: mutual TLS, or a pull edge's local socket (the lab runs on the
    edge's machine; edgefleet itself goes through the edge's agent)."""
    if edge.pull:
        return EngineConnection(name=edge.name, docker_host=edge.docker_host)
    return EngineConnection(
        name=edge.name, docker_host=edge.docker_host,
        tls_ca=edge.tls_ca, tls_cert=edge.tls_cert, tls_key=edge.tls_key,
    )


def answers(edge: EdgeState, timeout: float = PING_TIMEOUT) -> bool:
    """True when the engine answers over mTLS: its ``version`` and then its ``info``, the
    call ``lab status`` makes (a just-restarted dockerd can answer the first and not yet
    the second in time)."""
    try:
        ping(connection(edge), timeout=timeout)
    except (EdgefleetError, docker.errors.DockerException, requests.exceptions.RequestException):
        return False
    return swarm_active(edge, timeout) is not None


def swarm_active(edge: EdgeState, timeout: float = PING_TIMEOUT) -> bool | None:
    """Whether the engine is an active swarm node; None when it does not answer."""
    try:
        with engine_client(connection(edge), timeout) as client:
            info = client.info()
    except (EdgefleetError, docker.errors.DockerException, requests.exceptions.RequestException):
        return None
    return str(info.get("Swarm", {}).get("LocalNodeState", "")) == "active"


def ensure_swarm(edge: EdgeState, swarm_pool: str) -> bool:
    """``docker swarm init --advertise-addr 127.0.0.1`` once; True when it was initialised now.

    The swarm ports (cluster and VXLAN data path) are per edge, so several swarm edges can
    share this host.
    """
    if swarm_active(edge) is True:
        return False
    assert edge.swarm_port and edge.swarm_data_port
    try:
        with engine_client(connection(edge), 60.0) as client:
            client.swarm.init(
                advertise_addr="127.0.0.1",
                listen_addr=f"127.0.0.1:{edge.swarm_port}",
                data_path_port=edge.swarm_data_port,
                default_addr_pool=[swarm_pool],
                subnet_size=24,
            )
    except docker.errors.APIError as exc:
        raise LabError(
            f"swarm init on {edge.name} failed: {exc.explanation or exc}; see {edge.log}"
        ) from exc
    return True


def clear_edge(edge: EdgeState) -> int:
    """Remove every service and container on the edge (so no containerd-shim outlives it)."""
    removed = 0
    with engine_client(connection(edge), CLEAR_TIMEOUT) as client:
        info = client.info()
        if str(info.get("Swarm", {}).get("LocalNodeState", "")) == "active":
            for service in client.services.list():
                with contextlib.suppress(docker.errors.NotFound):
                    service.remove()
        for container in client.containers.list(all=True):
            with contextlib.suppress(docker.errors.NotFound):
                container.remove(force=True)
                removed += 1
    return removed


@contextlib.contextmanager
def sample_workload(conns: list[EngineConnection], image: str, label: str, running: int = 1,
                    exited: int = 0) -> Iterator[dict[str, list[str]]]:
    """``running`` containers of ``image`` (the lab's ``edgefleet/ticker``) and ``exited``
    ones that ran and ended, on each engine, so telemetry has stats to read; each labelled
    ``label=<random value>`` and removed at the end. Yields each engine's container ids by
    edge name, running ones first."""
    value = uuid.uuid4().hex[:8]
    ids: dict[str, list[str]] = {}
    try:
        for conn in conns:
            ids[conn.name] = []
            with engine_client(conn, timeout=60) as client:
                for index in range(running + exited):
                    done = index >= running
                    container = client.containers.run(
                        image, detach=True, labels={label: value}, network_mode="none",
                        **({"entrypoint": ["/bin/sh", "-c", "exit 0"]} if done else {}))
                    if done:
                        container.wait(timeout=20)
                    ids[conn.name].append(str(container.id))
        yield ids
    finally:
        for conn in conns:
            with engine_client(conn, timeout=60) as client:
                for container in client.containers.list(
                        all=True, filters={"label": f"{label}={value}"}):
                    container.remove(force=True)


def udp_port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.bind(("0.0.0.0", port))
        except OSError:
            return False
    return True


def free_data_path_port(taken: set[int]) -> int:
    """A UDP port for swarm's VXLAN data path (docker accepts 1024-49151); 4789 is its default."""
    for port in range(4789, 4989):
        if port not in taken and udp_port_free(port):
            taken.add(port)
            return port
    raise LabError("no free UDP port in 4789-4988 for the swarm data path")


def pools_in_use(state: LabState) -> set[int]:
    """Second octets of the 10.X.0.0/16 pools already used on this host.

    By this lab's own edges, by any other dockerd's ``--default-address-pool`` (another lab),
    and by any route, so two labs never hand out overlapping container networks.
    """
    used: set[int] = set()
    for edge in state.edges:
        for pool in (edge.address_pool, edge.swarm_pool):
            if pool and (m := re.match(r"10\.(\d+)\.", pool)):
                used.add(int(m.group(1)))
    for pid in processes_with("--default-address-pool"):
        with contextlib.suppress(OSError):
            text = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            used.update(int(m) for m in POOL_RE.findall(text))
    used.update(_route_octets())
    return used


def _route_octets() -> set[int]:
    octets: set[int] = set()
    try:
        lines = Path("/proc/net/route").read_text().splitlines()[1:]
    except OSError:
        return octets
    for line in lines:
        parts = line.split()
        if len(parts) > 1 and parts[1] != "00000000":
            raw = bytes.fromhex(parts[1])[::-1]  # little-endian hex
            if raw[0] == 10:
                octets.add(raw[1])
    return octets


def allocate_pool(used: set[int]) -> str:
    """A free ``10.X.0.0/16`` (X from 11), marked as used."""
    for octet in range(11, 251):
        if octet not in used:
            used.add(octet)
            return f"10.{octet}.0.0/16"
    raise LabError("no free 10.X.0.0/16 address pool left for a lab edge")

