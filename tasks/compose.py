"""Compose and swarm-stack applications, applied with the official binaries.

We render the file (adding our labels) and let compose do interpolation, ordering,
health waiting and recreation. The rendered file lives in the records (``applied_spec``):
each call writes it into a temp dir of its own and removes it after, so any machine can
stop, read logs of or roll back what another machine applied (a worker's disk is scratch).
"""

from __future__ import annotations

import json
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import Any

import yaml
from prefect import get_run_logger, task
from prefect.cache_policies import NONE

from edgefleet import bundled_files, compose_cli, parameter_secrets
from edgefleet import labels as L
from edgefleet import parameters as P
from edgefleet.edge_calls import on_edge
from edgefleet.errors import DeploymentFailed, InvalidInput
from edgefleet.models.connections import EngineConnection
from edgefleet.models.documents import load_yaml
from edgefleet.models.plans import DeployPlan, RenderedSpec
from edgefleet.models.privileges import described, host_privileges
from edgefleet.tasks.records import cached_model
from edgefleet.tasks.retry import unless_final

# Compose resolves a vendor's relative paths against the project directory. One fixed
# directory per project, the same on every machine, keeps the resolved model (and so each
# service's config hash) independent of where a flow ran.
PROJECTS = PurePosixPath("/var/lib/edgefleet/projects")


@contextmanager
def scratch_file(name: str, text: str) -> Iterator[Path]:
    """The file a CLI needs, written from the record into a fresh temp dir, removed after."""
    with tempfile.TemporaryDirectory(prefix="edgefleet-") as folder:
        path = Path(folder) / name
        path.write_text(text)
        yield path


def project_args(project: str) -> tuple[str, str]:
    return ("--project-directory", str(PROJECTS / project))


def merge_labels(service: dict[str, Any], extra: dict[str, str], key: str = "labels") -> None:
    """Add labels to a service mapping; compose accepts a list or a mapping of labels."""
    current = service.get(key) or {}
    if isinstance(current, list):
        current = dict(item.split("=", 1) if "=" in item else (item, "") for item in current)
    service[key] = {**current, **extra}


def render_services(
    model: dict[str, Any],
    plan: DeployPlan,
    digests: dict[str, str | None],
    *,
    stack: bool,
    kept_versions: dict[str, str] | None = None,
    source: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The file to apply: ``source`` (default: the resolved model) with images pinned by
    digest and our labels on every service (and, for a stack, on its swarm service).

    Services in ``kept_versions`` keep the version label they were created with, so compose
    sees an identical config and leaves their containers alone.
    """
    rendered = json.loads(json.dumps(source if source is not None else model))
    for name, service in rendered["services"].items():
        spec = L.hashed_spec(model, name)
        image = str(model["services"][name]["image"])
        version = (kept_versions or {}).get(name, plan.version)
        labels = L.service_labels(
            deployment_id=plan.deployment_id, application=plan.application, version=version,
            service=name, spec=spec, digest=digests.get(image), image=image,
        )
        service["image"] = L.pinned(image, digests.get(image))
        merge_labels(service, labels)
        if stack:
            merge_labels(service.setdefault("deploy", {}), labels)
    return rendered


def source_key(plan: DeployPlan) -> str:
    """What compose's model of a file depends on: the file, the environment, the project."""
    source = {"compose": plan.compose, "env": plan.env, "project": plan.project,
              "directory": str(PROJECTS / plan.project)}
    if plan.files:  # bundled files change the model (environment, config contents)
        source["files"] = plan.files
    return L.config_hash(source)


@contextmanager
def source_files(plan: DeployPlan) -> Iterator[tuple[Path, tuple[Path, ...]]]:
    """The vendor's file for ``config``, and with bundled files the compose file that sends
    them along (``bundled_files.override``), the files written in a folder of their own."""
    assert plan.compose is not None
    with tempfile.TemporaryDirectory(prefix="edgefleet-") as folder:
        path = Path(folder) / "compose.yaml"
        path.write_text(plan.compose)
        text = None
        if plan.files:
            beside = Path(folder) / "files"
            beside.mkdir()
            for name, content in plan.files.items():
                (beside / bundled_files.check_name(name)).write_text(content)
            text = bundled_files.override(load_yaml(plan.compose, what="compose file"),
                                          plan.files, folder=str(beside))
        if text is None:
            yield path, ()
            return
        extra = Path(folder) / "bundled-files.yaml"
        extra.write_text(text)
        yield path, (extra,)


@task(name="resolve-compose", retries=1, cache_policy=NONE, retry_condition_fn=unless_final,
      task_run_name="resolve compose of {plan.project}")
def resolve_compose(plan: DeployPlan) -> dict[str, Any]:
    """The compose model after compose's own interpolation and validation (``config``).

    A model resolved before for this deployment (same file, environment and project) is
    read from its applied spec: a redeploy or a forced update does not run ``config`` again.
    Host-level privileges are checked again here, where variables have their values: a
    deployment's environment cannot turn ``network_mode: ${MODE}`` into ``host`` unless the
    version allows it.
    """
    assert plan.compose is not None
    model = cached_model(plan.deployment_id, source_key(plan))
    if model is None:
        try:
            with source_files(plan) as (source, overrides):
                proc = compose_cli.compose(plan.edge, plan.project, source,
                                           *project_args(plan.project), "config", "--format",
                                           "json", env=plan.env, timeout=60,
                                           overrides=overrides)
            if not proc.stdout.strip():  # a launcher that dropped compose's exit status
                raise compose_cli.ComposeError(
                    compose_cli.compose_words(proc.stderr) or "compose config printed nothing")
        except compose_cli.ComposeError as exc:
            raise InvalidInput(f"compose refused {plan.application} {plan.version}: {exc}; "
                               "nothing was deployed") from exc
        model = json.loads(proc.stdout)
    found = host_privileges(model)
    if found and not plan.allow_privileged:
        raise InvalidInput(
            f"{plan.application} {plan.version} asks for host-level privileges once its "
            f"variables are set ({described(found)}) and was not created with "
            "--allow-privileged: nothing was deployed")
    return model


def service_images(model: dict[str, Any]) -> dict[str, str]:
    return {name: str(svc["image"]) for name, svc in model["services"].items()}


def render_compose(plan: DeployPlan, model: dict[str, Any], digests: dict[str, str | None],
                   kept_versions: dict[str, str] | None = None) -> RenderedSpec:
    """The compose file to apply (JSON), as the records keep it."""
    rendered = render_services(model, plan, digests, stack=False, kept_versions=kept_versions)
    text = P.with_placeholders(json.dumps(rendered, indent=2), plan.env)  # values: at `up`
    return RenderedSpec(version=plan.version, kind=plan.kind, text=text,
                        env=plan.env, digests=digests, source_key=source_key(plan))


def render_stack(plan: DeployPlan, model: dict[str, Any], digests: dict[str, str | None],
                 kept_versions: dict[str, str] | None = None) -> RenderedSpec:
    """The vendor's stack file with our labels and pinned images (the stack CLI interpolates
    the rest from ``env``), as the records keep it."""
    assert plan.compose is not None
    rendered = render_services(model, plan, digests, stack=True, kept_versions=kept_versions,
                               source=yaml.safe_load(plan.compose))
    return RenderedSpec(version=plan.version, kind=plan.kind,
                        text=yaml.safe_dump(rendered, sort_keys=False), env=plan.env,
                        digests=digests, source_key=source_key(plan))


# compose's words when a container, not the request, failed: `up` again cannot help
CONTAINERS_FAILED = re.compile(r"unhealthy|exited \(|dependency failed to start|is restarting")


def unless_containers_failed(task: Any, task_run: Any, state: Any) -> bool:
    """Retry an ``up`` that compose could not carry out, not one whose containers failed."""
    try:
        state.result()
    except DeploymentFailed:
        return False
    except Exception:
        return unless_final(task, task_run, state)
    return True


@task(name="compose-up", retries=1, retry_delay_seconds=2, cache_policy=NONE,
      retry_condition_fn=unless_containers_failed,
      task_run_name="compose up {project} on {conn.name} at {spec.version}")
@on_edge
def compose_up(conn: EngineConnection, project: str, spec: RenderedSpec, timeout: float) -> None:
    """``up -d --wait``: returns once every service runs and is healthy, else fails.

    Compose recreates only the services whose rendered config changed.
    """
    _up(conn, project, spec, timeout)


@task(name="compose-restore", retries=1, retry_delay_seconds=2, cache_policy=NONE,
      retry_condition_fn=unless_containers_failed,
      task_run_name="compose restore {project} on {conn.name} to {spec.version}")
@on_edge
def compose_restore(conn: EngineConnection, project: str, spec: RenderedSpec,
                    timeout: float) -> None:
    """Re-apply a previous spec from the records (images pinned by digest: the exact old
    state), whichever machine applied it."""
    _up(conn, project, spec, timeout)


def without_healthcheck(spec_text: str) -> tuple[list[str], list[str]]:
    """The spec's services whose healthcheck is switched off (``disable: true`` or test
    ``NONE``), and the others. Compose's ``--wait`` refuses the former ("has no healthcheck
    configured", compose 2.40) although they are valid: they are waited for as running."""
    try:
        services = json.loads(spec_text).get("services") or {}
    except (ValueError, AttributeError):
        return [], []
    off: list[str] = []
    on: list[str] = []
    for name, service in sorted(services.items()):
        check = (service or {}).get("healthcheck") or {}
        test = check.get("test")
        disabled = check.get("disable") is True or test == "NONE" or (
            isinstance(test, list) and test[:1] == ["NONE"])
        (off if disabled else on).append(name)
    return off, on


def _up(conn: EngineConnection, project: str, spec: RenderedSpec, timeout: float) -> None:
    wait = ["--wait", "--wait-timeout", str(int(timeout))]
    off, on = without_healthcheck(spec.text)
    env = parameter_secrets.resolved(spec.env)
    try:
        with scratch_file("compose.json", spec.text) as path:
            if not off:
                compose_cli.compose(
                    conn, project, path, *project_args(project), "up", "-d", *wait,
                    "--pull", "never", "--remove-orphans", env=env, timeout=timeout + 60)
                return
            # every service up (those without a healthcheck run once started), then the
            # others waited for without touching anything again
            compose_cli.compose(
                conn, project, path, *project_args(project), "up", "-d", "--pull", "never",
                "--remove-orphans", env=env, timeout=timeout + 60)
            if on:
                compose_cli.compose(
                    conn, project, path, *project_args(project), "up", "-d", *wait,
                    "--pull", "never", "--no-recreate", "--no-deps", *on, env=env,
                    timeout=timeout + 60)
    except compose_cli.ComposeError as exc:
        if CONTAINERS_FAILED.search(str(exc)):
            raise DeploymentFailed(f"compose up failed: {exc}") from exc
        raise compose_cli.ComposeError(f"compose up failed: {exc}") from exc


@task(name="compose-down", retries=2, retry_delay_seconds=2, cache_policy=NONE,
      task_run_name="compose down {project} on {conn.name}")
@on_edge
def compose_down(conn: EngineConnection, project: str, spec: RenderedSpec | None,
                 remove_volumes: bool = False) -> None:
    """``down`` with the spec last applied (from the records)."""
    if spec is None:
        get_run_logger().info("no applied compose spec recorded for %s; nothing to bring down",
                              project)
        return
    args = ["down", "--remove-orphans", "--timeout", "10"] + (["--volumes"] if remove_volumes
                                                                else [])
    with scratch_file("compose.json", spec.text) as path:
        compose_cli.compose(conn, project, path, *project_args(project), *args, env=spec.env,
                            timeout=120)


@task(name="compose-logs-tail", cache_policy=NONE)
@on_edge
def compose_logs_tail(conn: EngineConnection, project: str, spec: RenderedSpec | None) -> str:
    if spec is None:
        return "(logs unavailable: no applied compose spec recorded)"
    try:
        with scratch_file("compose.json", spec.text) as path:
            proc = compose_cli.compose(conn, project, path, *project_args(project), "logs",
                                       "--tail", "10", "--no-color", env=spec.env, timeout=30)
    except compose_cli.ComposeError as exc:
        return f"(logs unavailable: {exc})"
    return proc.stdout.strip()


@task(name="stack-deploy", retries=1, retry_delay_seconds=2, cache_policy=NONE,
      task_run_name="stack deploy {project} on {conn.name} at {spec.version}")
@on_edge
def stack_deploy(conn: EngineConnection, project: str, spec: RenderedSpec) -> None:
    """``docker stack deploy`` of a rendered stack file from the records."""
    _stack_deploy(conn, project, spec)


@task(name="stack-restore", retries=1, retry_delay_seconds=2, cache_policy=NONE,
      task_run_name="stack restore {project} on {conn.name} to {spec.version}")
@on_edge
def stack_restore(conn: EngineConnection, project: str, spec: RenderedSpec) -> None:
    """Re-deploy a previous stack spec (pinned digests) with its own environment."""
    _stack_deploy(conn, project, spec)


def _stack_deploy(conn: EngineConnection, project: str, spec: RenderedSpec) -> None:
    with scratch_file("stack.yaml", spec.text) as path:
        compose_cli.stack(conn, "deploy", "--compose-file", str(path), "--prune",
                          "--resolve-image", "never", project,
                          env=parameter_secrets.resolved(spec.env), timeout=120)


@task(name="stack-remove", retries=2, retry_delay_seconds=2, cache_policy=NONE,
      task_run_name="stack rm {project} on {conn.name}")
@on_edge
def stack_remove(conn: EngineConnection, project: str) -> None:
    compose_cli.stack(conn, "rm", project, timeout=60)
