"""Commands of the update workflow: update, check-updates, notifications."""

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
from edgefleet.cli.deployments import show_deployment

notifications_app = typer.Typer(help="What operators are told: newer versions, moved images, "
                                "rollbacks.", invoke_without_command=True)


@notifications_app.callback()
@handle_errors
def list_notifications(
    ctx: typer.Context,
    all_: bool = typer.Option(False, "--all", help="include acknowledged ones"),
    json_out: bool = typer.Option(False, "--json", help="print JSON"),
) -> None:
    """List notifications (unacknowledged by default)."""
    if ctx.invoked_subcommand is not None:
        return
    from edgefleet.api import notifications

    rows = notifications.list_notifications(include_acknowledged=all_)
    if json_out:
        print_json(rows)
        return
    print_table("notifications", ["id", "deployment", "reason", "from", "to", "message",
                                  "command"],
                [(n["id"], n["deployment_id"][:12], n["reason"], n["from_version"],
                  n["to_version"], n["message"], n["command"]) for n in rows])


@notifications_app.command("ack")
@handle_errors
def ack(notification_id: int) -> None:
    """Mark a notification as seen."""
    from edgefleet.api import notifications

    notifications.acknowledge(notification_id)
    console.print(f"notification {notification_id} acknowledged")


def register(app: typer.Typer) -> None:
    app.add_typer(notifications_app, name="notifications")

    @app.command("update")
    @handle_errors
    def update(
        deployment: str = typer.Argument(..., help="deployment id (or unique prefix)"),
        to: str | None = typer.Option(None, "--to", help="version (default: newest published)"),
        force: bool = typer.Option(False, help="re-pull images even if the tag did not change; "
                                   "restart only containers whose image changed"),
        allow_unpublished: bool = typer.Option(False, help="allow a version not published"),
        wait: bool = typer.Option(True, "--wait/--no-wait", help="wait for the final state"),
        json_out: bool = typer.Option(False, "--json", help="print the deployment as JSON"),
    ) -> None:
        """Update a deployment: pull first, recreate only what changed, roll back on failure."""
        from edgefleet.api import deployments

        progress = None if json_out else (lambda m: err_console.print(f"[dim]{m}[/]"))
        data = deployments.update_deployment(deployment, to=to, force=force,
                                             allow_unpublished=allow_unpublished, wait=wait,
                                             progress=progress)
        show_deployment(data, json_out)
        if wait and (data["state"] != "STARTED" or data["last_error"]):
            raise typer.Exit(1)

    @app.command("check-updates")
    @handle_errors
    def check_updates(json_out: bool = typer.Option(False, "--json", help="print JSON")) -> None:
        """One image-update sweep now: each unique image reference asked once."""
        from edgefleet import jobs  # Prefect

        result = jobs.run_here("check-image-updates")
        if json_out:
            print_json(result)
            return
        console.print(f"checked {result['references']} image reference(s) with "
                      f"{result['registry_requests']} registry request(s); "
                      f"{len(result['updates_available'])} update(s) available, "
                      f"{result['notifications']} new notification(s)")
        for found in result["updates_available"]:
            console.print(f"- {found['message']}\n  {found['command']}", highlight=False,
                          markup=False)
        for error in result["errors"]:
            err_console.print(f"[yellow]warning:[/] {escape(str(error))}")
