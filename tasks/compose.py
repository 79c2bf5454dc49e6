"""Compose and swarm-stack applications, applied with the official binaries.

We render the file (adding our labels) and let compose do interpolation, ordering,
health waiting and recreation.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from prefect import get_run_logger, task
from prefect.cache_policies import NONE

from edgefleet import compose_cli
from edgefleet import labels as L
from edgefleet.errors import DeploymentFailed, InvalidInput
from edgefleet.models.connections import EngineConnection
from edgefleet.models.plans import DeployPlan
from edgefleet.models.privileges import described, host_privileges
from edgefleet.settings import get_settings
from edgefleet.tasks.retry import unless_final


def work_dir(deployment_id: str) -> Path:
    """Where a deployment's rendered files live (so stop and logs can use them again)."""
    path = get_settings().home / "deployments" / deployment_id
    path.mkdir(parents=True, exist_ok=True)
    return path


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
        spec = model["services"][name]
        image = str(spec["image"])
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


@task(name="resolve-compose", retries=1, cache_policy=NONE, retry_condition_fn=unless_final,
      task_run_name="resolve compose of {plan.project}")
def resolve_compose(plan: DeployPlan) -> dict[str, Any]:
    """The compose model after compose's own interpolation and validation (``config``).

    It depends only on the file, the environment and the project, so it is kept per hash of
    those: a redeploy or a forced update does not run ``config`` again. Host-level privileges
    are checked again here, where variables have their values: a deployment's environment
    cannot turn ``network_mode: ${MODE}`` into ``host`` unless the version allows it.
    """
    assert plan.compose is not None
    folder = work_dir(plan.deployment_id)
    key = L.config_hash({"compose": plan.compose, "env": plan.env, "project": plan.project})
    cached = folder / f"resolved-{key}.json"
    if cached.exists():
        model: dict[str, Any] = json.loads(cached.read_text())
    else:
        source = folder / "source.yaml"
        source.write_text(plan.compose)
        proc = compose_cli.compose(plan.edge, plan.project, source, "config", "--format",
                                   "json", env=plan.env, timeout=60)
        model = json.loads(proc.stdout)
        cached.write_text(proc.stdout)
    found = host_privileges(model)
    if found and not plan.allow_privileged:
        raise InvalidInput(
            f"{plan.application} {plan.version} asks for host-level privileges once its "
            f"variables are set ({described(found)}) and was not created with "
            "--allow-privileged: nothing was deployed")
    return model


def service_images(model: dict[str, Any]) -> dict[str, str]:
    return {name: str(svc["image"]) for name, svc in model["services"].items()}


def _keep_previous(path: Path) -> None:
    """The file applied last stays beside the new one: rollback re-applies it exactly."""
    if path.exists():
        path.replace(path.with_name(path.stem + ".previous" + path.suffix))


@task(name="compose-up", retries=1, retry_delay_seconds=2, cache_policy=NONE,
      task_run_name="compose up {plan.project} on {plan.edge.name}")
def compose_up(plan: DeployPlan, model: dict[str, Any], digests: dict[str, str | None],
               timeout: float, kept_versions: dict[str, str] | None = None) -> None:
    """``up -d --wait``: returns once every service runs and is healthy, else fails.

    Compose recreates only the services whose rendered config changed.
    """
    path = work_dir(plan.deployment_id) / "compose.yaml"
    rendered = render_services(model, plan, digests, stack=False, kept_versions=kept_versions)
    text = json.dumps(rendered, indent=2)
    if not (path.exists() and path.read_text() == text):
        _keep_previous(path)
        path.write_text(text)
    _up(plan.edge, plan.project, path, timeout, plan.env)


def _up(conn: EngineConnection, project: str, path: Path, timeout: float,
        env: dict[str, str] | None = None) -> None:
    try:
        compose_cli.compose(
            conn, project, path, "up", "-d", "--wait", "--wait-timeout", str(int(timeout)),
            "--pull", "never", "--remove-orphans", env=env, timeout=timeout + 60,
        )
    except compose_cli.ComposeError as exc:
        raise DeploymentFailed(f"compose up failed: {exc}") from exc


@task(name="compose-restore", retries=1, retry_delay_seconds=2, cache_policy=NONE,
      task_run_name="compose restore {project} on {conn.name}")
def compose_restore(conn: EngineConnection, project: str, deployment_id: str,
                    timeout: float) -> None:
    """Re-apply the previous rendered file (images pinned by digest: the exact old state)."""
    folder = work_dir(deployment_id)
    previous = folder / "compose.previous.yaml"
    if not previous.exists():
        raise DeploymentFailed("no previous compose file to roll back to")
    previous.replace(folder / "compose.yaml")
    _up(conn, project, folder / "compose.yaml", timeout)


@task(name="compose-down", retries=2, retry_delay_seconds=2, cache_policy=NONE,
      task_run_name="compose down {project} on {conn.name}")
def compose_down(conn: EngineConnection, project: str, deployment_id: str,
                 remove_volumes: bool = False) -> None:
    path = work_dir(deployment_id) / "compose.yaml"
    if not path.exists():
        get_run_logger().info("no rendered compose file for %s; nothing to bring down", project)
        return
    args = ["down", "--remove-orphans", "--timeout", "10"] + (["--volumes"] if remove_volumes
                                                                else [])
    compose_cli.compose(conn, project, path, *args, timeout=120)


@task(name="compose-logs-tail", cache_policy=NONE)
def compose_logs_tail(conn: EngineConnection, project: str, deployment_id: str) -> str:
    path = work_dir(deployment_id) / "compose.yaml"
    try:
        proc = compose_cli.compose(conn, project, path, "logs", "--tail", "10", "--no-color",
                                   timeout=30)
    except compose_cli.ComposeError as exc:
        return f"(logs unavailable: {exc})"
    return proc.stdout.strip()


@task(name="stack-deploy", retries=1, retry_delay_seconds=2, cache_policy=NONE,
      task_run_name="stack deploy {plan.project} on {plan.edge.name}")
def stack_deploy(plan: DeployPlan, model: dict[str, Any], digests: dict[str, str | None],
                 kept_versions: dict[str, str] | None = None) -> None:
    """``docker stack deploy`` of the vendor's file with our labels and pinned images
    (the stack CLI interpolates the rest from the environment we pass)."""
    assert plan.compose is not None
    rendered = render_services(model, plan, digests, stack=True, kept_versions=kept_versions,
                               source=yaml.safe_load(plan.compose))
    path = work_dir(plan.deployment_id) / "stack.yaml"
    _keep_previous(path)
    path.write_text(yaml.safe_dump(rendered, sort_keys=False))
    _stack_deploy(plan.edge, plan.project, path, plan.env)


def _stack_deploy(conn: EngineConnection, project: str, path: Path, env: dict[str, str]) -> None:
    compose_cli.stack(conn, "deploy", "--compose-file", str(path), "--prune",
                      "--resolve-image", "never", project, env=env, timeout=120)


@task(name="stack-restore", retries=1, retry_delay_seconds=2, cache_policy=NONE,
      task_run_name="stack restore {project} on {conn.name}")
def stack_restore(conn: EngineConnection, project: str, deployment_id: str,
                  env: dict[str, str]) -> None:
    """Re-deploy the previous stack file (pinned digests) with the previous environment."""
    folder = work_dir(deployment_id)
    previous = folder / "stack.previous.yaml"
    if not previous.exists():
        raise DeploymentFailed("no previous stack file to roll back to")
    previous.replace(folder / "stack.yaml")
    _stack_deploy(conn, project, folder / "stack.yaml", env)


@task(name="stack-remove", retries=2, retry_delay_seconds=2, cache_policy=NONE,
      task_run_name="stack rm {project} on {conn.name}")
def stack_remove(conn: EngineConnection, project: str) -> None:
    compose_cli.stack(conn, "rm", project, timeout=60)
