"""`edgefleet edge ...`: register and inspect the Docker engines of the fleet."""

from __future__ import annotations

import typer

from edgefleet.cli.common import (
    console,
    err_console,
    escape,
    handle_errors,
    print_json,
    print_table,
)

edge_app = typer.Typer(help="Register, list, show, change and remove edges (Docker engines).",
                       no_args_is_help=True)


@edge_app.command("add")
@handle_errors
def add(
    name: str = typer.Argument(..., help="unique edge name, e.g. plant-7"),
    docker_host: str = typer.Option(..., help="tcp://HOST:PORT (or unix:///path/docker.sock)"),
    address: str | None = typer.Option(
        None, help="host name or (VPN) address the edge's users reach, used for ${host} in "
        "URLs (default: the docker host's)"),
    tls_ca: str | None = typer.Option(None, help="CA that signed the engine's certificate"),
    tls_cert: str | None = typer.Option(None, help="client certificate (clientAuth)"),
    tls_key: str | None = typer.Option(None, help="client key"),
    telemetry_interval: int = typer.Option(60, help="seconds between telemetry samples"),
    heartbeat_interval: int = typer.Option(20, help="seconds between heartbeats"),
    no_check: bool = typer.Option(False, "--no-check", help="save without contacting the engine"),
    json_out: bool = typer.Option(False, "--json", help="print the edge as JSON"),
) -> None:
    """Register an edge. Its engine must answer first (mutual TLS when certificates are given)."""
    from edgefleet.api import edges

    edge = edges.add_edge(
        name, docker_host, address=address, tls_ca=tls_ca, tls_cert=tls_cert, tls_key=tls_key,
        telemetry_interval=telemetry_interval, heartbeat_interval=heartbeat_interval,
        check=not no_check,
    )
    if json_out:
        print_json(edges.edge_public(edge))
    else:
        reached = f", its users reach it as {edge.address}" if edge.address else ""
        console.print(f"edge [bold]{edge.name}[/] added ({edge.docker_host}{reached})",
                      highlight=False)
    _warn(edges.key_file_warnings(edge))


@edge_app.command("set")
@handle_errors
def set_(
    name: str,
    telemetry_interval: int | None = typer.Option(None, help="seconds between telemetry samples"),
    heartbeat_interval: int | None = typer.Option(None, help="seconds between heartbeats"),
    address: str | None = typer.Option(
        None, help="host name or (VPN) address the edge's users reach, used for ${host} in "
        "URLs"),
    clear_address: bool = typer.Option(False, "--clear-address",
                                       help="use the docker host's host in URLs again"),
) -> None:
    """Change an edge's telemetry and heartbeat intervals, or the address its users reach."""
    from edgefleet.api import edges

    edge = edges.set_edge(name, telemetry_interval=telemetry_interval,
                          heartbeat_interval=heartbeat_interval, address=address,
                          clear_address=clear_address)
    reached = edge.address or "(the docker host's)"
    console.print(f"edge {edge.name}: telemetry every {edge.telemetry_interval}s, "
                  f"heartbeat every {edge.heartbeat_interval}s, address {reached}",
                  highlight=False)
    _warn(edges.key_file_warnings(edge))


def _warn(warnings: list[str]) -> None:
    for line in warnings:
        err_console.print(f"[bold yellow]warning:[/] {escape(line)}", highlight=False)


@edge_app.command("list")
@handle_errors
def list_(json_out: bool = typer.Option(False, "--json", help="print JSON")) -> None:
    """List edges with their status."""
    from edgefleet.api import edges

    rows = edges.list_edges()
    if json_out:
        print_json([edges.edge_public(e) for e in rows])
        return
    print_table("edges", ["name", "docker host", "address", "status", "last contact", "TLS"],
                [(e.name, e.docker_host, e.address or "", edges.edge_status(e), e.last_contact,
                  "yes" if e.tls_ca else "no")
                 for e in rows])


@edge_app.command("show")
@handle_errors
def show(name: str, json_out: bool = typer.Option(False, "--json", help="print JSON")) -> None:
    """Show one edge."""
    from edgefleet.api import edges

    data = edges.edge_public(edges.show_edge(name))
    if json_out:
        print_json(data)
        return
    print_table(f"edge {name}", ["field", "value"], data.items())


@edge_app.command("remove")
@handle_errors
def remove(name: str) -> None:
    """Forget an edge (refused while deployments use it)."""
    from edgefleet.api import edges

    edges.remove_edge(name)
    console.print(f"edge {name} removed")
