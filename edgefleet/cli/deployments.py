"""Top-level commands on deployments: deploy, deployments, status, start, stop, delete, logs."""

from __future__ import annotations

from collections.abc import Callable
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

WAIT = typer.Option(True, "--wait/--no-wait", help="wait for the final state, showing progress")
JSON = typer.Option(False, "--json", help="print the deployment record as JSON")


def show_deployment(data: dict[str, Any], json_out: bool) -> None:
    if json_out:
        print_json(data)
        return
    colour = {"STARTED": "green", "ERROR": "red", "STOPPED": "yellow"}.get(data["state"], "cyan")
    console.print(f"deployment [bold]{data['id']}[/]: {data['application']} {data['version']} "
                  f"on {data['edge']} is [{colour}]{data['state']}[/]")
    if data["last_error"]:
        console.print(f"[red]last error:[/] {escape(str(data['last_error']))}", highlight=False)
    if data.get("degraded"):
        console.print(f"[yellow]degraded (telemetry):[/] {escape(str(data['degraded']))}",
                      highlight=False)
    if data["containers"]:
        print_table("containers", ["service", "container", "image", "state", "health",
                                   "restarts", "urls"],
                    [(c["service"], c["container_id"], c["image"], c["state"], c["health"] or "",
                      c["restart_count"], " ".join(c["urls"])) for c in data["containers"]])
    if data["urls"]:
        console.print("URLs: " + " ".join(data["urls"]), highlight=False, soft_wrap=True)
    for name, url in (data.get("named_urls") or {}).items():
        console.print(f"{escape(name)}: {escape(url)}", highlight=False, soft_wrap=True)
    if data["flow_run_id"]:
        console.print(f"last flow run: {data['flow_run_id']}")


NOTIFY = typer.Option(None, help="notify of releases at least this big: patch (default, "
                      "every newer release), minor or major")
PRERELEASES = typer.Option(None, "--prereleases/--no-prereleases",
                           help="count prerelease versions such as 2.0.0-rc.1 (default: no)")


def _policy_changes(notify: str | None, prereleases: bool | None) -> dict[str, Any]:
    """The policy fields the options set."""
    changes: dict[str, Any] = {}
    if notify is not None:
        changes["notify"] = notify
    if prereleases is not None:
        changes["prereleases"] = prereleases
    return changes


def register(app: typer.Typer) -> None:
    """Add the deployment commands at the top level of ``app``."""

    @app.command("deploy", short_help="Create a deployment and run flow deploy-application "
                 "(STARTED once containers run).")
    @handle_errors
    def deploy(
        application: str = typer.Argument(..., help="application name"),
        edge: str = typer.Option(..., "--edge", help="edge to deploy to"),
        version: str | None = typer.Option(None, help="version (default: newest published)"),
        env: list[str] | None = typer.Option(None, "--env", help="override KEY=VALUE"),
        allow_unpublished: bool = typer.Option(False, help="allow a version not published yet"),
        notify: str | None = NOTIFY,
        prereleases: bool | None = PRERELEASES,
        wait: bool = WAIT,
        json_out: bool = JSON,
    ) -> None:
        """Create a deployment and run flow deploy-application (STARTED once containers run).
        Its update policy (--notify, --prereleases) says which newly published versions its
        operator hears of; change it later with `edgefleet policy`.
        """
        from edgefleet.api import deployments

        dep = deployments.create_deployment(application, edge, version=version, env=env,
                                            allow_unpublished=allow_unpublished,
                                            policy=_policy_changes(notify, prereleases))
        if not json_out:
            console.print(f"deployment {dep.id} created; deploying to {edge} ...")
        data = deployments.start_deployment(dep.id, wait=wait, progress=_progress(json_out))
        show_deployment(data, json_out)
        if wait and data["state"] == "ERROR":
            raise typer.Exit(1)

    @app.command("policy", short_help="Show or change which published versions a "
                 "deployment's operator hears of.")
    @handle_errors
    def policy(
        deployment: str,
        notify: str | None = NOTIFY,
        prereleases: bool | None = PRERELEASES,
        json_out: bool = JSON,
    ) -> None:
        """Show a deployment's update policy, or change the parts given. When a version is
        published, the deployments on an older one are notified (`edgefleet notifications`)
        unless the release is smaller than their --notify level (patch < minor < major), or
        is a prerelease (such as 2.0.0-rc.1) and they neither take prereleases
        (--prereleases) nor run one. Example: `edgefleet policy ID --notify minor`.
        """
        from edgefleet.api import deployments

        changes = _policy_changes(notify, prereleases)
        rules = (deployments.set_policy(deployment, **changes) if changes
                 else deployments.deployment_status(deployment)["policy"])
        if json_out:
            print_json(rules)
            return
        from edgefleet.models.policies import UpdatePolicy

        console.print(f"deployment {deployment}: {UpdatePolicy(**rules).describe()}",
                      highlight=False)

    @app.command("start")
    @handle_errors
    def start(deployment: str, wait: bool = WAIT, json_out: bool = JSON) -> None:
        """Start a CREATED or STOPPED deployment again."""
        from edgefleet.api import deployments

        data = deployments.start_deployment(deployment, wait=wait,
                                            progress=_progress(json_out))
        show_deployment(data, json_out)
        if wait and data["state"] == "ERROR":
            raise typer.Exit(1)

    @app.command("deployments")
    @handle_errors
    def list_(json_out: bool = typer.Option(False, "--json", help="print JSON")) -> None:
        """List deployments with their state and URLs."""
        from edgefleet.record_reads import deployment_views

        rows = deployment_views()  # SQLite records at head: read without building the ORM
        if rows is None:
            from edgefleet.api import deployments

            rows = deployments.list_deployments()
        if json_out:
            print_json(rows)
            return
        print_table("deployments", ["id", "application", "version", "edge", "state", "urls"],
                    [(d["id"][:12], d["application"], d["version"], d["edge"], d["state"],
                      " ".join(d["urls"])) for d in rows])

    @app.command("status")
    @handle_errors
    def status(deployment: str = typer.Argument(..., help="deployment id (or unique prefix)"),
               json_out: bool = JSON) -> None:
        """State, containers, URLs, last error and last flow run of a deployment."""
        from edgefleet.record_reads import deployment_views

        found = deployment_views(deployment)  # without the ORM where it can (SQLite at head)
        if found is None:
            from edgefleet.api import deployments

            found = [deployments.deployment_status(deployment)]  # or the error that says why
        show_deployment(found[0], json_out)

    @app.command("stop")
    @handle_errors
    def stop(deployment: str,
             remove_volumes: bool = typer.Option(False, help="also remove its volumes"),
             wait: bool = WAIT, json_out: bool = JSON) -> None:
        """Stop a deployment: its containers are removed (volumes only when asked)."""
        from edgefleet.api import deployments

        show_deployment(deployments.stop_deployment(deployment, remove_volumes=remove_volumes,
                                                    wait=wait, progress=_progress(json_out)),
                        json_out)

    @app.command("delete")
    @handle_errors
    def delete(deployment: str,
               force: bool = typer.Option(False, help="stop it first if it still runs")) -> None:
        """Delete a CREATED or STOPPED deployment (--force stops a running one first)."""
        from edgefleet.api import deployments

        warning = deployments.delete_deployment(deployment, force=force)
        if warning:
            err_console.print(f"[yellow]warning:[/] {escape(warning)}")
        console.print(f"deployment {deployment} deleted")

    @app.command("logs")
    @handle_errors
    def logs_(
        deployment: str,
        service: str | None = typer.Option(None, help="only this service"),
        lines: int = typer.Option(200, help="at most this many lines per service"),
        since: str | None = typer.Option(None, help="from this RFC 3339 time (else resume)"),
        json_out: bool = typer.Option(False, "--json", help="print JSON"),
    ) -> None:
        """Log lines with timestamps; each call resumes where the previous one stopped."""
        from edgefleet.api import logs

        result = logs.fetch_logs(deployment, service=service, lines=lines, since=since)
        if json_out:
            print_json(result)
            return
        for name, page in result.items():
            for line in page:
                console.print(f"[dim]{name}[/] {line}", highlight=False, markup=True)


def _progress(json_out: bool) -> Callable[[str], None] | None:
    """Progress lines on stderr, so --json output stays clean."""
    return None if json_out else (lambda msg: err_console.print(f"[dim]{msg}[/]"))
