"""Tasks of the update workflow: swap an image-kind container, soak, report, lock."""

from __future__ import annotations

import contextlib
import time

import docker.errors
from prefect import get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NONE

from edgefleet import parameter_secrets
from edgefleet.edge_calls import on_edge
from edgefleet.engine import engine_client, observe
from edgefleet.errors import DeploymentFailed
from edgefleet.models.connections import EngineConnection
from edgefleet.models.plans import ObservedContainer
from edgefleet.tasks.containers import describe_failure, port_bindings
from edgefleet.tasks.retry import unless_final

NEXT = "-next"


@task(name="replace-container", retries=0, cache_policy=NONE,
      task_run_name="replace {name} on {conn.name}")
@on_edge
def replace_container(conn: EngineConnection, *, name: str, image: str, env: dict[str, str],
                      ports: list[str], labels: dict[str, str]) -> str:
    """Create the new container as ``<name>-next`` (image already pulled), stop the old one,
    start the new one. The old container is kept, stopped, until the update is confirmed."""
    with engine_client(conn) as client:
        old = client.containers.get(name)
        network = next(iter(old.attrs["NetworkSettings"]["Networks"]), None)
        with contextlib.suppress(docker.errors.NotFound):
            client.containers.get(name + NEXT).remove(force=True)
        new = client.containers.create(
            image, name=name + NEXT, environment=parameter_secrets.resolved(env), labels=labels,
            network=network,
            ports=port_bindings(ports), detach=True,
            restart_policy={"Name": "unless-stopped"},
        )
        old.stop(timeout=10)
        new.start()
        return str(new.id)[:12]


@task(name="confirm-replacement", retries=2, retry_delay_seconds=2, cache_policy=NONE,
      task_run_name="confirm {name} on {conn.name}")
@on_edge
def confirm_replacement(conn: EngineConnection, name: str) -> None:
    """The new container passed: remove the old one and give the new one its name."""
    with engine_client(conn) as client:
        client.containers.get(name).remove(force=True)
        client.containers.get(name + NEXT).rename(name)


@task(name="restore-container", retries=2, retry_delay_seconds=2, cache_policy=NONE,
      task_run_name="restore {name} on {conn.name}")
@on_edge
def restore_container(conn: EngineConnection, name: str) -> None:
    """Roll back an image-kind update: drop the new container, start the old one again."""
    with engine_client(conn) as client:
        with contextlib.suppress(docker.errors.NotFound):
            client.containers.get(name + NEXT).remove(force=True)
        client.containers.get(name).start()


@task(name="soak-containers", cache_policy=NONE, retry_condition_fn=unless_final,
      task_run_name="soak {deployment_id} for {seconds}s")
@on_edge
def soak_containers(conn: EngineConnection, deployment_id: str, services: list[str],
                    seconds: float, exclude: list[str] | None = None) -> None:
    """Watch the updated services for ``seconds``: running, healthy where checked, no restart.

    ``exclude`` names containers to ignore (the stopped old container kept for rollback).
    """
    logger = get_run_logger()
    skip = set(exclude or [])
    deadline = time.monotonic() + seconds
    with engine_client(conn) as client:
        first: dict[str, int] = {}
        while True:
            watched = [o for o in observe(client, conn, deployment_id)
                       if o.service in services and o.name not in skip]
            if not watched:
                raise DeploymentFailed("the updated containers disappeared during the soak")
            for obs in watched:
                restarts = first.setdefault(slot_of(obs), obs.restart_count)
                if (obs.state != "running" or obs.health == "unhealthy"
                        or obs.restart_count > restarts):
                    raise DeploymentFailed("during the soak period: " +
                                           describe_failure(client, obs))
            if time.monotonic() >= deadline:
                not_ready = [o for o in watched if not o.ready]
                if not_ready:
                    raise DeploymentFailed("after the soak period: " +
                                           describe_failure(client, not_ready[0], seconds))
                logger.info("services %s held for %.0fs", ", ".join(services), seconds)
                return
            time.sleep(1)


def slot_of(obs: ObservedContainer) -> str:
    """What a restart count belongs to: a container, or a swarm slot (a new task each time)."""
    task_name = obs.labels.get("com.docker.swarm.task.name", "")
    return task_name.rsplit(".", 1)[0] if task_name else obs.container_id


@task(name="publish-update-report", retries=2, retry_delay_seconds=1, cache_policy=NONE)
def publish_update_report(deployment_id: str, rows: list[dict[str, str]], summary: str) -> str:
    """One table artifact per update run: per container, digests before/after and outcome."""
    key = f"update-{deployment_id[:12]}"
    create_table_artifact(table=rows, key=key, description=summary)
    return key
