"""`edgefleet app ...`: define applications, add versions, publish them."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import typer
from typer.core import TyperCommand

from edgefleet.cli.common import console, escape, handle_errors, print_json, print_table
from edgefleet.errors import InvalidInput

app_app = typer.Typer(help="Define applications and their versions; publish them to operators.",
                      no_args_is_help=True)

IMAGE = typer.Option(None, "--image", help="image reference (single-container application)")
COMPOSE = typer.Option(None, "--compose", help="a Docker Compose file")
STACK = typer.Option(None, "--stack", help="a swarm stack file (compose format)")
ENV = typer.Option(None, "--env", help="default environment, KEY=VALUE (repeatable)")
PORT = typer.Option(None, "--port", help="[HOST:]CONTAINER port to publish (image kind)")
URL = typer.Option(
    None, "--url", metavar="NAME=TEMPLATE",
    help="a named URL shown by `status` (repeatable): an http(s):// or tcp:// URL with "
    "${host} (the edge's --address, default its docker host), ${port:N} (the host port "
    "published for container port N), ${port:SERVICE:N} (the same for one service of a "
    "compose file or stack) and ${service} (that service's name), e.g. "
    "admin='http://${host}:${port:8080}/admin'")
SECRET = typer.Option(None, "--registry-secret",
                      help="Prefect Secret block with the registry login "
                      "(see `edgefleet registry login`)")
PRIVILEGED = typer.Option(False, "--allow-privileged",
                          help="allow host-level privileges (privileged, host pid/ipc/network, "
                          "bind mounts of host paths, cap_add, devices, security_opt): its "
                          "containers control every edge it runs on")
PARAM = typer.Option(None, "--param", metavar="NAME[=DEFAULT]",
                     help="declare a parameter (repeatable; refines one found in the file); "
                     "--required, --description and --sensitive after it apply to it")
REQUIRED = typer.Option(False, "--required", help="the --param before it must be set at deploy")
DESCRIPTION = typer.Option(None, "--description", metavar="TEXT",
                           help="what the --param before it is for")
SENSITIVE = typer.Option(False, "--sensitive",
                         help="the --param before it is a secret: kept in a Prefect Secret "
                         "block per deployment, shown masked")
FILE = typer.Option(
    None, "--file", metavar="PATH[=NAME]",
    help="bundle a file with the version (repeatable; compose applications): the compose "
    "file's env_file, `configs: file:` and relative bind mounts name it by NAME (default: "
    "the file's own name); it is kept in the records and sent with each deploy")
PARAM_FLAGS = ("--param", "--required", "--description", "--sensitive")


class ParamsInOrder(TyperCommand):
    """Keeps the raw arguments, so that ``--required`` / ``--description`` / ``--sensitive``
    apply to the ``--param`` just before them (click alone forgets their order)."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        ctx.meta["edgefleet.raw_args"] = list(args)
        return super().parse_args(ctx, args)


def declared_params(ctx: typer.Context) -> list[dict[str, Any]]:
    """The ``--param`` declarations of the running command, each with the flags after it."""
    raw: list[str] = ctx.meta.get("edgefleet.raw_args", [])
    takes_value = {opt for p in ctx.command.params if getattr(p, "is_flag", True) is False
                   for opt in getattr(p, "opts", [])}
    declared: list[dict[str, Any]] = []
    i = 0
    while i < len(raw):
        token = raw[i]
        if token == "--":
            break
        flag, eq, inline = token.partition("=")
        value: str | None = inline if eq else None
        if flag in takes_value and not eq:
            value = raw[i + 1] if i + 1 < len(raw) else None
            i += 1
        i += 1
        if flag not in PARAM_FLAGS:
            continue
        if flag == "--param":
            assert value is not None
            name, has_default, default = value.partition("=")
            declared.append({"name": name, **({"default": default} if has_default else {})})
            continue
        if not declared:
            raise InvalidInput(f"{flag} applies to the --param before it: give --param NAME "
                               f"first (e.g. --param GREETING {flag}"
                               f"{' TEXT' if flag == '--description' else ''})")
        key = flag.removeprefix("--")
        if key in declared[-1]:
            raise InvalidInput(f"{flag} is given twice for --param {declared[-1]['name']}")
        declared[-1][key] = value if flag == "--description" else True
    return declared


def _bundled(args: list[str] | None) -> dict[str, str | bytes]:
    """``--file PATH[=NAME]`` read within the per-file limit (checked again, with the
    per-version limits, by the API)."""
    from edgefleet import bundled_files

    limits = bundled_files.FileLimits.from_settings()
    files: dict[str, str | bytes] = {}
    for arg in args or []:
        path, name = bundled_files.split_arg(arg)
        if name in files:
            raise InvalidInput(f"--file: two files are named {name}; rename one with "
                               "PATH=NAME")
        try:
            with Path(path).open("rb") as file:
                files[name] = file.read(limits.max_file_bytes + 1)
        except OSError as exc:
            raise InvalidInput(f"--file {path}: cannot read it ({exc.strerror})") from exc
    return files


def _read(path: Path | None, what: str) -> str | None:
    """The file's text, refused before reading past the size limit or if not UTF-8."""
    if path is None:
        return None
    from edgefleet.models.documents import Limits, check_size, text_of

    limits = Limits.from_settings()
    try:
        with path.open("rb") as file:
            check_size(os.fstat(file.fileno()).st_size, what=what, limits=limits)
            data = file.read(limits.max_bytes + 1)  # a pipe or /dev/zero has no size
    except OSError as exc:
        raise InvalidInput(f"cannot read {path}: {exc.strerror}") from exc
    check_size(len(data), what=what, limits=limits, at_least=True)
    text = text_of(data, what=what, limits=limits)
    if not text.strip():
        raise InvalidInput(f"{what} {path} is empty")
    return text


@app_app.command("create", cls=ParamsInOrder)
@handle_errors
def create(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="application name"),
    version: str = typer.Option(..., "--version", help="semantic version of this definition"),
    image: str | None = IMAGE,
    compose: Path | None = COMPOSE,
    stack: Path | None = STACK,
    env: list[str] | None = ENV,
    port: list[str] | None = PORT,
    registry_secret: str | None = SECRET,
    allow_privileged: bool = PRIVILEGED,
    param: list[str] | None = PARAM,
    required: bool = REQUIRED,
    description: list[str] | None = DESCRIPTION,
    sensitive: bool = SENSITIVE,
    url: list[str] | None = URL,
    file: list[str] | None = FILE,
    json_out: bool = typer.Option(False, "--json", help="print the version as JSON"),
) -> None:
    """Create an application with its first version (not published yet).

    A compose or stack file's variables (${VAR}, ${VAR:-default}, ${VAR:?message}) are its
    parameters. Declare more, or refine them: --param GREETING --required --description TEXT.
    Compose validates the file first (config --quiet).
    """
    from edgefleet.api import applications
    from edgefleet.models.records import as_dict

    row = applications.create_application(
        name, version, image=image, compose=_read(compose, "compose file"),
        stack=_read(stack, "stack file"), env=env, ports=port, registry_secret=registry_secret,
        allow_privileged=allow_privileged, params=declared_params(ctx),
        urls=url, files=_bundled(file),
    )
    if json_out:
        print_json(as_dict(row))
    else:
        console.print(f"application [bold]{name}[/] created with version {row.version} "
                      f"({row.kind}); publish it with `edgefleet app publish {name} {row.version}`")
        _warn_privileges(row.privileges)


@app_app.command("version", cls=ParamsInOrder)
@handle_errors
def version(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="application name"),
    version: str = typer.Argument(..., help="new semantic version"),
    image: str | None = IMAGE,
    compose: Path | None = COMPOSE,
    stack: Path | None = STACK,
    env: list[str] | None = ENV,
    port: list[str] | None = PORT,
    registry_secret: str | None = SECRET,
    allow_privileged: bool = PRIVILEGED,
    param: list[str] | None = PARAM,
    required: bool = REQUIRED,
    description: list[str] | None = DESCRIPTION,
    sensitive: bool = SENSITIVE,
    url: list[str] | None = URL,
    file: list[str] | None = FILE,
) -> None:
    """Add a version to an application (publish it when it is ready for operators).
    Parameters as in `app create` (--param NAME[=DEFAULT] [--required] [--description
    TEXT] [--sensitive], repeatable).
    """
    from edgefleet.api import applications

    row = applications.add_version(
        name, version, image=image, compose=_read(compose, "compose file"),
        stack=_read(stack, "stack file"), env=env, ports=port, registry_secret=registry_secret,
        allow_privileged=allow_privileged, params=declared_params(ctx),
        urls=url, files=_bundled(file),
    )
    console.print(f"application {name}: version {row.version} added ({row.kind})")
    _warn_privileges(row.privileges)


@app_app.command("publish")
@handle_errors
def publish(name: str, version: str) -> None:
    """Publish a version: operators running older versions are told an update exists."""
    from edgefleet.api import applications

    row = applications.publish_version(name, version)
    console.print(f"application {name} {row.version} is published")
    _warn_privileges(row.privileges)


@app_app.command("list")
@handle_errors
def list_(json_out: bool = typer.Option(False, "--json", help="print JSON")) -> None:
    """List applications with their newest published version."""
    from edgefleet.record_reads import application_views

    rows = application_views()  # SQLite records at head: read without building the ORM
    if rows is None:
        from edgefleet.api import applications

        rows = applications.list_applications()
    if json_out:
        print_json(rows)
        return
    print_table("applications", ["name", "kind", "versions", "latest published"],
                [(a["name"], a["versions"][-1]["kind"] if a["versions"] else "",
                  ", ".join(v["version"] for v in a["versions"]), a["latest_published"])
                 for a in rows])


@app_app.command("show")
@handle_errors
def show(name: str, json_out: bool = typer.Option(False, "--json", help="print JSON")) -> None:
    """Show an application and its versions."""
    from edgefleet.record_reads import application_views

    found = application_views(name)  # without the ORM where it can (SQLite records at head)
    if found is None:
        from edgefleet.api import applications

        found = [applications.show_application(name)]  # or the error that says why
    data = found[0]
    if json_out:
        print_json(data)
        return
    print_table(f"application {name}", ["version", "kind", "image", "published", "privileged",
                                        "urls"],
                [(v["version"], v["kind"], v["image"] or "(compose file)",
                  v["published_at"] or "no", _allowance(v),
                  escape(" ".join(f"{k}={t}" for k, t in (v.get("urls") or {}).items())))
                 for v in data["versions"]])
    rows = [(v["version"], p["name"], _default(p), "yes" if p["required"] else "no",
             p["description"] or p["message"] or "", "yes" if p["sensitive"] else "no")
            for v in data["versions"] for p in v.get("parameters") or []]
    if rows:
        print_table(f"parameters of {name}", ["version", "name", "default", "required",
                                              "description", "sensitive"], rows)
    bundled = [(v["version"], escape(f), str(info["bytes"]), info["sha256"])
               for v in data["versions"] for f, info in (v.get("files") or {}).items()]
    if bundled:
        print_table(f"files of {name}", ["version", "name", "bytes", "sha256"], bundled)


def _default(param: dict[str, Any]) -> str:
    if param["default"] is None:
        return "(none)"
    return str(param["default"]) if param["sensitive"] else repr(param["default"])


def _allowance(version: dict[str, Any]) -> str:
    """The version's --allow-privileged, with what its file asks for."""
    if not version.get("allow_privileged"):
        return "no"
    asked = version.get("privileges") or []
    return "allowed: " + "; ".join(map(str, asked)) if asked else "allowed (none used)"


def _warn_privileges(privileges: list[str]) -> None:
    if privileges:
        console.print(f"[bold yellow]warning:[/] created with --allow-privileged; its containers "
                      f"get host-level privileges: {escape('; '.join(privileges))}",
                      highlight=False)


@app_app.command("delete")
@handle_errors
def delete(name: str = typer.Argument(..., help="application name")) -> None:
    """Forget an application and all its versions (refused while deployments run it).
    Images stay in their registry. Recreate it with `edgefleet app create` when its image
    references changed, e.g. after the lab's registry moved to another port.
    """
    from edgefleet.api import applications

    count = applications.delete_application(name)
    console.print(f"application {name} deleted ({count} version(s))")
