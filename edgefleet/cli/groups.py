"""`edgefleet group ...`: one application on a fleet of edges, rolled out in waves."""

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

group_app = typer.Typer(
    help="Deployment groups: one application on many edges (a list or a label selector), "
    "launched and updated in waves that stop on failure.\n\n"
    "e.g. edgefleet group create shops hello --selector site=plant-7 --waves 1,25%,100%",
    no_args_is_help=True)

JSON = typer.Option(False, "--json", help="print the group as JSON")
WAIT = typer.Option(True, "--wait/--no-wait",
                    help="wait for the rollout to end, showing progress per wave")
WAVES = typer.Option(
    None, "--waves", metavar="TARGETS",
    help="cumulative wave targets, a number of edges or a percentage, ending at 100%: e.g. "
    "1,25%,100% (default 100%: one wave); edges labelled tier=canary go first")
MAX_PARALLEL = typer.Option(None, "--max-parallel", metavar="N",
                            help="edges of a wave rolled out at a time (default 10)")
THRESHOLD = typer.Option(
    None, "--failure-threshold", metavar="P%",
    help="share of the attempted edges that may fail before --on-failure acts (default 0%: "
    "the first failure)")
ON_FAILURE = typer.Option(
    None, "--on-failure", metavar="halt|rollback|continue",
    help="once over the threshold: halt (no further edge), rollback (also roll back the edges "
    "this rollout updated), continue (record and go on); default halt")
AUTO_UPDATE = typer.Option(
    None, "--auto-update", metavar="off|patch|minor|major",
    help="roll out by itself each newly published version this level admits (patch: same "
    "major.minor, minor: same major, major: any newer release), with the group's rollout "
    "options, while `edgefleet up` runs; default off")

APPROVE = typer.Option(
    None, "--approve/--no-approve",
    help="after each wave but the last, wait for `edgefleet group approve` (or an approval "
    "in the Prefect UI); needs `edgefleet up`")


def _progress(json_out: bool) -> Callable[[str], None] | None:
    """Progress lines (per wave) on stderr, so --json output stays clean."""
    return None if json_out else (
        lambda m: err_console.print(f"[dim]{escape(m)}[/]", highlight=False))


def _show(data: dict[str, Any], json_out: bool) -> None:
    if json_out:
        print_json(data)
        return
    target = (f"selector {data['selector']}" if data["selector"] is not None
              else f"edges {', '.join(data['edge_list'] or [])}")
    rollout = data["rollout"]
    wave = f", wave {rollout['wave']}/{rollout['waves']}" if rollout["waves"] else ""
    auto = data.get("auto_update", "off")
    auto_text = f" (auto-update {auto})" if auto != "off" else ""
    console.print(f"group [bold]{escape(data['name'])}[/]: {escape(data['application'])} "
                  f"{escape(data['version'])} on {escape(target)}: [bold]{data['state']}[/]"
                  f"{wave}{escape(auto_text)}", highlight=False)
    if data["reason"]:
        console.print(f"reason: {escape(data['reason'])}", highlight=False)
    print_table("members", ["edge", "deployment", "version", "state", "last error"],
                [(e["edge"], (e["deployment_id"] or "-")[:12], e["version"], e["state"],
                  e["last_error"]) for e in data["edges"]])
    from edgefleet.models.groups import holding_hint

    hint = holding_hint(data["name"], data["state"], rollout["wave"], rollout["waves"])
    if hint:
        console.print(escape(hint), highlight=False)


@group_app.command("create")
@handle_errors
def create(
    name: str = typer.Argument(..., help="unique group name, e.g. shops"),
    application: str = typer.Argument(..., help="the application to run on every edge"),
    edge: list[str] | None = typer.Option(
        None, "--edge", metavar="EDGE", help="a target edge (repeatable); or --selector"),
    selector: str | None = typer.Option(
        None, "--selector", metavar="SELECTOR",
        help="the edges whose labels match, e.g. 'site=plant-7,!retired'; or --edge"),
    version: str | None = typer.Option(None, help="default: the newest published version"),
    env: list[str] | None = typer.Option(None, "--env", metavar="KEY=VALUE",
                                         help="environment of every member (repeatable)"),
    waves: str | None = WAVES,
    max_parallel: int | None = MAX_PARALLEL,
    failure_threshold: str | None = THRESHOLD,
    on_failure: str | None = ON_FAILURE,
    approve: bool | None = APPROVE,
    prune: bool = typer.Option(False, "--prune",
                               help="members on edges that stop matching leave the group"),
    auto_update: str | None = AUTO_UPDATE,
    wait: bool = WAIT,
    json_out: bool = JSON,
) -> None:
    """Launch APPLICATION on every target edge: one deployment per edge, in waves.

    e.g. edgefleet group create shops hello --selector site=plant-7 --waves 1,100%
    --on-failure halt;  edgefleet group create pair hello --edge lab-1 --edge lab-2
    """
    from edgefleet.api import groups

    data = groups.create_group(
        name, application, edges=edge or None, selector=selector, version=version, env=env,
        waves=waves, max_parallel=max_parallel, failure_threshold=failure_threshold,
        on_failure=on_failure, approve=approve, prune=prune, auto_update=auto_update,
        wait=wait,
        progress=_progress(json_out))
    _show(data, json_out)


@group_app.command("update")
@handle_errors
def update(
    name: str = typer.Argument(..., help="the group"),
    to: str | None = typer.Option(None, "--to", help="default: the newest published version"),
    force: bool = typer.Option(False, "--force",
                               help="re-pull and restart members already on the version"),
    waves: str | None = WAVES,
    max_parallel: int | None = MAX_PARALLEL,
    failure_threshold: str | None = THRESHOLD,
    on_failure: str | None = ON_FAILURE,
    approve: bool | None = APPROVE,
    wait: bool = WAIT,
    json_out: bool = JSON,
) -> None:
    """Roll the group out to a new version, wave by wave; each member's update is
    health-gated and rolls itself back on failure. Rollout options given here are kept.

    e.g. edgefleet group update shops --to 1.1.0 --waves 1,50%,100% --on-failure rollback
    """
    from edgefleet.api import groups

    data = groups.update_group(
        name, to=to, force=force, waves=waves, max_parallel=max_parallel,
        failure_threshold=failure_threshold, on_failure=on_failure, approve=approve,
        wait=wait, progress=_progress(json_out))
    _show(data, json_out)


@group_app.command("set")
@handle_errors
def set_(
    name: str = typer.Argument(..., help="the group"),
    waves: str | None = WAVES,
    max_parallel: int | None = MAX_PARALLEL,
    failure_threshold: str | None = THRESHOLD,
    on_failure: str | None = ON_FAILURE,
    approve: bool | None = APPROVE,
    auto_update: str | None = AUTO_UPDATE,
    json_out: bool = JSON,
) -> None:
    """Change the group's stored rollout options or auto-update level; starts no rollout.

    e.g. edgefleet group set shops --auto-update minor --waves 1,50%,100%
    """
    from edgefleet.api import groups

    _show(groups.set_group(name, waves=waves, max_parallel=max_parallel,
                           failure_threshold=failure_threshold, on_failure=on_failure,
                           approve=approve, auto_update=auto_update), json_out)


@group_app.command("list")
@handle_errors
def list_(json_out: bool = typer.Option(False, "--json", help="print JSON")) -> None:
    """The groups, with their target, state and member counts.  e.g. edgefleet group list"""
    from edgefleet.api import groups

    rows = groups.list_groups()
    if json_out:
        print_json(rows)
        return
    print_table("deployment groups", ["name", "application", "version", "targets", "state",
                                      "members", "reason"],
                [(g["name"], g["application"], g["version"],
                  g["selector"] if g["selector"] is not None else ",".join(g["edge_list"]),
                  g["state"], " ".join(f"{k}={v}" for k, v in g["counts"].items()),
                  g["reason"]) for g in rows])


@group_app.command("status")
@handle_errors
def status(name: str, json_out: bool = JSON) -> None:
    """The group's state, reason, rollout wave and members.  e.g. edgefleet group status shops"""
    from edgefleet.api import groups

    _show(groups.group_status(name), json_out)


@group_app.command("delete")
@handle_errors
def delete(name: str,
           force: bool = typer.Option(False, "--force",
                                      help="stop running members (and a rollout) first")) -> None:
    """Delete the group and its member deployments.  e.g. edgefleet group delete shops --force"""
    from edgefleet.api import groups

    for warning in groups.delete_group(name, force=force):
        err_console.print(f"warning: {escape(warning)}", highlight=False)
    console.print(f"group [bold]{escape(name)}[/] deleted", highlight=False)


@group_app.command("approve")
@handle_errors
def approve(
    name: str = typer.Argument(..., help="the group awaiting approval"),
    reject: bool = typer.Option(False, "--reject",
                                help="halt the rollout instead of going on"),
    note: str | None = typer.Option(None, "--note", metavar="TEXT",
                                    help="why, kept in the run's log (and the reason)"),
    wait: bool = typer.Option(False, "--wait/--no-wait",
                              help="follow the rest of the rollout (up to its next gate)"),
    json_out: bool = JSON,
) -> None:
    """Approve the next wave of a rollout awaiting approval (created with --approve): its
    paused Prefect run goes on, as when approved in the Prefect UI.

    e.g. edgefleet group approve shops --wait;  edgefleet group approve shops --reject
    --note "canary is slow"
    """
    from edgefleet.api import groups

    _show(groups.approve_group(name, approved=not reject, note=note, wait=wait,
                               progress=_progress(json_out)), json_out)


@group_app.command("pause")
@handle_errors
def pause(name: str = typer.Argument(..., help="the group whose rollout is under way"),
          json_out: bool = JSON) -> None:
    """Pause a rollout under way: it stops before its next edges (those under way finish)
    until `edgefleet group resume`.  e.g. edgefleet group pause shops"""
    from edgefleet.api import groups

    _show(groups.pause_group(name), json_out)


@group_app.command("resume")
@handle_errors
def resume(
    name: str = typer.Argument(..., help="the paused group"),
    wait: bool = typer.Option(False, "--wait/--no-wait", help="follow the rest of the rollout"),
    json_out: bool = JSON,
) -> None:
    """Let a paused rollout go on.  e.g. edgefleet group resume shops --wait"""
    from edgefleet.api import groups

    _show(groups.resume_group(name, wait=wait, progress=_progress(json_out)), json_out)


@group_app.command("reconcile")
@handle_errors
def reconcile(name: str = typer.Argument(..., help="the group"), wait: bool = WAIT,
              json_out: bool = JSON) -> None:
    """Plan the group again and run the plan: edges that newly match join, members off the
    target are updated, and with --prune members that no longer match leave.  Shown: the
    plan, one line per edge with its cause.  e.g. edgefleet group reconcile shops
    """
    from edgefleet.api import groups

    data = groups.reconcile_group(name, wait=wait, progress=_progress(json_out))
    if json_out:
        print_json(data)
        return
    console.print("plan:", highlight=False)
    for row in data["plan"] or [{"edge": "-", "action": "keep", "cause": "nothing to do"}]:
        console.print(f"  {row['action']:<6} {escape(row['edge'])}: {escape(row['cause'])}",
                      highlight=False)
    _show(data, json_out)


@group_app.command("stop")
@handle_errors
def stop(name: str = typer.Argument(..., help="the group"), wait: bool = WAIT,
         json_out: bool = JSON) -> None:
    """Stop every member of the group; those on an edge that is not ONLINE stop once it is
    back. `group update NAME` launches it again.  e.g. edgefleet group stop shops
    """
    from edgefleet.api import groups

    _show(groups.stop_group(name, wait=wait, progress=_progress(json_out)), json_out)
