"""`edgefleet up` / `edgefleet down`: the Prefect server and the served flows.

Without `up`, the first command that runs a flow starts the same local server alone in the
background (see ``edgefleet.server.flow_api_url``); `up` adopts it and `down` stops it.
"""

from __future__ import annotations

import typer

from edgefleet.cli.common import console, handle_errors, print_json


def register(app: typer.Typer) -> None:
    @app.command("up")
    @handle_errors
    def up(json_out: bool = typer.Option(False, "--json", help="print JSON")) -> None:
        """Start a local Prefect server and serve every edgefleet flow (idempotent)."""
        from edgefleet import server

        state = server.up(progress=(lambda _m: None) if json_out else console.print)
        if json_out:
            print_json(state)
        else:
            console.print(f"Prefect UI: {state['ui_url']}  (jobs now run as flow runs there)")

    @app.command("down")
    @handle_errors
    def down() -> None:
        """Stop the local Prefect server (`up`'s, or one a flow-running command started)."""
        from edgefleet import server

        server.down(progress=console.print)
        console.print("edgefleet services stopped")
