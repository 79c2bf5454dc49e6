"""SIMULATION ONLY: a fake Docker engine for the telemetry scale benchmark.

It is not dockerd. It answers, over mutual TLS like a lab edge, exactly the Docker API
endpoints a telemetry sweep calls (``/_ping``, ``/version``, ``/info``, ``/system/df``,
``/containers/json``, ``/containers/{id}/json``, ``/containers/{id}/stats``) with canned
bodies shaped like dockerd 20.10's (CPU counters grow with time, so CPU % is computed),
and answers at once, except a one-shot stats, which it holds until its next collection tick
as dockerd does (every ``stats_tick`` seconds, 1 s like dockerd; 0 answers at once). It runs
as its own process (asyncio, one port), so its CPU is not the control plane's. Every
simulated edge gets the same containers.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import time
from pathlib import Path
from typing import Any

API = "/v1.41"


def _containers(count: int, running: int) -> list[dict[str, Any]]:
    items = []
    for index in range(count):
        cid = f"{index + 1:02d}" + "f" * 62
        state = "running" if index < running else "exited"
        items.append({
            "Id": cid, "Names": [f"/sim-{index + 1}"], "Image": "registry/sim:1.0.0",
            "State": state, "Status": "Up 2 hours" if state == "running" else "Exited (0)",
            "Created": 1_700_000_000, "SizeRw": 4096,
            "Labels": {"io.edgefleet.deployment": "0" * 32, "io.edgefleet.service": f"s{index}"}
            if index == 0 else {},
        })
    return items


def _inspect(summary: dict[str, Any]) -> dict[str, Any]:
    running = summary["State"] == "running"
    return {
        "Id": summary["Id"], "Created": "2026-01-01T00:00:00.000000000Z",
        "Name": summary["Names"][0], "RestartCount": 0,
        "State": {"Status": summary["State"], "Running": running, "ExitCode": 0,
                  "StartedAt": "2026-01-01T00:00:01Z",
                  **({"Health": {"Status": "healthy", "FailingStreak": 0}} if running else {})},
        "Config": {"Image": summary["Image"], "Labels": summary["Labels"]},
        "NetworkSettings": {"Ports": {"8080/tcp": [{"HostIp": "0.0.0.0", "HostPort": "30080"}]}
                            if running else {}},
    }


STATS = (
    '{{"read":"2026-01-01T00:00:00Z","preread":"0001-01-01T00:00:00Z",'
    '"pids_stats":{{"current":2}},'
    '"blkio_stats":{{"io_service_bytes_recursive":[{{"major":8,"minor":0,"op":"Read",'
    '"value":4096}},{{"major":8,"minor":0,"op":"Write","value":8192}}]}},'
    '"cpu_stats":{{"cpu_usage":{{"total_usage":{total},"usage_in_kernelmode":0,'
    '"usage_in_usermode":0}},"system_cpu_usage":{system},"online_cpus":4,'
    '"throttling_data":{{"periods":0,"throttled_periods":0,"throttled_time":0}}}},'
    '"precpu_stats":{{"cpu_usage":{{"total_usage":0}}}},'
    '"memory_stats":{{"usage":52428800,"limit":4294967296,'
    '"stats":{{"total_inactive_file":1048576}}}},'
    '"name":"/sim","id":"{cid}",'
    '"networks":{{"eth0":{{"rx_bytes":123456,"tx_bytes":65432}}}}}}'
)


class Engine:
    """Canned answers, encoded once."""

    def __init__(self, containers: int, running: int, stats_tick: float = 1.0) -> None:
        self.stats_tick = stats_tick
        self.summaries = _containers(containers, running)
        self.inspects = {c["Id"]: json.dumps(_inspect(c)).encode() for c in self.summaries}
        self.list_body = json.dumps(self.summaries).encode()
        self.info = json.dumps({
            "ServerVersion": "20.10.24-sim", "NCPU": 4, "MemTotal": 4 * 2**30,
            "Containers": containers, "ContainersRunning": running,
            "ContainersStopped": containers - running, "ContainersPaused": 0,
            "SystemTime": "2026-01-01T00:00:00Z", "OperatingSystem": "simulated",
        }).encode()
        self.version = json.dumps({"Version": "20.10.24-sim", "ApiVersion": "1.41",
                                   "MinAPIVersion": "1.12", "Os": "linux"}).encode()
        self.df = json.dumps({
            "LayersSize": 123_456_789, "Images": [], "BuildCache": [],
            "Containers": self.summaries,
            "Volumes": [{"Name": "v1", "UsageData": {"Size": 2_000_000, "RefCount": 1}}],
        }).encode()
        self.started = time.monotonic()

    def answer(self, path: str) -> tuple[int, bytes, str]:
        path = path.split("?", 1)[0]
        if path.startswith(API):
            path = path[len(API):]
        if path == "/_ping":
            return 200, b"OK", "text/plain"
        fixed = {"/info": self.info, "/version": self.version, "/system/df": self.df,
                 "/containers/json": self.list_body}
        if path in fixed:
            return 200, fixed[path], "application/json"
        parts = path.split("/")
        if len(parts) == 4 and parts[1] == "containers":
            cid = parts[2]
            if parts[3] == "json" and cid in self.inspects:
                return 200, self.inspects[cid], "application/json"
            if parts[3] == "stats" and cid in self.inspects:
                elapsed = time.monotonic() - self.started
                body = STATS.format(total=int(elapsed * 5e7) + 1_000_000,
                                    system=int(elapsed * 4e9) + 10**12, cid=cid)
                return 200, body.encode(), "application/json"
        return 404, b'{"message":"page not found"}', "application/json"


async def _handle(engine: Engine, reader: asyncio.StreamReader,
                  writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            request_line = head.split(b"\r\n", 1)[0].decode("latin-1")
            parts = request_line.split(" ")
            if len(parts) < 2:
                break
            if engine.stats_tick and "/stats" in parts[1]:  # dockerd's collection tick
                since = time.monotonic() - engine.started
                await asyncio.sleep(engine.stats_tick - since % engine.stats_tick)
            status, body, kind = engine.answer(parts[1])
            reason = "OK" if status == 200 else "Not Found"
            writer.write(
                f"HTTP/1.1 {status} {reason}\r\nApi-Version: 1.41\r\nContent-Type: {kind}\r\n"
                f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
        pass
    finally:
        writer.close()


def serve(port: int, server_certs: str, containers: int, running: int, ready: Any,
          stats_tick: float = 1.0) -> None:
    """Run the fake engine on 127.0.0.1:``port`` until killed (a process entry point)."""
    folder = Path(server_certs)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(folder / "ca.pem"))
    context.load_cert_chain(str(folder / "cert.pem"), str(folder / "key.pem"))
    context.verify_mode = ssl.CERT_REQUIRED  # mutual TLS, like a lab edge
    engine = Engine(containers, running, stats_tick)

    async def main() -> None:
        server = await asyncio.start_server(
            lambda r, w: _handle(engine, r, w), "127.0.0.1", port, ssl=context, backlog=4096)
        ready.set()
        async with server:
            await server.serve_forever()

    asyncio.run(main())
