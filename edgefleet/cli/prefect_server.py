"""`edgefleet up` / `down` / `worker`: the Prefect server, the work pool and its workers.

Without `up`, the first command that runs a flow starts the same local server alone in the
background (see ``edgefleet.server.flow_api_url``); `up` adopts it and `down` stops it.
"""

from __future__ import annotations

import typer

from edgefleet.cli.common import console, handle_errors, print_json
from edgefleet.errors import EdgefleetError


def register(app: typer.Typer) -> None:
    @app.command("up")
    @handle_errors
    def up(
        workers: int = typer.Option(
            1, "--workers", min=0,
            help="workers of the work pool to run on this machine (none is stopped); 0: the "
            "server and the pool only, for workers started elsewhere with `edgefleet worker`"),
        json_out: bool = typer.Option(False, "--json", help="print JSON"),
    ) -> None:
        """Start a local Prefect server, register every edgefleet flow as a deployment of
        the process work pool 'edgefleet', and start its workers (idempotent).

        e.g. edgefleet up;  edgefleet up --workers 3;  edgefleet up --workers 0
        """
        from edgefleet import server

        state = server.up(progress=(lambda _m: None) if json_out else console.print,
                          workers=workers)
        if json_out:
            print_json(state)
            return
        console.print(f"Prefect UI: {state['ui_url']}  (jobs now run as flow runs there)")
        if not state["workers"]:
            from edgefleet.settings import get_settings

            api_url = str(state["api_url"])
            if get_settings().prefect_host.is_unspecified:  # reached here on 127.0.0.1 only
                api_url = api_url.replace("127.0.0.1", "<this machine's address>", 1)
            console.print("no worker runs here: start one on any machine with "
                          f"PREFECT_API_URL={api_url} edgefleet worker", highlight=False)

    @app.command("worker")
    @handle_errors
    def worker(
        name: str | None = typer.Option(
            None, help="the worker's name in the pool (default: <host>-<random>)"),
        limit: int = typer.Option(8, min=1, help="flow runs at once on this worker"),
    ) -> None:
        """Run one worker of the 'edgefleet' work pool in the foreground (Ctrl-C stops it).

        On another machine it needs only PREFECT_API_URL (the control plane's Prefect API,
        e.g. http://cp.example:4200/api) and EDGEFLEET_DATABASE_URL (the records, PostgreSQL);
        it keeps no state a later run needs. Here, with `edgefleet up` running, neither is
        needed. Its runs start warm, forked from a process beside it that has Prefect and
        the flows imported.

        e.g. PREFECT_API_URL=http://cp:4200/api EDGEFLEET_DATABASE_URL=postgresql://cp/ef
        edgefleet worker
        """
        from edgefleet import server, workers

        api_url = server.running_api_url() or server.user_api_url()
        if not api_url:
            raise EdgefleetError(
                "no Prefect API to take jobs from: set PREFECT_API_URL to the control "
                "plane's (e.g. http://cp.example:4200/api), or run `edgefleet up` here first")
        if name is not None and not workers.valid_name(name):
            raise EdgefleetError(f"worker name {name!r}: use letters, digits, '.', '_' and "
                                 "'-' (1-100 characters)")
        console.print(f"worker of pool {workers.POOL!r} taking jobs from {api_url}")
        workers.run(api_url, name=name, limit=limit)

    @app.command("agent")
    @handle_errors
    def agent(
        edge: str = typer.Option(..., help="the pull edge this agent serves (`edge add NAME "
                                 "--pull`)"),
        docker_host: str | None = typer.Option(
            None, help="the engine beside it (default unix:///var/run/docker.sock)"),
        limit: int = typer.Option(4, min=1, help="steps at once on this edge"),
    ) -> None:
        """Run a pull edge's agent in the foreground, beside its engine (Ctrl-C stops it).

        It polls the control plane's Prefect API for this edge's steps (deploy, update,
        stop, logs, telemetry) and runs them on the local engine: the edge needs outbound
        HTTP(S) to that API only, no inbound port and no database credentials. Its
        heartbeats keep the edge ONLINE.

        e.g. PREFECT_API_URL=http://cp.example:4200/api edgefleet agent --edge plant-7
        """
        from edgefleet import agent as agents
        from edgefleet import server, workers

        api_url = server.user_api_url() or server.running_api_url()
        if not api_url:
            raise EdgefleetError(
                "no Prefect API to take steps from: set PREFECT_API_URL to the control "
                "plane's (e.g. http://cp.example:4200/api)")
        if not workers.valid_name(edge):
            raise EdgefleetError(f"edge name {edge!r}: use letters, digits, '.', '_' and '-'")
        console.print(f"agent of pull edge {edge!r} taking its steps from {api_url}")
        agents.run(api_url, edge, docker_host, limit=limit)

    @app.command("down")
    @handle_errors
    def down() -> None:
        """Stop the local Prefect server (`up`'s, or one a flow-running command started)."""
        from edgefleet import server

        server.down(progress=console.print)
        console.print("edgefleet services stopped")
