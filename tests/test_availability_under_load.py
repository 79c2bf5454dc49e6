"""A reachable edge is never OFFLINE, even with both cores kept busy (the served sweeps).

The lab's edges get the shortest heartbeat interval `edge set` accepts (2 s: OFFLINE 14 s
after the last contact) while two spin loops keep the machine's cores busy for a minute;
the served collect-telemetry runs (`edgefleet up`, the session's) must keep contacting them.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

import pytest
from sqlmodel import col, select

import edgefleet
from edgefleet.db import session_scope
from edgefleet.models.records import Edge, utcnow
from edgefleet.models.telemetry import EdgeAvailability

pytestmark = pytest.mark.lab
LOAD_SECONDS = 60  # the "both cores kept busy for a minute"
SPIN = "import time\nend = time.monotonic() + %d\nwhile time.monotonic() < end: pass\n"


def contacts(names: list[str]) -> dict[str, datetime | None]:
    with session_scope() as session:
        rows = session.exec(select(Edge).where(col(Edge.name).in_(names))).all()
        return {e.name: e.last_contact for e in rows}


def test_reachable_edges_stay_online_with_both_cores_busy(lab: Any, prefect_api: str,
                                                         figure: Callable[..., None]) -> None:
    names = [e.name for e in lab.edges]
    before = {name: edgefleet.show_edge(name).heartbeat_interval for name in names}
    for name in names:
        edgefleet.set_edge(name, heartbeat_interval=2)
    start = utcnow()
    spinners = [subprocess.Popen([sys.executable, "-c", SPIN % LOAD_SECONDS])
                for _ in range(2)]
    seen: dict[str, list[datetime]] = {name: [] for name in names}
    try:
        deadline = time.monotonic() + LOAD_SECONDS
        while time.monotonic() < deadline:
            for name, contact in contacts(names).items():
                if contact and contact >= start and contact not in seen[name]:
                    seen[name].append(contact)
            time.sleep(0.5)
    finally:
        for spinner in spinners:
            spinner.kill()
            spinner.wait()
        for name in names:
            edgefleet.set_edge(name, heartbeat_interval=before[name])
    with session_scope() as session:
        offline = session.exec(select(EdgeAvailability).where(
            col(EdgeAvailability.time) >= start,
            col(EdgeAvailability.status) == "OFFLINE")).all()
    gaps = {name: max((b - a).total_seconds() for a, b in zip(times, times[1:], strict=False))
            for name, times in seen.items() if len(times) > 1}
    for name, gap in sorted(gaps.items()):
        figure(f"longest gap between two contacts of {name} under load", gap,
               note=f"{len(seen[name])} contacts in {LOAD_SECONDS} s, heartbeat 2 s")
    assert all(len(times) >= LOAD_SECONDS // 10 for times in seen.values()), seen
    assert offline == [], [(o.edge_id, o.time, o.reason) for o in offline]
