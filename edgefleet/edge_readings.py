"""Reading edges for telemetry: one short conversation with each engine, many edges at once.

A heartbeat is a ping. A sample is ``info``, the container list (from ``system df`` when
disk use is due or containers came or went since the previous sample: it lists every
container with the sizes; else ``containers/json``),
then per container ``inspect`` and, when running, a one-shot ``stats``. Calls within an
edge are sequential on one connection, and that connection stays open for the next sweep
of this process (a TLS handshake costs more control-plane CPU than all of an edge's
requests); edges are read concurrently on one event loop. dockerd answers a one-shot stats at
its next 1 s collection tick, so a sample takes about a second per running container of wall
time and almost no CPU: throughput comes from many edges in flight.

An edge that does not answer is a reading (recorded as such), never an exception.
"""

from __future__ import annotations

import asyncio
import resource
import threading
from collections.abc import Coroutine, Sequence
from datetime import datetime
from typing import Any, TypeVar

from tenacity import AsyncRetrying, retry_if_exception, stop_before_delay, wait_exponential_jitter

from edgefleet import labels as L
from edgefleet import metrics
from edgefleet.engine_api import AsyncEngine, EngineFactory, EnginePool, open_engine
from edgefleet.errors import EdgefleetError, EngineRequestFailed
from edgefleet.models.plans import ObservedContainer
from edgefleet.models.readings import ContainerReading, EdgeReading, EdgeTarget, Work
from edgefleet.models.records import utcnow
from edgefleet.observed import to_observed

T = TypeVar("T")
DISK_KEYS = ("disk_images", "disk_containers", "disk_volumes")
ENGINE_KEYS = ("engine_version", "cpus", "memory_total")
DF_BUSY = "disk usage operation is already running"
DF_FIRST_PAUSE, DF_LONGEST_PAUSE = 0.1, 1.0  # seconds between asks while df is busy


def read_many(targets: Sequence[EdgeTarget], timeout: float, in_flight: int
              ) -> list[EdgeReading]:
    """Read every target, in the targets' order, on this process's reader loop.

    Callers in several threads (one ``read-edges`` task run per batch) share the one loop
    and at most ``in_flight`` edges are read at once in all: an event loop per thread would
    make the loops fight for the GIL (measured: 1.5x the CPU with 8 of them).
    """
    if not targets:
        return []
    return _READER.run(_read_all(targets, timeout, max(1, in_flight)))


def allow_open_files(wanted: int) -> int:
    """Raise this process's soft limit on open files towards ``wanted`` (within the hard
    limit): a connection per edge in flight must not fail as "too many open files", which
    would read as edges going OFFLINE. Returns the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        soft = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    return int(soft)


OPEN_FILES_WANTED = 1 << 20  # raised towards this, within the hard limit
SPARE_FILES = 512  # kept for the rest of the process (records, Prefect's API client, logs)


class _ReaderLoop:
    """One event loop in a daemon thread, started on first use, shared by the process, with
    the edge clients it keeps open between sweeps (a client belongs to the loop it runs on).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self.slots: dict[int, asyncio.Semaphore] = {}
        self.pool = EnginePool(0)

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        with self._lock:
            if self._loop is None or not self._loop.is_running():
                self._loop = asyncio.new_event_loop()
                self.slots = {}
                self.pool = EnginePool(0, factory=self.pool.factory)
                ready = threading.Event()
                threading.Thread(target=self._serve, args=(self._loop, ready), daemon=True,
                                 name="edgefleet-edge-reader").start()
                ready.wait()
            loop = self._loop
        return asyncio.run_coroutine_threadsafe(coro, loop).result()

    @staticmethod
    def _serve(loop: asyncio.AbstractEventLoop, ready: threading.Event) -> None:
        asyncio.set_event_loop(loop)
        loop.call_soon(ready.set)
        loop.run_forever()


_READER = _ReaderLoop()


def kept_connections() -> int:
    """Engine connections opened by the edge clients this process keeps (for benchmarks:
    after the first sweep, a steady sweep opens none)."""
    return _READER.pool.connections


def use_engine_factory(factory: EngineFactory) -> None:
    """Read edges through another client class from now on (a benchmark compares two);
    the connections kept so far are closed."""
    pool = _READER.pool
    if pool.factory is not factory:
        _READER.pool = EnginePool(pool.size, pool.keep_alive, factory)
        if len(pool):
            _READER.run(pool.close())


async def _read_all(targets: Sequence[EdgeTarget], timeout: float, in_flight: int
                    ) -> list[EdgeReading]:
    slots = _READER.slots.setdefault(in_flight, asyncio.Semaphore(in_flight))
    pool = _READER.pool
    # connections kept (those in use included) within the open-file limit; room is left for
    # a second connection per edge in flight (an edge read twice at once) and the rest
    pool.size = max(0, allow_open_files(OPEN_FILES_WANTED) - in_flight - SPARE_FILES)

    async def one(target: EdgeTarget) -> EdgeReading:
        async with slots:
            return await read_edge(target, timeout, pool)

    return list(await asyncio.gather(*(one(t) for t in targets)))


async def read_edge(target: EdgeTarget, timeout: float, pool: EnginePool | None = None
                    ) -> EdgeReading:
    """One contact with one edge: a ping (heartbeat) or a full sample, on the edge's kept
    client when a ``pool`` is given, else on a connection closed after."""
    started = utcnow()
    try:
        opened = (open_engine(target.conn, timeout) if pool is None
                  else pool.engine(target.edge_id, target.conn, timeout))
        async with opened as engine:
            if target.work is Work.HEARTBEAT:
                await engine.ping()
                return _reading(target, started, reachable=True)
            return await read_sample(engine, target, started)
    except EdgefleetError as exc:
        # an error status is an answer: the engine is there, only the request failed
        return _reading(target, started, reachable=isinstance(exc, EngineRequestFailed),
                        error=str(exc))
    except Exception as exc:  # one odd edge must not fail the sweep of the others
        return _reading(target, started, reachable=False,
                        error=f"edge {target.conn.name}: not a Docker engine answer "
                              f"({type(exc).__name__}: {str(exc)[:200]})")


def _reading(target: EdgeTarget, started: datetime, **fields: Any) -> EdgeReading:
    return EdgeReading(edge_id=target.edge_id, name=target.conn.name, work=target.work,
                       started=started, finished=utcnow(), **fields)


async def read_sample(engine: AsyncEngine, target: EdgeTarget, started: datetime
                      ) -> EdgeReading:
    """Engine figures and disk use (read now, or the previous sample's) and every container."""
    carried = all(target.previous_engine.get(k) is not None for k in ENGINE_KEYS)
    about = (await _engine_figures(engine)) if target.read_disk or not carried else {
        k: target.previous_engine[k] for k in ENGINE_KEYS}
    disk: dict[str, int | None] = {k: target.previous_disk.get(k) for k in DISK_KEYS}
    disk_error = None
    disk_read = False
    listed = None if target.read_disk else await engine.containers(all=True)
    # containers came or went since the previous sample: disk use moved with them
    moved = listed is not None and {c["Id"][:12] for c in listed} != set(
        target.previous_containers)
    if moved and not target.read_disk and carried:  # an engine restarted moves them too
        about = await _engine_figures(engine)
    if target.read_disk or moved:
        try:
            figures, with_sizes = disk_usage(await system_df(engine))
            disk, disk_read, listed = dict(figures), True, with_sizes or listed
        except EngineRequestFailed as exc:
            disk_error = f"disk usage not read: {exc}"
    if listed is None:
        listed = await engine.containers(all=True)
    cpus = about["cpus"]
    containers: list[ContainerReading] = []
    observed: list[ObservedContainer] = []
    for summary in listed:
        try:
            attrs = await engine.inspect_listed(summary, fresh=target.read_disk)
            running = (attrs.get("State") or {}).get("Status") == "running"
            stats = await engine.stats(summary["Id"]) if running else None
        except EngineRequestFailed as exc:
            if exc.status == 404:
                continue  # removed between the list and now
            raise
        reading, obs = container_reading(attrs, stats, target.conn.host, target.previous_cpu,
                                         cpus)
        containers.append(reading)
        if reading.deployment_id:
            observed.append(obs)
    running_count = sum(1 for c in containers if c.state == "running")
    return _reading(
        target, started, reachable=True, error=disk_error, disk_read=disk_read,
        containers_running=running_count, containers_stopped=len(containers) - running_count,
        containers=containers, observed=observed, **about, **disk,
    )


async def _engine_figures(engine: AsyncEngine) -> dict[str, Any]:
    info = await engine.info()
    return {"engine_version": info.get("ServerVersion"), "cpus": info.get("NCPU"),
            "memory_total": info.get("MemTotal")}


async def system_df(engine: AsyncEngine) -> dict[str, Any]:
    """``system df``, asked again while the engine is busy with another one.

    dockerd before 23.0 refuses a second df while one runs ("a disk usage operation is
    already running"): someone's ``docker system df``, or several edge records on one
    engine. The running one ends within seconds, so the refused one waits (jittered, so
    waiters do not collide again) for up to one call's timeout before the refusal stands.
    """
    async for attempt in AsyncRetrying(
            retry=retry_if_exception(lambda exc: isinstance(exc, EngineRequestFailed)
                                     and DF_BUSY in str(exc)),
            wait=wait_exponential_jitter(multiplier=DF_FIRST_PAUSE, max=DF_LONGEST_PAUSE,
                                         jitter=DF_FIRST_PAUSE),
            stop=stop_before_delay(engine.timeout), reraise=True):
        with attempt:
            return await engine.df()
    raise AssertionError("unreachable: tenacity returns or re-raises")


def disk_usage(df: dict[str, Any]) -> tuple[dict[str, int | None], list[dict[str, Any]] | None]:
    """Bytes used by images, containers and volumes (`docker system df`), and the list of
    all containers df returns with them (one request less than listing them again)."""
    listed = df.get("Containers")
    volumes = [(v.get("UsageData") or {}).get("Size", -1) for v in df.get("Volumes") or []]
    return {
        "disk_images": df.get("LayersSize"),
        "disk_containers": sum(int(c.get("SizeRw") or 0) for c in listed or []),
        "disk_volumes": sum(int(s) for s in volumes if s and s > 0),
    }, listed if isinstance(listed, list) else None


def container_reading(attrs: dict[str, Any], stats: dict[str, Any] | None, host: str,
                      previous_cpu: dict[str, tuple[int, int]], cpus: int | None
                      ) -> tuple[ContainerReading, ObservedContainer]:
    """One container's figures from its inspect (labels, state) and one-shot stats."""
    obs = to_observed(attrs, host)
    figures: dict[str, Any] = {}
    if stats:
        cpu = stats.get("cpu_stats") or {}
        usage = cpu.get("cpu_usage") or {}
        total, system = usage.get("total_usage"), cpu.get("system_cpu_usage")
        online = cpu.get("online_cpus") or len(usage.get("percpu_usage") or []) or cpus
        memory = stats.get("memory_stats") or {}
        rx, tx = metrics.network_bytes(stats)
        read, write = metrics.block_bytes(stats)
        figures = {
            "cpu_total": total, "cpu_system": system,
            "cpu_percent": metrics.cpu_percent(previous_cpu.get(obs.container_id), total,
                                               system, online),
            "memory_usage": metrics.memory_usage(stats), "memory_limit": memory.get("limit"),
            "net_rx": rx, "net_tx": tx, "block_read": read, "block_write": write,
        }
    reading = ContainerReading(
        id=obs.container_id, name=obs.name, deployment_id=obs.labels.get(L.DEPLOYMENT),
        service=obs.service, image=obs.image, state=obs.state, health=obs.health,
        restart_count=obs.restart_count, exit_code=obs.exit_code,
        created=str(attrs.get("Created", "")), **figures,
    )
    return reading, obs
