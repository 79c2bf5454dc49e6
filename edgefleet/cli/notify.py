"""`edgefleet notify ...`: channels that tell people (Prefect automations + notification blocks)."""

from __future__ import annotations

from typing import Any

import typer
from rich.markup import escape

from edgefleet.cli.common import console, handle_errors, print_json, print_table

notify_app = typer.Typer(
    help="Channels that tell people when something happens: a Prefect automation sends the "
    "matching edgefleet events to a notification block (a webhook, or your Slack, Teams, "
    "email ... block). Needs `edgefleet up`.",
    no_args_is_help=True)

KINDS_HELP = ("comma list of: update-available, rolled-back, failed, offline, online, halted, "
              "awaiting-approval")


@notify_app.command("add")
@handle_errors
def add(
    name: str = typer.Argument(..., help="channel name, e.g. ops-webhook"),
    on: str = typer.Option(..., "--on", help=KINDS_HELP),
    webhook: str | None = typer.Option(None, "--webhook", help="POST each message to this URL "
                                       "(JSON: subject, text, kind, channel)"),
    block: str | None = typer.Option(None, "--block", help="an existing Prefect notification "
                                     "block as TYPE/NAME, e.g. slack-webhook/ops"),
    application: str | None = typer.Option(None, "--application",
                                           help="only events of this application"),
    edge: str | None = typer.Option(None, "--edge", help="only events of this edge"),
    json_out: bool = typer.Option(False, "--json", help="print the channel as JSON"),
) -> None:
    """Add a channel, e.g. `edgefleet notify add ops --webhook https://hooks.example/x --on
    update-available,rolled-back,offline`."""
    from edgefleet.api.channels import add_channel

    data = add_channel(name, on=on, webhook=webhook, block=block, application=application,
                       edge=edge)
    if json_out:
        print_json(data)
    else:
        console.print(f"channel {escape(name)} sends {', '.join(data['on'])} "
                      f"(automation {data['automation_id']})")


@notify_app.command("list")
@handle_errors
def list_(json_out: bool = typer.Option(False, "--json", help="print JSON")) -> None:
    """The channels, what they send, and their deliveries (sent / failed)."""
    from edgefleet.api.channels import list_channels

    rows = list_channels()
    if json_out:
        print_json(rows)
        return
    print_table("notify channels", ["name", "on", "to", "filters", "sent", "failed",
                                    "last failure"],
                [[escape(c["name"]), ", ".join(c.get("on", [])),
                  escape(c.get("webhook") or c.get("block") or ""),
                  escape(", ".join(f"{k}={c[k]}" for k in ("application", "edge") if c.get(k))),
                  *_counts(c["deliveries"]),
                  escape(c["deliveries"]["last_failure"] or "")] for c in rows])


def _counts(deliveries: dict[str, Any]) -> list[str]:
    """Sent and failed, said to be of the last N deliveries when not all were counted."""
    of = "" if deliveries["complete"] else f" of the last {deliveries['counted']}"
    return [f"{deliveries['sent']}{of}", f"{deliveries['failed']}{of}"]


@notify_app.command("test")
@handle_errors
def test(name: str = typer.Argument(..., help="channel name")) -> None:
    """Send one test message through the channel now."""
    from edgefleet.api.channels import test_channel

    test_channel(name)
    console.print(f"test message sent through {escape(name)}")


@notify_app.command("remove")
@handle_errors
def remove(name: str = typer.Argument(..., help="channel name")) -> None:
    """Remove a channel (its automation, and the webhook block edgefleet made for it)."""
    from edgefleet.api.channels import remove_channel

    remove_channel(name)
    console.print(f"channel {escape(name)} removed")
