"""``edgefleet lab up|status|down``: a registry and real dockerd edges on this machine."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from edgefleet.cli.common import console, handle_errors, print_json, print_table

if TYPE_CHECKING:
    from edgefleet.lab import LabStatus

lab_app = typer.Typer(
    help="A local lab: an image registry and real dockerd edges reached over mutual TLS.",
    no_args_is_help=True,
)


def _progress(line: str) -> None:
    console.print(f"[cyan]lab[/] {line}", highlight=False, soft_wrap=True)


def _show(status: LabStatus) -> None:
    if status.registry is None:
        console.print(f"no lab is running (state dir {status.lab_dir}); start one with "
                      "`edgefleet lab up`")
        return
    reg = "answering" if status.registry_answering else "NOT answering"
    console.print(f"registry {status.registry} (pid {status.registry_pid}): {reg}")
    print_table(
        "lab edges",
        ["name", "pid", "docker host", "mode", "swarm", "answering"],
        [
            (e.name, e.pid, e.docker_host,
             e.mode if e.mode == "push" else f"pull (agent {e.agent_pid or 'NOT running'})",
             "yes" if e.swarm else "no", "yes" if e.answering else "NO")
            for e in status.edges
        ],
    )
    if status.edges:
        folder = str(Path(status.edges[0].tls_cert).parent.parent.parent)
        console.print(
            f"client certificates (ca.pem, cert.pem, key.pem): {folder}/<edge>/client",
            highlight=False, soft_wrap=True,
        )


@lab_app.command("up")
@handle_errors
def up(
    edges: int = typer.Option(2, "--edges", min=1, help="number of dockerd edges (lab-1..N)"),
    swarm_edges: int = typer.Option(
        0, "--swarm-edges", min=0, help="the first M edges run a single-node swarm"
    ),
    pull_edges: int = typer.Option(
        0, "--pull-edges", min=0,
        help="K more edges (pull-1..K) whose dockerd has no TCP listener, each with its "
        "agent (`edgefleet agent`) beside it, started with the Prefect API and no database "
        "URL"),
) -> None:
    """Start (or complete) the lab; what already runs is reused."""
    from edgefleet.lab import lab_up

    started = time.monotonic()
    status = lab_up(edges=edges, swarm_edges=swarm_edges, progress=_progress,
                    pull_edges=pull_edges)
    _show(status)
    console.print(f"lab ready in {time.monotonic() - started:.1f} s; the edges are registered "
                  "(`edgefleet edge list`)")


@lab_app.command("status")
@handle_errors
def status(json_: bool = typer.Option(False, "--json", help="print JSON")) -> None:
    """Whether the registry and each edge answer."""
    from edgefleet.lab import lab_status

    current = lab_status()
    if json_:
        print_json(current.model_dump(mode="json"))
    else:
        _show(current)


@lab_app.command("down")
@handle_errors
def down() -> None:
    """Stop everything the lab started, forget its edges and delete its state."""
    from edgefleet.lab import lab_down

    lab_down(progress=_progress)
