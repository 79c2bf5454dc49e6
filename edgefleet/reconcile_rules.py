"""Pure rules for what a dead run or a dead engine left behind.

Two decisions, each outcome with its cause (observe → decide → execute; the flows in
``flows/reconcile.py`` observe and execute):

- :func:`run_is_gone` / :func:`settle`: a deployment held in STARTING, UPDATING or STOPPING
  by a flow run that is no longer alive is moved to a final state from what its edge really
  runs (labels): STARTED on the version running and healthy, STOPPED when a stop left
  nothing, else ERROR saying what was found.
- :func:`plan_clean_up`: containers, swarm services and networks labelled as ours whose
  deployment is deleted, STOPPED, or ERROR after a failed deploy or stop go; anything of a
  STARTED, transient or otherwise failed deployment stays.

No engine, no database, no Prefect and no hidden clock here.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import semver

from edgefleet import labels as L
from edgefleet.models.states import Action, DeploymentState

if TYPE_CHECKING:  # a pydantic model; only its fields are read here
    from edgefleet.models.plans import ObservedContainer

S = DeploymentState
TRANSIENT = frozenset({S.STARTING, S.UPDATING, S.STOPPING})
FINAL_RUN_STATES = frozenset({"COMPLETED", "FAILED", "CANCELLED", "CRASHED"})
# The suffix an image-kind update gives the new container until the update is confirmed.
NEXT = "-next"
# Flows whose failure meant to leave nothing on the edge (their clean-up may not have run).
REMOVING_FLOWS = frozenset({"deploy-application", "stop-application"})
PROJECT = re.compile(r"^ef-[0-9a-f]{12}$")
GRACE = timedelta(seconds=10)  # on top of three missed heartbeats


# ------------------------------------------------------------------ runs that died


@dataclass(frozen=True)
class RunView:
    """What Prefect says of the flow run recorded on a deployment."""

    found: bool
    state: str | None = None  # state type: SCHEDULED, PENDING, RUNNING, COMPLETED, ...
    state_name: str | None = None
    changed: datetime | None = None  # when it entered that state
    heartbeat: datetime | None = None  # its newest heartbeat event, None if it sends none
    beat_every: timedelta | None = None  # between its two newest heartbeats, when known


@dataclass(frozen=True)
class Limits:
    """``silent``: a RUNNING run that sends heartbeats is dead after this long without one.
    ``stale``: how long a deployment may stay transient while its run shows no sign of life
    (deploy timeout + soak + a margin for pulls and rollback)."""

    silent: timedelta
    stale: timedelta


def _ago(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    return f"{seconds}s" if seconds < 120 else f"{seconds // 60} min"


def run_is_gone(run: RunView | None, since: datetime, now: datetime, limits: Limits
                ) -> str | None:
    """Why the run holding a deployment transient since ``since`` is no longer alive, or
    None while it may still be working (``run`` None: no run was recorded)."""
    age = now - since
    if run is None:
        return f"no flow run was recorded and {_ago(age)} passed" if age > limits.stale else None
    if not run.found:
        return "its flow run no longer exists in Prefect"
    if run.state in FINAL_RUN_STATES:
        return f"its flow run ended {run.state_name or run.state}"
    if run.state == "RUNNING":
        if run.heartbeat is not None:
            silent = now - max(run.heartbeat, run.changed or run.heartbeat)
            # a run that beats slower than ours (a worker set otherwise) gets 3 of its beats
            allowed = max(limits.silent, 3 * (run.beat_every or timedelta()) + GRACE)
            if silent > allowed:
                return (f"its flow run is still marked RUNNING but sent no heartbeat for "
                        f"{_ago(silent)} (its process is gone)")
            return None
        if age > limits.stale:
            return (f"its flow run is still marked RUNNING, sends no heartbeat and held it "
                    f"for {_ago(age)}")
        return None
    if age > limits.stale:
        return f"its flow run is still {run.state_name or run.state} after {_ago(age)}"
    return None


@dataclass(frozen=True)
class Tidy:
    """A finishing touch on the edge that makes the records' outcome true there."""

    operation: str  # confirm: the new container takes the name; drop: remove the container
    container: str

    def describe(self) -> str:
        if self.operation == "confirm":
            return f"confirm {self.container}{NEXT} as {self.container}"
        return f"remove {self.container}"


@dataclass(frozen=True)
class Outcome:
    """What a stuck deployment becomes, and why (kept as its last error)."""

    action: Action  # STARTED, UPDATED (→ STARTED), STOPPED or FAIL (→ ERROR)
    reason: str
    version: str | None = None  # the version its containers run (on STARTED)
    tidy: tuple[Tidy, ...] = ()
    containers: tuple[str, ...] = ()  # the ids that stand for it now

    @property
    def state(self) -> DeploymentState:
        if self.action is Action.FAIL:
            return S.ERROR
        return S.STOPPED if self.action is Action.STOPPED else S.STARTED

    def render(self) -> str:
        """One line per decision, for logs and tests."""
        extra = "".join(f"; then {t.describe()}" for t in self.tidy)
        on = f" on {self.version}" if self.version else ""
        return f"{self.state.value}{on}{extra}: {self.reason}"


VERB = {S.STARTING: "starting", S.UPDATING: "updating", S.STOPPING: "stopping"}


def _shown(containers: Sequence[ObservedContainer]) -> str:
    if not containers:
        return "no container"
    parts = []
    for c in containers:
        status = c.state + (f" ({c.health})" if c.health else "")
        version = c.labels.get(L.VERSION, "?")
        parts.append(f"{c.name} {version} {status}")
    return ", ".join(parts)


def _newest(versions: Iterable[str]) -> str:
    def key(text: str) -> tuple[int, semver.Version | str]:
        try:
            return (1, semver.Version.parse(text))
        except ValueError:
            return (0, text)
    return max(versions, key=key)


def _current(observed: Sequence[ObservedContainer], container_name: str | None
             ) -> tuple[list[ObservedContainer], tuple[Tidy, ...], str | None]:
    """The containers that stand for the deployment now, and what to tidy.

    An image-kind update interrupted after the swap leaves the old container stopped and
    the new one as ``<name>-next``: whichever runs stands; the other goes (or, for a new
    container that runs, the update is confirmed). Both or neither running: unclear.
    """
    if container_name is None:
        return list(observed), (), None
    by_name = {c.name: c for c in observed}
    old, new = by_name.get(container_name), by_name.get(container_name + NEXT)
    if old is None or new is None:
        return list(observed), (), None
    others = [c for c in observed if c.name not in (container_name, container_name + NEXT)]
    if new.state == "running" and old.state != "running":
        return [new, *others], (Tidy("confirm", container_name),), None
    if old.state == "running" and new.state != "running":
        return [old, *others], (Tidy("drop", container_name + NEXT),), None
    return list(observed), (), (f"both {container_name} and {container_name + NEXT} are "
                                f"{old.state}/{new.state}")


def settle(state: DeploymentState | str, why: str, *, observed: Sequence[ObservedContainer],
           expected: Iterable[str], container_name: str | None = None,
           unreachable: str | None = None) -> Outcome:
    """The final state of a deployment whose run died (``why``), from what its edge runs.

    ``expected``: the services its version defines; ``container_name``: the image-kind
    container (None for compose and stacks); ``unreachable``: why the edge did not answer.
    """
    state = DeploymentState(state)
    assert state in TRANSIENT, state
    lead = f"the run that was {VERB[state]} it stopped without a result ({why})"
    if unreachable is not None:
        return Outcome(Action.FAIL, f"{lead}; its edge did not answer: {unreachable}")
    if state is S.STOPPING:
        if not observed:
            return Outcome(Action.STOPPED, f"{lead}; found no container left")
        return Outcome(Action.FAIL, f"{lead}; found: {_shown(observed)} (stop it again)")
    current, tidy, unclear = _current(observed, container_name)
    if unclear:
        return Outcome(Action.FAIL, f"{lead}; found: {_shown(observed)} ({unclear})")
    missing = sorted(set(expected) - {c.service for c in current})
    waiting = [c for c in current if not c.ready]
    if not current or missing or waiting:
        gap = f"; missing service(s): {', '.join(missing)}" if missing and current else ""
        return Outcome(Action.FAIL, f"{lead}; found: {_shown(observed)}{gap}")
    versions = {c.labels.get(L.VERSION) for c in current} - {None}
    version = _newest(v for v in versions if v) if versions else None
    action = Action.STARTED if state is S.STARTING else Action.UPDATED
    where = f"on version {version}" if version else "(no version label)"
    return Outcome(action, f"{lead}; found {_shown(current)}: running and healthy {where}",
                   version=version, tidy=tidy,
                   containers=tuple(c.container_id for c in current))


# ------------------------------------------------------------------ leftovers on an edge


@dataclass(frozen=True)
class Owner:
    """A deployment record as the clean-up sees it."""

    deployment_id: str
    state: str
    last_flow: str | None = None  # the flow of its recorded run (deploy-application, ...)


@dataclass(frozen=True)
class Item:
    """A container, swarm service or network found on an edge with our labels."""

    kind: str  # service | container | network
    id: str
    name: str
    deployment_id: str | None = None
    project: str | None = None  # a compose project / stack namespace (ef-<12 hex>)


@dataclass(frozen=True)
class Removal:
    item: Item
    cause: str

    def render(self) -> str:
        return f"remove {self.item.kind} {self.item.name} ({self.item.id[:12]}): {self.cause}"


ORDER = {"service": 0, "container": 1, "network": 2}  # networks go once nothing uses them


@dataclass
class _Owners:
    by_id: dict[str, Owner]
    by_project: dict[str, list[Owner]] = field(default_factory=dict)

    def of(self, item: Item) -> tuple[Owner | None, str]:
        """The item's deployment (None: deleted) and how it is named in the cause."""
        if item.deployment_id:
            return self.by_id.get(item.deployment_id), f"deployment {item.deployment_id[:12]}"
        assert item.project
        found = self.by_project.get(item.project, [])
        return (found[0] if len(found) == 1 else None), f"project {item.project}"


def why_remove(owner: Owner | None, named: str) -> str | None:
    """Why what belongs to ``owner`` goes, or None to keep it."""
    if owner is None:
        return f"{named} no longer exists (deleted)"
    if owner.state == S.STOPPED:
        return f"{named} is STOPPED"
    if owner.state == S.ERROR and owner.last_flow in REMOVING_FLOWS:
        what = "deploy" if owner.last_flow == "deploy-application" else "stop"
        return f"{named} is ERROR after a failed {what}"
    return None


def plan_clean_up(items: Iterable[Item], owners: Iterable[Owner]) -> list[Removal]:
    """What to remove (services, then containers, then networks), each with its cause.

    Items are ours only by label: a deployment id, or a project named ``ef-<12 hex>``
    (compose and stack networks carry the project, not our labels). A project that matches
    more than one record is kept (it cannot be told apart).
    """
    known = _Owners({o.deployment_id: o for o in owners})
    for record in known.by_id.values():
        known.by_project.setdefault(L.project_name(record.deployment_id), []).append(record)
    removals = []
    for item in items:
        if not item.deployment_id and not (item.project and PROJECT.match(item.project)):
            continue
        if (not item.deployment_id and item.project
                and len(known.by_project.get(item.project, [])) > 1):
            continue
        owner, named = known.of(item)
        cause = why_remove(owner, named)
        if cause:
            removals.append(Removal(item, cause))
    return sorted(removals, key=lambda r: (ORDER[r.item.kind], r.item.name))
