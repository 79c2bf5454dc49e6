"""Containers and networks of a deployment on an edge, found by their labels."""

from __future__ import annotations

import json
import time
from typing import Any

import docker.errors
from docker.utils.ports import build_port_bindings
from prefect import get_run_logger, task
from prefect.cache_policies import NONE

from edgefleet import labels as L
from edgefleet import parameter_secrets
from edgefleet.edge_calls import on_edge
from edgefleet.engine import engine_client, observe, swarm_waiting
from edgefleet.errors import DeploymentFailed
from edgefleet.models.connections import EngineConnection
from edgefleet.models.plans import DeployPlan, ObservedContainer, RenderedSpec


def port_bindings(ports: list[str]) -> dict[str, list[Any]]:
    """``[HOST_IP:][HOST:]CONTAINER[/proto]`` specs → the SDK's ``ports=`` mapping, parsed by
    docker's own parser (``docker run -p`` syntax; a container port may be published twice).
    """
    return dict(build_port_bindings(ports))


@task(name="create-network", retries=2, retry_delay_seconds=2, cache_policy=NONE,
      task_run_name="network {name} on {conn.name}")
@on_edge
def create_network(conn: EngineConnection, name: str, labels: dict[str, str]) -> str:
    """The deployment's own bridge network (created once; reused on retry)."""
    with engine_client(conn) as client:
        existing = client.networks.list(names=[name])
        if existing:
            return str(existing[0].id)
        return str(client.networks.create(name, driver="bridge", labels=labels).id)


@task(name="start-container", retries=1, retry_delay_seconds=2, cache_policy=NONE,
      task_run_name="start {name} on {conn.name}")
@on_edge
def start_container(
    conn: EngineConnection,
    *,
    name: str,
    image: str,
    env: dict[str, str],
    ports: list[str],
    network: str,
    labels: dict[str, str],
) -> str:
    """Create and start one container; a leftover of the same name from a failed try goes."""
    with engine_client(conn) as client:
        try:
            old = client.containers.get(name)
        except docker.errors.NotFound:
            pass
        else:
            if old.labels.get(L.DEPLOYMENT) != labels[L.DEPLOYMENT]:
                raise DeploymentFailed(
                    f"a container named {name} that edgefleet did not create exists on edge "
                    f"{conn.name}; remove or rename it"
                )
            old.remove(force=True)
        container = client.containers.run(
            image, name=name, environment=parameter_secrets.resolved(env),
            ports=port_bindings(ports), labels=labels, network=network, detach=True,
            restart_policy={"Name": "unless-stopped"},
        )
        return str(container.id)[:12]


@task(name="wait-for-containers", cache_policy=NONE,
      task_run_name="wait for {deployment_id} on {conn.name}")
@on_edge
def wait_for_containers(
    conn: EngineConnection, deployment_id: str, timeout: float, expected: int = 1,
    exclude: list[str] | None = None,
) -> list[ObservedContainer]:
    """Wait until every container runs (healthy where a healthcheck exists).

    Fails early on a container that exited or restarts, with its last log lines. Containers
    named in ``exclude`` (an old one kept stopped for rollback) are not watched.
    """
    logger = get_run_logger()
    deadline = time.monotonic() + timeout
    skip = set(exclude or [])
    with engine_client(conn) as client:
        while True:
            seen = [o for o in observe(client, conn, deployment_id) if o.name not in skip]
            bad = [o for o in seen if o.state in ("exited", "dead") or o.restart_count > 0
                   or o.health == "unhealthy"]
            if bad:
                raise DeploymentFailed(describe_failure(client, bad[0]))
            if len(seen) >= expected and all(o.ready for o in seen):
                logger.info("all %d container(s) ready on %s", len(seen), conn.name)
                return seen
            if time.monotonic() > deadline:
                waiting = [o for o in seen if not o.ready]
                if waiting:
                    raise DeploymentFailed(describe_failure(client, waiting[0], timeout=timeout))
                raise DeploymentFailed(missing_containers(client, deployment_id, len(seen),
                                                          expected, timeout))
            time.sleep(0.5)


def missing_containers(client: Any, deployment_id: str, seen: int, expected: int,
                       timeout: float) -> str:
    """What did not appear, and swarm's own reason where it says one."""
    what = (f"no container of the deployment appeared in {timeout:.0f}s" if not seen else
            f"{seen} of {expected} containers of the deployment appeared in {timeout:.0f}s")
    reasons = swarm_waiting(client, deployment_id)
    return "; ".join([what, *reasons])


def describe_failure(client: Any, bad: ObservedContainer, timeout: float | None = None) -> str:
    """A reason a person can act on: what went wrong, then the last log lines."""
    if bad.state in ("exited", "dead") or bad.restart_count > 0:
        what = (f"service {bad.service} exited with code {bad.exit_code}"
                if bad.state in ("exited", "dead")
                else f"service {bad.service} is crash-looping ({bad.restart_count} restarts, "
                     f"last exit code {bad.exit_code})")
    elif bad.health in ("unhealthy", "starting"):
        what = f"service {bad.service} did not become healthy (health: {bad.health})"
        if timeout is not None:
            what += f" within {timeout:.0f}s"
    else:
        what = f"service {bad.service} is {bad.state}"
        if timeout is not None:
            what += f" after {timeout:.0f}s"
    try:
        raw = client.api.logs(bad.container_id, tail=10, stdout=True, stderr=True)
        tail = raw.decode(errors="replace").strip()
    except docker.errors.DockerException:
        tail = ""
    return f"{what}; last log lines:\n{tail}" if tail else f"{what} (no log output)"


@task(name="observe-containers", retries=2, retry_delay_seconds=2, cache_policy=NONE,
      task_run_name="observe {deployment_id} on {conn.name}")
@on_edge
def observe_containers(conn: EngineConnection, deployment_id: str) -> list[ObservedContainer]:
    with engine_client(conn) as client:
        return observe(client, conn, deployment_id)


@task(name="remove-containers", retries=2, retry_delay_seconds=2, cache_policy=NONE,
      task_run_name="remove {deployment_id} from {conn.name}")
@on_edge
def remove_containers(conn: EngineConnection, deployment_id: str, remove_volumes: bool = False
                      ) -> int:
    """Remove every container and network labelled with the deployment (volumes if asked)."""
    with engine_client(conn) as client:
        found = client.containers.list(all=True, filters=L.deployment_filter(deployment_id))
        for container in found:
            container.remove(force=True, v=remove_volumes)
        for network in client.networks.list(filters=L.deployment_filter(deployment_id)):
            network.remove()
        if remove_volumes:
            for volume in client.volumes.list(filters=L.deployment_filter(deployment_id)):
                volume.remove(force=True)
        return len(found)


def container_spec(plan: DeployPlan, digest: str | None) -> RenderedSpec:
    """An image-kind deployment's container as the records keep it (image pinned by digest,
    our labels): the arguments of start_container / replace_container."""
    assert plan.image is not None
    labels = L.service_labels(deployment_id=plan.deployment_id, application=plan.application,
                              version=plan.version, service=plan.application,
                              spec=plan.image_spec(), digest=digest, image=plan.image)
    container = {"name": plan.container_name, "image": L.pinned(plan.image, digest),
                 "env": plan.env, "ports": plan.ports, "labels": labels}
    return RenderedSpec(version=plan.version, kind=plan.kind,
                        text=json.dumps(container, indent=2, sort_keys=True), env=plan.env,
                        digests={plan.image: digest})
