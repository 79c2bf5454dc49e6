"""The asynchronous Engine API client of the telemetry sweep, against the lab's real dockerd
(over mutual TLS and over its unix socket), compared with what the docker SDK reads; its
refusals (TLS, missing container, unsupported address); and its timeout against a silent
server, which needs no engine.
"""

from __future__ import annotations

import asyncio
import http.server
import json
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from edgefleet.edge_readings import read_many
from edgefleet.engine import engine_client
from edgefleet.engine_api import open_engine
from edgefleet.errors import EngineRequestFailed
from edgefleet.lab import LabStatus, certs
from edgefleet.lab.engines import sample_workload
from edgefleet.lab.state import load_state
from edgefleet.models.connections import EngineConnection
from edgefleet.models.readings import EdgeTarget, Work
from edgefleet.settings import get_settings

TEST_LABEL = "edgefleet.test"


@pytest.fixture
def ticker(lab: LabStatus) -> Iterator[tuple[EngineConnection, str]]:
    """A running test container on lab-2 (its id), removed after."""
    conn = lab.edge("lab-2").connection
    with sample_workload([conn], f"{lab.registry}/edgefleet/ticker:1.0.0", TEST_LABEL) as ids:
        yield conn, ids[conn.name][0]


@pytest.mark.lab
def test_reads_what_the_docker_sdk_reads(ticker: tuple[EngineConnection, str]) -> None:
    conn, cid = ticker

    async def read() -> dict[str, Any]:
        async with open_engine(conn, timeout=30) as engine:
            await engine.ping()
            found = {"info": await engine.info(), "list": await engine.containers(all=True),
                     "inspect": await engine.inspect_container(cid),
                     "stats": await engine.stats(cid), "df": await engine.df()}
            found["requests"] = engine.requests
            return found

    found = asyncio.run(read())
    with engine_client(conn, timeout=30) as client:
        info = client.info()
        listed = {c["Id"] for c in client.api.containers(all=True)}
        inspected = client.api.inspect_container(cid)
    assert found["requests"] == 6  # all on one connection, none failed
    assert found["info"]["ServerVersion"] == info["ServerVersion"]
    assert found["info"]["NCPU"] == info["NCPU"] and found["info"]["MemTotal"] > 0
    assert {c["Id"] for c in found["list"]} == listed and cid in listed
    assert found["inspect"]["Id"] == cid
    assert found["inspect"]["Config"]["Labels"] == inspected["Config"]["Labels"]
    assert found["inspect"]["State"]["Status"] == "running"
    assert found["stats"]["id"] == cid and found["stats"]["memory_stats"]["usage"] > 0
    assert found["stats"]["cpu_stats"]["cpu_usage"]["total_usage"] > 0
    assert found["df"]["LayersSize"] > 0 and cid in {c["Id"] for c in found["df"]["Containers"]}


@pytest.mark.lab
def test_the_unix_socket_of_an_engine_reads_the_same(lab: LabStatus) -> None:
    state = load_state(get_settings().lab_path)
    edge = state.edge("lab-1") if state else None
    assert edge is not None
    local = EngineConnection(name="lab-1-local", docker_host=f"unix://{edge.socket}")

    async def version(conn: EngineConnection) -> str:
        async with open_engine(conn, timeout=30) as engine:
            return str((await engine.info())["ID"])

    assert asyncio.run(version(local)) == asyncio.run(
        version(lab.edge("lab-1").connection))


@pytest.mark.lab
def test_a_missing_container_is_an_answer_not_an_unreachable_edge(lab: LabStatus) -> None:
    conn = lab.edge("lab-1").connection

    async def inspect_missing() -> None:
        async with open_engine(conn, timeout=30) as engine:
            await engine.inspect_container("no-such-container-" + uuid.uuid4().hex)

    with pytest.raises(EngineRequestFailed, match="No such container") as caught:
        asyncio.run(inspect_missing())
    assert caught.value.status == 404


@pytest.mark.lab
def test_tls_is_required_and_checked_both_ways(lab: LabStatus, tmp_path: Path) -> None:
    real = lab.edge("lab-1").connection
    plain = real.model_copy(update={"tls_ca": None, "tls_cert": None, "tls_key": None})
    _, stranger = certs.ensure_edge_certs(tmp_path / "other-ca", "stranger")
    foreign = real.model_copy(update={"tls_ca": str(stranger / "ca.pem"),
                                      "tls_cert": str(stranger / "cert.pem"),
                                      "tls_key": str(stranger / "key.pem")})
    for conn, reason in ((plain, "wants TLS"), (foreign, "TLS")):
        target = EdgeTarget(edge_id=1, conn=conn, work=Work.HEARTBEAT)
        reading = read_many([target], timeout=10, in_flight=1)[0]
        assert not reading.reachable, conn
        assert reading.error and "lab-1" in reading.error and reason in reading.error


@pytest.mark.lab
def test_disk_use_is_read_only_when_due(ticker: tuple[EngineConnection, str]) -> None:
    conn, cid = ticker
    with engine_client(conn, timeout=30) as client:
        present = [c["Id"][:12] for c in client.api.containers(all=True)]
    carried = {"disk_images": 1, "disk_containers": 2, "disk_volumes": 3}
    engine = {"engine_version": "carried", "cpus": 99, "memory_total": 1}
    fresh, skipped, moved = read_many([
        EdgeTarget(edge_id=1, conn=conn, work=Work.SAMPLE, read_disk=True,
                   previous_engine=engine),
        EdgeTarget(edge_id=2, conn=conn, work=Work.SAMPLE, read_disk=False,
                   previous_disk=carried, previous_containers=present, previous_engine=engine),
        EdgeTarget(edge_id=3, conn=conn, work=Work.SAMPLE, read_disk=False,
                   previous_disk=carried,  # the ticker is new since this "previous sample"
                   previous_containers=[c for c in present if c != cid[:12]],
                   previous_engine=engine)],
        timeout=30, in_flight=3)
    assert fresh.reachable and fresh.disk_read and (fresh.disk_images or 0) > 1
    assert skipped.reachable and not skipped.disk_read
    assert (skipped.disk_images, skipped.disk_containers, skipped.disk_volumes) == (1, 2, 3)
    assert moved.reachable and moved.disk_read and moved.disk_images == fresh.disk_images
    # `/info` is read with disk use (and when containers came or went), else carried over
    assert (skipped.engine_version, skipped.cpus, skipped.memory_total) == ("carried", 99, 1)
    for reading in (fresh, moved):
        assert reading.engine_version not in (None, "carried") and reading.cpus != 99
    for reading in (fresh, skipped, moved):  # the container list is complete either way
        assert cid[:12] in {c.id for c in reading.containers}


@pytest.mark.lab
def test_a_stopped_container_is_inspected_again_only_when_its_listing_changed(
        lab: LabStatus) -> None:
    """The kept inspect of a stopped container saves a request per sweep; a start that
    ended with another exit code, or a fresh read, asks again."""
    conn = lab.edge("lab-2").connection
    script = "if [ -e /ran ]; then exit 4; fi; touch /ran; exit 3"
    with engine_client(conn, timeout=60) as client:
        container = client.containers.run(
            f"{lab.registry}/edgefleet/ticker:1.0.0", detach=True, network_mode="none",
            labels={TEST_LABEL: uuid.uuid4().hex[:8]}, entrypoint=["/bin/sh", "-c", script])
        container.wait(timeout=20)

        async def listed(engine: Any) -> dict[str, Any]:
            (summary,) = [c for c in await engine.containers(all=True)
                          if c["Id"] == container.id]
            return dict(summary)

        async def check() -> None:
            async with open_engine(conn, 30) as engine:
                first = await engine.inspect_listed(await listed(engine))
                assert first["State"]["ExitCode"] == 3
                asked = engine.requests
                assert await engine.inspect_listed(await listed(engine)) is first
                assert engine.requests == asked + 1  # the list only
                fresh = await engine.inspect_listed(await listed(engine), fresh=True)
                assert engine.requests == asked + 3 and fresh is not first
                container.start()
                container.wait(timeout=20)
                again = await engine.inspect_listed(await listed(engine))
                assert engine.requests == asked + 5
                assert again["State"]["ExitCode"] == 4

        try:
            asyncio.run(check())
        finally:
            container.remove(force=True)


@pytest.mark.lab
def test_disk_use_is_read_while_another_df_runs_on_the_engine(lab: LabStatus) -> None:
    # dockerd 20.10 refuses a df while one runs; edge records sharing an engine (or an
    # operator's `docker system df`) must still get their disk figures
    conn = lab.edge("lab-1").connection
    targets = [EdgeTarget(edge_id=i, conn=conn, work=Work.SAMPLE, read_disk=True)
               for i in range(6)]
    readings = read_many(targets, timeout=30, in_flight=len(targets))
    assert [r.error for r in readings] == [None] * len(targets)
    assert all(r.reachable and r.disk_read for r in readings)
    assert len({r.disk_images for r in readings}) == 1


def test_an_unsupported_address_is_refused_by_name() -> None:
    target = EdgeTarget(edge_id=1, work=Work.HEARTBEAT, conn=EngineConnection(
        name="far", docker_host="ssh://ops@10.0.0.9"))
    reading = read_many([target], timeout=2, in_flight=1)[0]
    assert not reading.reachable
    assert reading.error == "edge far: telemetry reads engines at tcp:// or unix:// " \
                            "addresses, not ssh://"


class NotDocker(http.server.BaseHTTPRequestHandler):
    """Answers every GET with the same JSON object: a web server, not a Docker engine."""

    def do_GET(self) -> None:  # the name http.server calls
        body = json.dumps({"Containers": 5, "ServerVersion": "nope"}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


def test_an_address_that_is_no_docker_engine_is_a_failed_reading() -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), NotDocker)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        host = f"tcp://127.0.0.1:{server.server_address[1]}"
        odd = EdgeTarget(edge_id=1, work=Work.SAMPLE,
                         conn=EngineConnection(name="web", docker_host=host))
        gone = EdgeTarget(edge_id=2, work=Work.SAMPLE, conn=EngineConnection(
            name="gone", docker_host="tcp://127.0.0.1:9"))
        first, second = read_many([odd, gone], timeout=5, in_flight=2)
    finally:
        server.shutdown()
        thread.join(5)
    assert not first.reachable and first.error
    assert first.error.startswith("edge web: not a Docker engine answer")
    assert not second.reachable and "gone" in (second.error or "")  # read all the same


def test_a_silent_engine_times_out_and_does_not_hold_the_sweep() -> None:
    """A server that accepts and never answers: the read ends at the timeout."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        stop = threading.Event()
        held: list[socket.socket] = []

        def accept() -> None:
            server.settimeout(0.2)
            while not stop.is_set():
                try:
                    held.append(server.accept()[0])
                except TimeoutError:
                    continue

        thread = threading.Thread(target=accept, daemon=True)
        thread.start()
        port = server.getsockname()[1]
        try:
            target = EdgeTarget(edge_id=1, work=Work.SAMPLE, conn=EngineConnection(
                name="mute", docker_host=f"tcp://127.0.0.1:{port}"))
            started = time.monotonic()
            reading = read_many([target], timeout=1, in_flight=1)[0]
            took = time.monotonic() - started
        finally:
            stop.set()
            thread.join(5)
            for conn in held:
                conn.close()
    assert not reading.reachable and reading.error
    assert "mute" in reading.error and "timed out" in reading.error
    assert took < 5, took


class KeepAlive(http.server.BaseHTTPRequestHandler):
    """A ping that keeps the connection open (HTTP/1.1), counting the connections made;
    while ``silent`` is set, a request gets no answer."""

    protocol_version = "HTTP/1.1"
    connections: list[socket.socket] = []
    silent = threading.Event()

    def setup(self) -> None:
        super().setup()
        KeepAlive.connections.append(self.request)

    def do_GET(self) -> None:  # the name http.server calls
        if KeepAlive.silent.is_set():
            time.sleep(10)  # past the client's timeout
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"OK")

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def keep_alive_port() -> Iterator[int]:
    """A :class:`KeepAlive` server on a free port of 127.0.0.1 (its port), stopped after."""
    KeepAlive.connections = []
    KeepAlive.silent.clear()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), KeepAlive)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1])
    finally:
        KeepAlive.silent.clear()
        server.shutdown()
        thread.join(5)


def test_sweeps_of_one_process_keep_the_connection_and_replace_a_closed_one(
        keep_alive_port: int) -> None:
    target = EdgeTarget(edge_id=99, work=Work.HEARTBEAT, conn=EngineConnection(
        name="kept", docker_host=f"tcp://127.0.0.1:{keep_alive_port}"))
    for _ in range(3):  # three sweeps: one connection
        (reading,) = read_many([target], timeout=5, in_flight=1)
        assert reading.reachable, reading.error
    assert len(KeepAlive.connections) == 1
    KeepAlive.connections[0].shutdown(socket.SHUT_RDWR)  # the engine restarted, say
    time.sleep(0.2)
    (reading,) = read_many([target], timeout=5, in_flight=1)
    assert reading.reachable, reading.error  # a new connection, not an unreachable edge
    assert len(KeepAlive.connections) == 2


def test_a_kept_connection_that_goes_silent_times_out_and_is_not_asked_again(
        keep_alive_port: int) -> None:
    """The timeout of a request on a kept connection: the read ends at the deadline (the
    connection is aborted), the edge is unreachable as timed out, and no second connection
    is tried for that request (a retry afresh is for a connection the engine closed)."""
    target = EdgeTarget(edge_id=98, work=Work.HEARTBEAT, conn=EngineConnection(
        name="hush", docker_host=f"tcp://127.0.0.1:{keep_alive_port}"))
    (reading,) = read_many([target], timeout=5, in_flight=1)
    assert reading.reachable, reading.error
    KeepAlive.silent.set()
    started = time.monotonic()
    (reading,) = read_many([target], timeout=1, in_flight=1)
    took = time.monotonic() - started
    assert not reading.reachable and reading.error
    assert "hush" in reading.error and "timed out" in reading.error, reading.error
    assert 0.9 <= took < 4, took
    assert len(KeepAlive.connections) == 1
