"""Flow `collect-telemetry`: one sweep of the fleet (served on an interval by `edgefleet up`).

Each run contacts only the edges that are due (each edge's own telemetry and heartbeat
intervals), a batch per task run so a sweep of any fleet size stays a bounded number of
task runs, then records, marks ONLINE/OFFLINE (with events), refreshes deployment status,
updates the `fleet-status` artifact and applies retention.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar, cast

from prefect import flow, get_run_logger
from prefect.futures import as_completed
from prefect.runtime import flow_run as this_run
from prefect.task_runners import ThreadPoolTaskRunner
from prefect.utilities.annotations import quote

from edgefleet.models.forms import form
from edgefleet.models.readings import EdgeReading, Work
from edgefleet.tasks.telemetry import (
    apply_retention,
    emit_availability_events,
    mark_availability,
    plan_sweep,
    publish_fleet_status,
    read_edges,
    record_readings,
    refresh_deployments,
    schedule_slot,
    seconds_until_due,
)

T = TypeVar("T")
# Read and record tasks of every batch at once (the batch count is bounded by a setting).
PARALLEL_TASKS = 16
# Sweeps of one run are at least this far apart (an edge answers, then is due again).
MIN_GAP = 0.5
# Between sweeps, the records are looked at this often for an edge that became due sooner.
RECHECK_SECONDS = 2.0


def untouched(value: T) -> T:
    """Passed to a task as is: Prefect would otherwise walk every reading looking for
    futures to resolve (measured: 1.1 ms of CPU per edge, more than recording it costs)."""
    return cast(T, quote(value))


def _few(names: list[str], shown: int = 20) -> str:
    """A log line stays short whatever the fleet size."""
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more if names else "none"


def _run_name() -> str:
    return f"sweep-{datetime.now(UTC):%H%M%S}"


@flow(name="collect-telemetry", flow_run_name=_run_name,
      task_runner=ThreadPoolTaskRunner[Any](max_workers=PARALLEL_TASKS))  # type: ignore[arg-type]
def collect_telemetry(
    edges: Annotated[list[str] | None, form(
        "Edges", "only these edges, by name; empty: every edge that is due")] = None,
    force: Annotated[bool, form(
        "Force", "sample the edges even if they are not due yet")] = False,
    for_seconds: Annotated[float, form(
        "Sweep for (seconds)", "go on sweeping for that long, each time an edge is due; "
                               "0: one sweep")] = 0,
) -> dict[str, Any]:
    """Sweep the due edges (``edges``: only these; ``force``: sample them even if not due).

    ``for_seconds``: go on sweeping for that long after the run's scheduled start, each time
    the next edge is due. The served deployment sweeps for its whole schedule interval, so an
    edge whose heartbeat interval is shorter than the schedule is still contacted on time;
    a run that starts while the previous one still sweeps waits for its turn (within its
    own window) and takes over, and a run started after its window (a backlog) does nothing.
    """
    if for_seconds <= 0:
        return _sweeps(edges, force, for_seconds)
    window = for_seconds - _late_by()
    skipped = {"sampled": 0, "heartbeats": 0, "sweeps": 0, "skipped": True}
    if window <= MIN_GAP:
        get_run_logger().info("started after its window (a later run sweeps): skipped")
        return skipped
    waited = time.monotonic()
    with schedule_slot(wait=window) as held:  # scheduled runs take turns
        if not held:
            get_run_logger().info("another scheduled sweep held the turn all along: skipped")
            return skipped
        return _sweeps(edges, force, window - (time.monotonic() - waited))


def _late_by() -> float:
    """Seconds since this run's scheduled start (0 outside a scheduled run)."""
    scheduled = this_run.scheduled_start_time
    if scheduled is None:
        return 0.0
    return max(0.0, (datetime.now(UTC) - scheduled).total_seconds())


def _sweeps(edges: list[str] | None, force: bool, for_seconds: float) -> dict[str, Any]:
    started = time.monotonic()
    summary = _sweep(edges, force, retention=True)
    sweeps = 1
    while (remaining := for_seconds - (time.monotonic() - started)) > MIN_GAP:
        # a plain query, not a task run: it is asked every few seconds
        wait = seconds_until_due.fn(edges)
        if wait is None or wait > RECHECK_SECONDS:
            # nothing due soon: look again shortly (an edge may be added meanwhile, or be
            # given shorter intervals)
            time.sleep(min(RECHECK_SECONDS, remaining))
            continue
        time.sleep(max(wait, MIN_GAP))
        latest = _sweep(edges, False, retention=False)
        sweeps += 1
        summary = {**latest, "sampled": summary["sampled"] + latest["sampled"],
                   "heartbeats": summary["heartbeats"] + latest["heartbeats"],
                   "changes": summary["changes"] + latest["changes"],
                   "degraded": {**summary["degraded"], **latest["degraded"]},
                   "retention": summary["retention"]}
    return {**summary, "sweeps": sweeps}


def _sweep(edges: list[str] | None, force: bool, retention: bool) -> dict[str, Any]:
    logger = get_run_logger()
    now = datetime.now(UTC)
    batches = plan_sweep(now, edges=edges, force=force)
    reads = [read_edges.submit(untouched(batch)) for batch in batches]
    readings: list[EdgeReading] = []
    records = []
    for read in as_completed(reads):  # each batch is recorded as soon as it is read
        batch_readings = read.result().readings
        readings.extend(batch_readings)
        records.append(record_readings.submit(untouched(batch_readings), now))
    for record in records:
        record.result()  # a failed write fails the sweep (after its retries)
    changes = mark_availability() if readings or retention else []
    if changes:
        emit_availability_events(changes)
    degraded = refresh_deployments(untouched(readings)) if readings else {}
    if readings or changes:  # a sweep that contacted no edge has nothing new to show
        publish_fleet_status()
    kept = apply_retention(now) if retention else {"rolled_up": 0, "hours_written": 0}
    if kept["rolled_up"]:
        logger.info("retention: %d raw sample(s) rolled into %d hourly average(s)",
                    kept["rolled_up"], kept["hours_written"])
    sampled = sum(1 for r in readings if r.work is Work.SAMPLE)
    unreachable = sorted(r.name for r in readings if not r.reachable)
    changed = [f"{c.edge} {c.status.value}" for c in changes]
    logger.info("sweep: %d sampled, %d heartbeat(s), unreachable: %s, changes: %s", sampled,
                len(readings) - sampled, _few(unreachable), _few(changed))
    return {"time": now.isoformat(), "sampled": sampled, "heartbeats": len(readings) - sampled,
            "unreachable": unreachable, "changes": changed, "degraded": degraded,
            "retention": kept}
