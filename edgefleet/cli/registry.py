"""`edgefleet registry login`: keep a private registry's login as a Prefect Secret block."""

from __future__ import annotations

import sys

import typer

from edgefleet.cli.common import console, handle_errors
from edgefleet.errors import InvalidInput

registry_app = typer.Typer(help="Logins for private registries (stored as Prefect Secret "
                           "blocks; versions refer to them with --registry-secret).",
                           no_args_is_help=True)


@registry_app.command("login")
@handle_errors
def login(
    name: str = typer.Argument(..., help="secret name, e.g. acme-registry"),
    username: str = typer.Option(..., "--username", "-u"),
    password_stdin: bool = typer.Option(False, "--password-stdin",
                                        help="read the password from standard input"),
    registry: str | None = typer.Option(None, help="registry host, for your reference"),
) -> None:
    """Save a registry login, e.g. `echo $TOKEN | edgefleet registry login acme -u bot
    --password-stdin`; then `edgefleet app create ... --registry-secret acme`."""
    if not password_stdin:
        raise InvalidInput("pass the password on standard input with --password-stdin "
                           "(never on the command line)")
    password = sys.stdin.readline().rstrip("\n")
    from edgefleet import registry_secrets  # Prefect

    registry_secrets.save_registry_login(name, username=username, password=password,
                                         registry=registry)
    console.print(f"registry login {name} saved as a Prefect Secret block")
