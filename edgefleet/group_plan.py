"""Observe → pure plan → execute, for a deployment group: what each edge needs, with its cause.

A group's divergence (the reference platform's "operational status") is this plan: the
edges that match the group's selector or list, compared with the group's members (one
deployment per edge) and its target (application, version, and a hash of the rest of the
desired spec: env, files, so a change there counts as an update too). Each edge gets one
action:

- ``add``: it matches and has no deployment of the group yet;
- ``update``: its member differs from the target (version, spec hash) or is not STARTED;
  the executor brings the deployment to the target (update a STARTED or ERROR one, forced
  when the version is already the target; start a CREATED or STOPPED one first);
- ``keep``: nothing to do; also a member that no longer matches while prune is off;
- ``remove``: a member that no longer matches, with prune on (stop and delete it), or a
  second deployment of the group on one edge;
- ``defer``: an action is due but cannot run now: the edge is not ONLINE (an offline edge
  is deferred, never failed) or another run is busy with the deployment. ``deferred``
  names the action that waits (None: a busy deployment already on the target, looked at
  again once its run ends).

Waves (``edgefleet.rollouts``) cover the ``add`` and ``update`` edges; removals are for the
executor to run after the last wave. The plan is tested by its rendered text.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from edgefleet.models.states import Availability, DeploymentState

ActionName = Literal["add", "update", "keep", "remove", "defer"]
Deferrable = Literal["add", "update", "remove"]
MatchedBy = Literal["selector", "list"]

S = DeploymentState
BUSY = frozenset({S.STARTING, S.UPDATING, S.STOPPING})  # a run is at work on the deployment


class GroupTarget(BaseModel):
    """What every member of the group should run."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    application: str
    version: str
    spec_hash: str  # of the rest of the desired spec (env, files, ...): a change updates


class GroupEdge(BaseModel):
    """An edge the plan looks at: one that matches the group, or one a member runs on.

    ``availability`` None means not known (no telemetry verdict): treated like OFFLINE.
    ``matches`` False: the edge of a member that the selector or list no longer takes.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    availability: Availability | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    matches: bool = True


class GroupMember(BaseModel):
    """One deployment of the group, as the records hold it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    edge: str
    deployment_id: str
    version: str
    state: DeploymentState
    spec_hash: str


class EdgeAction(BaseModel):
    """The plan for one edge (for a second member on an edge: for that deployment)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    edge: str
    action: ActionName
    cause: str
    deferred: Deferrable | None = None  # with ``defer``: the action that waits
    deployment_id: str | None = None  # the member's, when there is one
    version_before: str | None = None
    state_before: DeploymentState | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    matches: bool = True

    @property
    def changes(self) -> bool:
        """The action changes the edge now."""
        return self.action in ("add", "update", "remove")


class GroupPlan(BaseModel):
    """One action per edge (per member for a duplicate), sorted by edge name."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    target: GroupTarget
    prune: bool
    matched_by: MatchedBy = "selector"
    actions: tuple[EdgeAction, ...] = ()

    def render(self) -> str:
        """The plan as text, one line per action (logs, the CLI, tests)."""
        if not self.actions:
            return f"nothing to do: {_nothing(self.matched_by)}"
        return "\n".join(f"{a.action:<6} {a.edge}: {a.cause}" for a in self.actions)

    def edges(self, *actions: ActionName) -> list[str]:
        """The edges planned for any of ``actions``, in plan order."""
        return [a.edge for a in self.actions if a.action in actions]

    @property
    def needs_rollout(self) -> bool:
        """Something to add, update or remove now (what auto-update and reconcile act on;
        a plan of only keeps and defers has nothing to run yet)."""
        return any(a.changes for a in self.actions)

    def rollout_edges(self) -> dict[str, dict[str, str]]:
        """The edges the waves cover (``add`` and ``update``), with their labels: the input
        of ``rollouts.plan_waves``."""
        return {a.edge: dict(a.labels) for a in self.actions if a.action in ("add", "update")}


def _nothing(matched_by: MatchedBy) -> str:
    if matched_by == "list":
        return "the group lists no edge and has no deployment"
    return "no edge matches the selector and the group has no deployment"


def _matches(matched_by: MatchedBy) -> str:
    return "matches the selector" if matched_by == "selector" else "is in the group's list"


def _no_longer(matched_by: MatchedBy) -> str:
    return ("no longer matches the selector" if matched_by == "selector"
            else "no longer in the group's list")


def _unavailable(edge: GroupEdge | None) -> str | None:
    """Why an action on this edge cannot run now, or None when the edge is ONLINE."""
    if edge is None:
        return "edge not known (availability UNKNOWN)"
    if edge.availability is None:
        return "availability UNKNOWN"
    if edge.availability is not Availability.ONLINE:
        return edge.availability.value
    return None


def _differences(target: GroupTarget, member: GroupMember) -> list[str]:
    """What keeps a member from the target, in a fixed order; empty when it is there. The
    state of a deployment a run is busy with is that run's business, not a difference."""
    found = []
    if member.version != target.version:
        found.append(f"{member.version} → {target.version}")
    if member.spec_hash != target.spec_hash:
        found.append("configuration changed")
    if member.state is not S.STARTED and member.state not in BUSY:
        found.append(f"deployment {member.state.value}, not STARTED")
    return found


def _action(action: ActionName, cause: str, edge: GroupEdge | None, member: GroupMember | None,
            deferred: Deferrable | None = None) -> EdgeAction:
    name = member.edge if member is not None else edge.name if edge is not None else ""
    return EdgeAction(
        edge=name, action=action, cause=cause, deferred=deferred,
        deployment_id=member.deployment_id if member else None,
        version_before=member.version if member else None,
        state_before=member.state if member else None,
        labels=dict(edge.labels) if edge else {}, matches=edge.matches if edge else False)


def _due(action: Deferrable, cause: str, edge: GroupEdge | None,
         member: GroupMember | None) -> EdgeAction:
    """``action`` with ``cause``, or a ``defer`` of it when the edge or the deployment
    cannot take it now (not ONLINE, or another run is at work on the deployment)."""
    why = _unavailable(edge)
    if why is None and member is not None and member.state in BUSY:
        why = f"deployment {member.state.value}, another run is at work on it"
    if why is None:
        return _action(action, cause, edge, member)
    return _action("defer", f"{why}; then {action}: {cause}", edge, member, deferred=action)


def _primary(members: list[GroupMember], target: GroupTarget) -> GroupMember:
    """Of several members on one edge, the one the group keeps: one already on the target
    and STARTED, else the first by deployment id."""
    ordered = sorted(members, key=lambda m: m.deployment_id)
    return next((m for m in ordered if m.state is S.STARTED and not _differences(target, m)),
                ordered[0])


def _member_action(target: GroupTarget, edge: GroupEdge | None, member: GroupMember, *,
                   prune: bool, matched_by: MatchedBy) -> EdgeAction:
    """The action for the group's (primary) deployment on one edge."""
    if edge is None or not edge.matches:
        if prune:
            return _due("remove", f"{_no_longer(matched_by)} (--prune)", edge, member)
        return _action("keep", f"{_no_longer(matched_by)}; kept because --prune is off",
                       edge, member)
    differences = _differences(target, member)
    if differences:
        return _due("update", "; ".join(differences), edge, member)
    if member.state in BUSY:
        return _action("defer", f"deployment {member.state.value}, another run is at work "
                       "on it", edge, member)
    why = _unavailable(edge)
    note = f" (edge {why})" if why else ""
    return _action("keep", f"on {member.version}, STARTED{note}", edge, member)


def plan_group(target: GroupTarget, edges: Sequence[GroupEdge], members: Sequence[GroupMember],
               *, prune: bool, matched_by: MatchedBy = "selector") -> GroupPlan:
    """The group's plan: one action per edge, sorted by edge name (then deployment id).

    ``edges``: those that match the group (``matches`` True) and the edges of members that
    no longer match (``matches`` False; a member whose edge is not given at all is treated
    as no longer matching, availability unknown). ``members``: the group's deployments.
    ``prune``: members that no longer match are removed; otherwise they are kept, untouched.
    ``matched_by`` only words the causes (a selector, or a static list of edges).
    """
    by_name = {e.name: e for e in edges}
    on_edge: dict[str, list[GroupMember]] = {}
    for member in members:
        on_edge.setdefault(member.edge, []).append(member)
    actions: list[EdgeAction] = []
    for name in sorted(set(by_name) | set(on_edge)):
        edge = by_name.get(name)
        found = on_edge.get(name, [])
        if not found:
            if edge is not None and edge.matches:
                actions.append(_due("add", f"{_matches(matched_by)}, no deployment yet",
                                    edge, None))
            continue
        member = _primary(found, target)
        for extra in found:
            if extra is not member:
                actions.append(_due(
                    "remove", f"a second deployment of the group on this edge "
                    f"({extra.deployment_id[:12]}; {member.deployment_id[:12]} stays)",
                    edge, extra))
        actions.append(_member_action(target, edge, member, prune=prune,
                                      matched_by=matched_by))
    actions.sort(key=lambda a: (a.edge, a.deployment_id or ""))
    return GroupPlan(target=target, prune=prune, matched_by=matched_by, actions=tuple(actions))


# ------------------------------------------------------------------ work nobody asked for


def automatic_actions(plan: GroupPlan, *, edge: str | None = None,
                      failed: Collection[str] = ()) -> list[EdgeAction]:
    """The actions of ``plan`` that a reconcile nobody asked for runs now.

    ``edge`` given (it just came back ONLINE): every action that changes that edge, so a
    member deferred while it was away reaches the target; one whose last run failed gets
    one more try too (the edge may have been why). ``edge`` None (the served sweep): adds,
    removals, and updates of members whose last run did not fail (``failed``: the
    deployment ids whose last run left an error). A failed member is not tried again on
    every sweep: it waits for an operator (`group reconcile`, `group update`) or for its
    edge's next return.
    """
    if edge is not None:
        return [a for a in plan.actions if a.changes and a.edge == edge]
    return [a for a in plan.actions if a.changes
            and not (a.action == "update" and a.deployment_id in failed)]


class MemberStop(BaseModel):
    """A member of a stopped group that still runs: stopped now, or once its edge is back."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    edge: str
    deployment_id: str
    state_before: DeploymentState
    now: bool
    cause: str

    def render(self) -> str:
        return f"{'stop' if self.now else 'defer':<6} {self.edge}: {self.cause}"


STOPPED_ALREADY = frozenset({S.CREATED, S.STOPPED})


def plan_stop(edges: Sequence[GroupEdge], members: Sequence[GroupMember]
              ) -> tuple[MemberStop, ...]:
    """What stopping a group does: each member not CREATED or STOPPED is stopped now, or
    later when its edge is not ONLINE or another run is at work on it (never failed for
    it). Sorted by edge name, then deployment id."""
    by_name = {e.name: e for e in edges}
    stops = []
    for member in members:
        if member.state in STOPPED_ALREADY:
            continue
        why = _unavailable(by_name.get(member.edge))
        if why is None and member.state in BUSY:
            why = f"deployment {member.state.value}, another run is at work on it"
        stops.append(MemberStop(
            edge=member.edge, deployment_id=member.deployment_id, state_before=member.state,
            now=why is None,
            cause=(f"deployment {member.state.value}" if why is None
                   else f"{why}; then stop (deployment {member.state.value})")))
    return tuple(sorted(stops, key=lambda s: (s.edge, s.deployment_id)))


def automatic_stops(stops: Sequence[MemberStop], *, edge: str | None = None,
                    failed: Collection[str] = ()) -> list[MemberStop]:
    """The stops of a stopped group that a reconcile nobody asked for runs now: those on
    ``edge`` (back ONLINE), or on the sweep those whose member's last run did not fail
    (as :func:`automatic_actions`)."""
    if edge is not None:
        return [s for s in stops if s.now and s.edge == edge]
    return [s for s in stops if s.now and s.deployment_id not in failed]
