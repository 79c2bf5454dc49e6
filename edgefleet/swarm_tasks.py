"""Which containers of a swarm stack stand for its services now (pure: task data in, ids out).

Swarm keeps the tasks it replaced in its task history, as exited containers: a task that
swarm shut down on purpose (an update, a rollback, a scale-down) is history, not a crash.
Per service and slot only the tasks of the service's *current* spec, created since that
spec was rolled out, count: the newest one with a container stands for the slot, and the
tasks before it that ended on their own (failed, rejected, or complete: a long-running
service that exits has stopped, whatever its code) are its restarts. A slot whose current
spec has no container yet is not shown: swarm is still on its way.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

ENDED_ON_ITS_OWN = frozenset({"failed", "rejected", "complete"})
SHUT_DOWN_BY_SWARM = frozenset({"shutdown", "remove", "orphaned"})
SWARM_TASK_LABEL = "com.docker.swarm.task.id"


@dataclass(frozen=True)
class CurrentTask:
    """The container that stands for one slot of a service now, and its restarts."""

    container_id: str
    restarts: int
    state: str


def moment(stamp: Any) -> str:
    """An RFC 3339 time of the Engine API made comparable as text (nanoseconds padded)."""
    text = str(stamp or "").rstrip("Z")
    whole, _, fraction = text.partition(".")
    return f"{whole}.{fraction[:9].ljust(9, '0')}"


def _spec_key(container_spec: Mapping[str, Any] | None, hash_label: str) -> tuple[str, str]:
    spec = container_spec or {}
    return str(spec.get("Image", "")), str((spec.get("Labels") or {}).get(hash_label, ""))


def _container(task: Mapping[str, Any]) -> str | None:
    status = task.get("Status") or {}
    container = (status.get("ContainerStatus") or {}).get("ContainerID")
    return str(container) if container else None


def current_tasks(services: Iterable[Mapping[str, Any]], tasks: Iterable[Mapping[str, Any]],
                  hash_label: str) -> dict[str, CurrentTask]:
    """Full container id → the slot it stands for now.

    ``services`` and ``tasks`` are the Engine API's service and task objects of one stack
    (task history included); ``hash_label`` names the config-hash label of our specs.
    """
    specs: dict[str, tuple[tuple[str, str], str]] = {}
    for service in services:
        template = (service.get("Spec") or {}).get("TaskTemplate") or {}
        since = (service.get("UpdateStatus") or {}).get("StartedAt") or service.get("CreatedAt")
        specs[str(service.get("ID"))] = (_spec_key(template.get("ContainerSpec"), hash_label),
                                         moment(since))
    slots: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    for task in tasks:
        service_id = str(task.get("ServiceID", ""))
        if service_id not in specs:
            continue
        key, since = specs[service_id]
        if _spec_key((task.get("Spec") or {}).get("ContainerSpec"), hash_label) != key:
            continue  # a task of an older spec (or of a newer one that was rolled back)
        if (task.get("Status") or {}).get("State") in SHUT_DOWN_BY_SWARM:
            continue  # swarm stopped it on purpose
        if moment(task.get("CreatedAt")) < since and task.get("DesiredState") != "running":
            continue  # ended before this spec was rolled out again: an earlier incarnation
        slot = str(task.get("Slot") or task.get("NodeID") or "")
        slots.setdefault((service_id, slot), []).append(task)
    found: dict[str, CurrentTask] = {}
    for history in slots.values():
        history.sort(key=lambda t: moment(t.get("CreatedAt")))
        with_container = [t for t in history if _container(t)]
        if not with_container:
            continue
        stand_in = with_container[-1]
        before = history[:history.index(stand_in)]
        restarts = sum((t.get("Status") or {}).get("State") in ENDED_ON_ITS_OWN for t in before)
        container = _container(stand_in)
        assert container is not None
        found[container] = CurrentTask(container_id=container, restarts=restarts,
                                       state=str((stand_in.get("Status") or {}).get("State")))
    return found


def waiting_reasons(services: Iterable[Mapping[str, Any]], tasks: Iterable[Mapping[str, Any]],
                    hash_label: str) -> list[str]:
    """Why a service of the current spec has no container yet, in swarm's own words (a task
    it cannot schedule, such as a host-mode port already in use, or one it rejected, such as
    an image it cannot pull): one line per service, newest task first."""
    by_service: dict[str, list[Mapping[str, Any]]] = {}
    for task in tasks:
        by_service.setdefault(str(task.get("ServiceID", "")), []).append(task)
    reasons = []
    for service in sorted(services, key=lambda s: str((s.get("Spec") or {}).get("Name", ""))):
        spec = service.get("Spec") or {}
        key = _spec_key((spec.get("TaskTemplate") or {}).get("ContainerSpec"), hash_label)
        ours = [t for t in by_service.get(str(service.get("ID")), [])
                if _spec_key((t.get("Spec") or {}).get("ContainerSpec"), hash_label) == key]
        if any(_container(t) and t.get("DesiredState") == "running" for t in ours):
            continue
        for task in sorted(ours, key=lambda t: moment(t.get("CreatedAt")), reverse=True):
            status = task.get("Status") or {}
            said = status.get("Err") or status.get("Message")
            if said:
                name = str(spec.get("Name", "?"))
                stack = str((spec.get("Labels") or {}).get("com.docker.stack.namespace", ""))
                if stack and name.startswith(f"{stack}_"):
                    name = name[len(stack) + 1:]
                reasons.append(f"service {name} is {status.get('State', '?')}: {said}")
                break
    return reasons
