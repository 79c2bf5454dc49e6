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

LABEL = typer.Option(
    None, "--label", metavar="KEY=VALUE",
    help="a label (repeatable), e.g. --label site=plant-7 --label tier=canary: KEY is NAME or "
    "PREFIX/NAME (NAME 1-63 letters, digits, '-', '_', '.'; PREFIX a DNS name such as "
    "example.com), VALUE empty or up to 63 of the same; pick edges by them with "
    "`edge list --selector`")
UNLABEL = typer.Option(
    None, "--unlabel", metavar="KEY",
    help="remove a label (repeatable), e.g. --unlabel tier; a key the edge does not have is "
    "ignored")
SELECTOR = typer.Option(
    None, "--selector", metavar="SELECTOR",
    help="only the edges whose labels match: a comma list of terms that must all hold, "
    "key=value, key!=value (or no such label), key (has the label), !key (lacks it); e.g. "
    "--selector 'site=plant-7,tier!=canary,!retired'")


@edge_app.command("add")
@handle_errors
def add(
    name: str = typer.Argument(..., help="unique edge name, e.g. plant-7"),
    docker_host: str | None = typer.Option(
        None, help="tcp://HOST:PORT (or unix:///path/docker.sock); with --pull: the engine's "
        "socket as its agent reaches it (default unix:///var/run/docker.sock)"),
    pull: bool = typer.Option(
        False, "--pull", help="a pull edge: it takes no inbound connection; its agent "
        "(`edgefleet agent --edge NAME`, run on the edge) polls the Prefect API for its "
        "steps. Prints the agent's command"),
    address: str | None = typer.Option(
        None, help="host name or (VPN) address the edge's users reach, used for ${host} in "
        "URLs (default: the docker host's)"),
    tls_ca: str | None = typer.Option(None, help="CA that signed the engine's certificate"),
    tls_cert: str | None = typer.Option(None, help="client certificate (clientAuth)"),
    tls_key: str | None = typer.Option(None, help="client key"),
    telemetry_interval: int = typer.Option(60, help="seconds between telemetry samples"),
    heartbeat_interval: int = typer.Option(20, help="seconds between heartbeats"),
    label: list[str] | None = LABEL,
    no_check: bool = typer.Option(False, "--no-check", help="save without contacting the engine"),
    json_out: bool = typer.Option(False, "--json", help="print the edge as JSON"),
) -> None:
    """Register an edge. A push edge's engine must answer first (mutual TLS when certificates
    are given); a pull edge is ONLINE once its agent runs.

    e.g. edgefleet edge add plant-7 --docker-host tcp://10.0.0.7:2376 --tls-ca ca.pem
    --tls-cert cert.pem --tls-key key.pem --label site=plant-7 --label tier=canary

    e.g. edgefleet edge add kiosk-3 --pull --address 10.8.0.3   (then, on kiosk-3:
    PREFECT_API_URL=http://cp.example:4200/api edgefleet agent --edge kiosk-3)
    """
    from edgefleet.api import edges
    from edgefleet.errors import InvalidInput
    from edgefleet.models.connections import DEFAULT_LOCAL_ENGINE

    if docker_host is None and not pull:
        raise InvalidInput("--docker-host is missing: give the engine's tcp://HOST:PORT "
                           "(push edge), or add --pull for an edge whose agent polls us")
    edge = edges.add_edge(
        name, docker_host or DEFAULT_LOCAL_ENGINE, address=address, tls_ca=tls_ca,
        tls_cert=tls_cert, tls_key=tls_key, telemetry_interval=telemetry_interval,
        heartbeat_interval=heartbeat_interval, labels=label, check=not no_check,
        mode="pull" if pull else "push",
    )
    if json_out:
        print_json(edges.edge_public(edge))
    elif edge.mode == "pull":
        from edgefleet import server
        from edgefleet.models.connections import agent_command_line

        api_url = server.running_api_url() or server.user_api_url() or "http://CP:4200/api"
        console.print(f"pull edge [bold]{escape(edge.name)}[/] added; run its agent on it "
                      f"(it needs outbound access to the Prefect API only):\n  "
                      f"{escape(agent_command_line(edge.name, edge.docker_host, api_url))}",
                      highlight=False)
    else:
        reached = f", its users reach it as {edge.address}" if edge.address else ""
        labelled = f", labels {_labels(edge.labels)}" if edge.labels else ""
        console.print(f"edge [bold]{escape(edge.name)}[/] added ({escape(edge.docker_host)}"
                      f"{escape(reached)}{escape(labelled)})", highlight=False)
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
    label: list[str] | None = typer.Option(
        None, "--label", metavar="KEY=VALUE",
        help="add a label or replace its value (repeatable), e.g. --label tier=canary; "
        "KEY is NAME or PREFIX/NAME (NAME 1-63 letters, digits, '-', '_', '.'), VALUE empty "
        "or up to 63 of the same"),
    unlabel: list[str] | None = UNLABEL,
) -> None:
    """Change an edge's telemetry and heartbeat intervals, the address its users reach, or
    its labels.

    e.g. edgefleet edge set plant-7 --label tier=canary --unlabel retired
    """
    from edgefleet.api import edges

    absent: list[str] = []
    if unlabel:  # told, not refused: removing what is not there changes nothing
        had = edges.show_edge(name).labels
        absent = [key for key in dict.fromkeys(unlabel) if "=" not in key and key not in had]
    edge = edges.set_edge(name, telemetry_interval=telemetry_interval,
                          heartbeat_interval=heartbeat_interval, address=address,
                          clear_address=clear_address, labels=label, unlabel=unlabel)
    reached = edge.address or "(the docker host's)"
    console.print(escape(f"edge {edge.name}: telemetry every {edge.telemetry_interval}s, "
                         f"heartbeat every {edge.heartbeat_interval}s, address {reached}, "
                         f"labels {_labels(edge.labels) or '(none)'}"), highlight=False)
    for key in absent:
        err_console.print(f"note: edge {escape(edge.name)} had no label {escape(key)}; "
                          "nothing to remove", highlight=False)
    _warn(edges.key_file_warnings(edge))


def _labels(labels: dict[str, str]) -> str:
    from edgefleet.selectors import labels_text

    return labels_text(labels)


def _warn(warnings: list[str]) -> None:
    for line in warnings:
        err_console.print(f"[bold yellow]warning:[/] {escape(line)}", highlight=False)


@edge_app.command("list")
@handle_errors
def list_(
    selector: str | None = SELECTOR,
    json_out: bool = typer.Option(False, "--json", help="print JSON"),
) -> None:
    """List edges with their status and labels; --selector picks them by label.

    e.g. edgefleet edge list --selector 'site=plant-7,tier!=canary,!retired' --json
    """
    from edgefleet.record_reads import edge_views

    rows = edge_views(selector)  # SQLite records at head: read without building the ORM
    if rows is None:
        from edgefleet.api import edges

        rows = [edges.edge_public(e) for e in edges.list_edges(selector=selector)]
    if json_out:
        print_json(rows)
        return
    title = "edges" if selector is None else f"edges matching {selector.strip()}"
    print_table(title, ["name", "mode", "docker host", "address", "status", "last contact",
                        "TLS", "labels"],
                [(e["name"], e["mode"], e["docker_host"], e["address"] or "", e["status"],
                  e["last_contact"], "yes" if e["tls_ca"] else "no", _labels(e["labels"]))
                 for e in rows])


@edge_app.command("show")
@handle_errors
def show(name: str, json_out: bool = typer.Option(False, "--json", help="print JSON")) -> None:
    """Show one edge (its labels too)."""
    from edgefleet.record_reads import edge_views

    found = edge_views(name=name)  # without the ORM where it can (SQLite records at head)
    if found is None:
        from edgefleet.api import edges

        found = [edges.edge_public(edges.show_edge(name))]  # or the error that says why
    data = found[0]
    if json_out:
        print_json(data)
        return
    print_table(f"edge {name}", ["field", "value"],
                [(key, _labels(value) if key == "labels" else value)
                 for key, value in data.items()])


@edge_app.command("remove")
@handle_errors
def remove(name: str) -> None:
    """Forget an edge (refused while deployments use it)."""
    from edgefleet.api import edges

    edges.remove_edge(name)
    console.print(f"edge {name} removed")
