"""What a pull edge's agent sends as a reading, without an agent: the next sample's target
carries the last one's CPU counters and disk figures (kept in the agent, not the records),
disk use is read again only when due, and a reading too big for one event is capped and
says so."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime, timedelta

from edgefleet.agent_readings import MAX_CONTAINERS, ReadingSender, reading_payload, resource_id
from edgefleet.models.connections import EngineConnection
from edgefleet.models.readings import ContainerReading, EdgeReading, Work

CONN = EngineConnection(name="kiosk-3.plant", docker_host="unix:///var/run/docker.sock",
                        mode="pull")
T0 = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)


def reading(containers: list[ContainerReading], **fields: object) -> EdgeReading:
    return EdgeReading(edge_id=0, name=CONN.name, work=Work.SAMPLE, started=T0,
                       finished=T0 + timedelta(seconds=1), reachable=True,
                       containers=containers, **fields)  # type: ignore[arg-type]


def test_the_first_target_reads_everything_and_the_next_carries_the_last_reading() -> None:
    sender = ReadingSender(CONN, timeout=5, disk_seconds=600)
    first = sender.target(T0)
    assert first.read_disk and not first.previous_cpu and not first.previous_disk
    assert first.conn == CONN and first.work is Work.SAMPLE

    sender.previous = reading(
        [ContainerReading(id="a1", name="web", state="running", cpu_total=900, cpu_system=5000),
         ContainerReading(id="b2", name="gone", state="exited")],
        disk_images=10, disk_containers=2, disk_volumes=None, disk_read=True)
    sender.disk_at = T0
    soon = sender.target(T0 + timedelta(seconds=30))
    assert soon.previous_cpu == {"a1": (900, 5000)}  # b2 had no counters
    assert soon.previous_containers == ["a1", "b2"]
    assert soon.previous_disk == {"disk_images": 10, "disk_containers": 2}
    assert not soon.read_disk  # read 30 s ago, due every 600 s
    assert sender.target(T0 + timedelta(seconds=600)).read_disk


def test_a_reading_with_too_many_containers_is_capped_and_says_so() -> None:
    many = [ContainerReading(id=f"c{i}", name=f"c{i}", state="running")
            for i in range(MAX_CONTAINERS + 7)]
    payload = reading_payload(reading(many, error="disk usage not read: busy"))
    sent = EdgeReading.model_validate(payload["reading"])
    assert len(sent.containers) == MAX_CONTAINERS
    assert sent.error == "disk usage not read: busy; 7 containers not reported"
    small = EdgeReading.model_validate(reading_payload(reading(many[:3]))["reading"])
    assert len(small.containers) == 3 and small.error is None


def test_an_edge_name_with_dots_stays_whole_in_its_resource() -> None:
    from edgefleet.events import _event

    event = _event("edgefleet.edge.reading", resource_id(CONN.name), {})
    assert event.resource.id == "edgefleet.edge.kiosk-3.plant"
    assert event.resource.name == "kiosk-3.plant"


def test_the_agent_s_worker_ends_when_the_agent_is_killed() -> None:
    """SIGKILL cannot be passed on: the kernel ends the worker (PR_SET_PDEATHSIG)."""
    import os
    import signal
    import subprocess
    import sys
    import time

    parent = subprocess.Popen(
        [sys.executable, "-c", "import subprocess, time; from edgefleet.agent import "
         "ends_with_parent\nchild = subprocess.Popen(['sleep', '60'], "
         "preexec_fn=ends_with_parent())\nprint(child.pid, flush=True)\ntime.sleep(60)"],
        stdout=subprocess.PIPE, text=True)
    assert parent.stdout is not None
    child = int(parent.stdout.readline())
    os.kill(child, 0)  # running
    parent.send_signal(signal.SIGKILL)
    parent.wait(timeout=10)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            return
        with contextlib.suppress(ChildProcessError):
            os.waitpid(child, os.WNOHANG)
        time.sleep(0.1)
    os.kill(child, signal.SIGKILL)
    raise AssertionError(f"the worker (pid {child}) outlived its agent")
