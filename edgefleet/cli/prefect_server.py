"""`edgefleet up` / `edgefleet down`: the Prefect server and the served flows."""

from __future__ import annotations

import typer

from edgefleet import server
from edgefleet.cli.common import console, handle_errors, print_json


def register(app: typer.Typer) -> None:
    @app.command("up")
    @handle_errors
    def up(json_out: bool = typer.Option(False, "--json", help="print JSON")) -> None:
        """Start a local Prefect server and serve every edgefleet flow (idempotent)."""
        state = server.up(progress=(lambda _m: None) if json_out else console.print)
        if json_out:
            print_json(state)
        else:
            console.print(f"Prefect UI: {state['ui_url']}  (jobs now run as flow runs there)")

    @app.command("down")
    @handle_errors
    def down() -> None:
        """Stop the Prefect server and the serving process started by `edgefleet up`."""
        server.down(progress=console.print)
        console.print("edgefleet services stopped")
