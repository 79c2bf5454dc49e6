"""`edgefleet telemetry [EDGE]`: the latest figures of each edge and a small trend."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import typer

from edgefleet.cli.common import (
    console,
    err_console,
    escape,
    handle_errors,
    print_json,
    print_table,
)


def _size(value: float | None) -> str:
    from edgefleet.metrics import human_size

    return human_size(value, missing="-")


def _ago(iso: str | None) -> str:
    if not iso:
        return "never"
    seconds = (datetime.now(UTC) - datetime.fromisoformat(iso)).total_seconds()
    return f"{seconds:.0f}s ago" if seconds < 120 else f"{seconds / 60:.0f}m ago"


def show(rows: list[dict[str, Any]], detail: bool) -> None:
    from edgefleet import metrics

    colour = {"ONLINE": "green", "OFFLINE": "red"}
    table_rows = []
    for row in rows:
        latest = row["latest"] or {}
        table_rows.append((
            f"[{colour.get(row['status'], 'yellow')}]{row['status']}[/] {row['edge']}",
            _ago(row["last_contact"]),
            latest.get("engine_version") or "-",
            latest.get("cpus") or "-",
            "-" if latest.get("cpu_percent") is None else f"{latest['cpu_percent']:.1f}",
            f"{_size(latest.get('memory_used'))} / {_size(latest.get('memory_total'))}",
            f"{latest.get('containers_running', '-')} / {latest.get('containers_stopped', '-')}",
            " / ".join(_size(latest.get(k)) for k in ("disk_images", "disk_containers",
                                                      "disk_volumes")),
            row["samples"],
            metrics.sparkline(row["trend"]["cpu_percent"]),
            metrics.sparkline(row["trend"]["memory_used"]),
        ))
    print_table("telemetry", ["edge", "last contact", "engine", "CPUs", "CPU %",
                              "memory (containers / total)", "running / stopped",
                              "disk (images / containers / volumes)", "samples", "CPU trend",
                              "memory trend"], table_rows)
    for row in rows:
        if row["last_error"]:
            err_console.print(f"[yellow]{row['edge']}:[/] {escape(str(row['last_error']))}",
                              highlight=False)
        if detail and row["latest"]:
            print_table(f"containers on {row['edge']} at {row['latest']['time']}",
                        ["name", "deployment", "state", "health", "restarts", "CPU %", "memory",
                         "net rx / tx", "block read / write"],
                        [(c["name"], (c["deployment_id"] or "")[:12], c["state"],
                          c["health"] or "", c["restart_count"],
                          "-" if c["cpu_percent"] is None else f"{c['cpu_percent']:.2f}",
                          f"{_size(c['memory_usage'])} / {_size(c['memory_limit'])}",
                          f"{_size(c['net_rx'])} / {_size(c['net_tx'])}",
                          f"{_size(c['block_read'])} / {_size(c['block_write'])}")
                         for c in row["latest"]["containers"]])


def register(app: typer.Typer) -> None:
    """Add `edgefleet telemetry` at the top level of ``app``."""

    @app.command("telemetry")
    @handle_errors
    def telemetry_(
        edge: str | None = typer.Argument(None, help="only this edge (default: every edge)"),
        since: str = typer.Option("1h", help="window for the sample count and trend: 30m, 1h, 7d"),
        collect: bool = typer.Option(False, "--collect",
                                     help="sample now (in this process) before showing"),
        json_out: bool = typer.Option(False, "--json", help="print JSON"),
    ) -> None:
        """Latest telemetry per edge (status, engine, CPU, memory, containers, disk) and trend."""
        from edgefleet.record_reads import telemetry_views

        if collect:
            from edgefleet.api import telemetry

            telemetry.collect([edge] if edge else None, force=True)
        rows = telemetry_views(edge, since=since)  # SQLite records at head: without the ORM
        if rows is None:
            from edgefleet.api import telemetry

            rows = telemetry.edge_telemetry(edge, since=since)  # or the error that says why
        if json_out:
            print_json(rows)
            return
        if not rows:
            console.print("no edges (see `edgefleet edge add` or `edgefleet lab up`)")
            return
        show(rows, detail=edge is not None)
