"""A group's rollout: which edges go in which wave, what failures do, and how it ends.

The three pure decisions the group's rollout flow takes (it observes and executes; nothing
here touches an edge, the records or Prefect):

- :func:`plan_waves`: the edges to roll out (the plan's ``add`` and ``update`` edges) cut
  into waves by the cumulative targets of ``RolloutOptions.waves``; canaries first.
- :func:`decide`: after a wave (or an edge), from the results so far of this rollout, go
  on, halt, roll back, or record and continue.
- :func:`summarize`: the state a finished rollout leaves the group in, from its members
  (a plan made again once the rollout is over) and the last decision.

Wave rules, precisely: the edges are ordered canaries first (label ``tier=canary``), each
part by name. Each target is resolved against ``n``, the number of edges rolled out (not
the whole group: edges already on the target are not counted): ``P%`` reaches
``ceil(P × n / 100)`` edges, a count ``C`` reaches ``min(C, n)``; a target below the reach
of an earlier one reaches no further. Wave ``i`` holds the edges between the reach of the
target before it and its own; a wave that would be empty is dropped, so ``1,25%,100%``
over 4 edges is two waves of 1 and 3, and over 0 edges no wave at all.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict

from edgefleet.group_plan import ActionName, GroupPlan
from edgefleet.models.groups import (
    GroupMove,
    GroupState,
    OnFailure,
    RolloutOptions,
    WaveTarget,
    percent_text,
)

CANARY_LABEL = "tier"
CANARY_VALUE = "canary"
SHOWN_REASONS = 5  # failures named in a decision's reason; the rest are counted
SHOWN_EDGES = 10  # edges named per action in a summary


# ------------------------------------------------------------------ waves


def is_canary(labels: Mapping[str, str]) -> bool:
    """An edge labelled ``tier=canary`` goes before the others."""
    return labels.get(CANARY_LABEL) == CANARY_VALUE


def rollout_order(edges: Mapping[str, Mapping[str, str]]) -> list[str]:
    """Edge names, canaries first, each part sorted by name."""
    return sorted(edges, key=lambda name: (not is_canary(edges[name]), name))


def wave_sizes(waves: Sequence[WaveTarget], n_edges: int) -> list[int]:
    """How many edges each non-empty wave holds (see the module docstring); they add up to
    ``n_edges``. ``waves`` must end at 100% (``RolloutOptions`` makes sure of it)."""
    if n_edges < 0:
        raise ValueError(f"a rollout over {n_edges} edges")
    sizes: list[int] = []
    reached = 0
    for wave in waves:
        reach = wave.reach(n_edges)
        if reach > reached:
            sizes.append(reach - reached)
            reached = reach
    if reached != n_edges:
        raise ValueError(f"waves {','.join(map(str, waves))} reach {reached} of {n_edges} "
                         "edges: the last wave must be 100%")
    return sizes


def plan_waves(edges: Mapping[str, Mapping[str, str]], waves: Sequence[WaveTarget]
               ) -> list[list[str]]:
    """The edges to roll out (name → labels, e.g. ``GroupPlan.rollout_edges()``) in waves:
    canaries first, then by name, cut by :func:`wave_sizes`. Deterministic: the same
    edges and waves always give the same waves."""
    order = rollout_order(edges)
    cut: list[list[str]] = []
    start = 0
    for size in wave_sizes(waves, len(order)):
        cut.append(order[start:start + size])
        start += size
    return cut


def gate_after(options: RolloutOptions, wave: int, waves: int) -> bool:
    """Whether the rollout waits for an approval after wave ``wave`` (1-based) of
    ``waves``: with ``approve``, after every wave but the last."""
    return options.approve and wave < waves


# ------------------------------------------------------------------ failures


class Outcome(StrEnum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    DEFERRED = "deferred"  # not attempted (the edge went OFFLINE, a run was busy with it)


class EdgeResult(BaseModel):
    """What the rollout did to one edge."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    edge: str
    outcome: Outcome
    reason: str | None = None  # why it failed (or was deferred)


class Verdict(StrEnum):
    PROCEED = "proceed"  # failures, if any, are within the threshold
    HALT = "halt"  # over the threshold: attempt no further edge
    ROLL_BACK = "rollback"  # over the threshold: roll back ``Decision.rollback``, then halt
    CONTINUE = "continue"  # over the threshold, and on_failure=continue: record, go on


class Decision(BaseModel):
    """What the rollout does next, and why (the reason is for logs and the group record)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    verdict: Verdict
    reason: str
    attempted: int = 0
    failed: tuple[str, ...] = ()
    rollback: tuple[str, ...] = ()  # with ROLL_BACK: the edges this rollout updated

    @property
    def stops(self) -> bool:
        """The rollout attempts no further edge."""
        return self.verdict in (Verdict.HALT, Verdict.ROLL_BACK)


def _edges(count: int) -> str:
    return f"{count} edge" if count == 1 else f"{count} edges"


def _reasons(failed: Sequence[EdgeResult]) -> str:
    named = sorted(failed, key=lambda r: r.edge)
    text = "; ".join(f"{r.edge}: {r.reason or 'no reason given'}"
                     for r in named[:SHOWN_REASONS])
    more = len(named) - SHOWN_REASONS
    return text + (f"; and {more} more" if more > 0 else "")


def decide(options: RolloutOptions, results: Sequence[EdgeResult]) -> Decision:
    """What to do after the results so far of this rollout (every wave, in order).

    Deferred edges are not attempted. When failures / attempted is strictly above
    ``failure_threshold`` (so a threshold of 0 acts on the first failure and 100 never
    does), ``on_failure`` says what happens: halt, roll back the edges that succeeded (in
    the order they were given; for an added edge, rolling back removes it), or continue.
    An edge given twice (tried again) counts by its last result.
    """
    last: dict[str, EdgeResult] = {}
    for result in results:
        last.pop(result.edge, None)  # keeps the order of the last results
        last[result.edge] = result
    attempted = [r for r in last.values() if r.outcome is not Outcome.DEFERRED]
    failed = [r for r in attempted if r.outcome is Outcome.FAILED]
    names = tuple(sorted(r.edge for r in failed))
    if not failed:
        return Decision(verdict=Verdict.PROCEED, attempted=len(attempted),
                        reason=f"{_edges(len(attempted))} attempted, none failed")
    threshold = options.failure_threshold
    crossed = len(failed) * 100 > threshold * len(attempted)
    share = percent_text(100 * len(failed) / len(attempted))
    reason = (f"{len(failed)} of {len(attempted)} attempted edges failed ({share} "
              f"{'>' if crossed else '≤'} threshold {percent_text(threshold)}): "
              f"{_reasons(failed)}")
    if not crossed:
        return Decision(verdict=Verdict.PROCEED, reason=reason, attempted=len(attempted),
                        failed=names)
    if options.on_failure is OnFailure.ROLLBACK:
        done = tuple(r.edge for r in attempted if r.outcome is Outcome.SUCCEEDED)
        return Decision(verdict=Verdict.ROLL_BACK, reason=reason, attempted=len(attempted),
                        failed=names, rollback=done)
    verdict = Verdict.HALT if options.on_failure is OnFailure.HALT else Verdict.CONTINUE
    return Decision(verdict=verdict, reason=reason, attempted=len(attempted), failed=names)


# ------------------------------------------------------------------ how it ends


class GroupOutcome(BaseModel):
    """The state a finished (or halted) rollout leaves the group in, and why."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    state: GroupState
    cause: str

    @property
    def move(self) -> GroupMove:
        """The move that gets there from DEPLOYING or UPDATING (``models.groups``)."""
        return GroupMove.HALT if self.state is GroupState.HALTED else GroupMove.FINISH


PENDING: tuple[ActionName, ...] = ("add", "update", "remove", "defer")


def _listed(edges: list[str]) -> str:
    more = len(edges) - SHOWN_EDGES
    return ", ".join(edges[:SHOWN_EDGES]) + (f" and {more} more" if more > 0 else "")


def summarize(plan: GroupPlan, decision: Decision | None = None) -> GroupOutcome:
    """The group's state once its rollout is over.

    ``plan``: the group planned again from its members after the rollout; ``decision``:
    the rollout's last :func:`decide` (None when nothing was attempted).

    - HALTED when the last decision stopped the rollout (halt, or rollback);
    - STARTED when every action is ``keep``: each matching edge's member is on the target
      and STARTED (members kept outside the selector with prune off do not count against
      it), including a group that matches no edge yet;
    - PARTIAL otherwise: some edge is deferred (OFFLINE, busy), failed under ``continue``
      or within the threshold (its member is not on the target or not STARTED), or still
      waits to be added or removed.
    """
    if decision is not None and decision.stops:
        verb = ("rolled back " + _listed(list(decision.rollback)) + " and halted"
                if decision.verdict is Verdict.ROLL_BACK and decision.rollback else "halted")
        return GroupOutcome(state=GroupState.HALTED, cause=f"{verb}: {decision.reason}")
    if not plan.actions:
        return GroupOutcome(state=GroupState.STARTED, cause=plan.render())
    version = plan.target.version
    on_target = [a.edge for a in plan.actions if a.action == "keep" and a.matches]
    outside = [a.edge for a in plan.actions if a.action == "keep" and not a.matches]
    pending = [a for a in plan.actions if a.action in PENDING]
    kept = (f"; {len(outside)} kept outside the group (--prune is off): {_listed(outside)}"
            if outside else "")
    if not pending:
        return GroupOutcome(state=GroupState.STARTED,
                            cause=f"{_edges(len(on_target))} on {version}, STARTED{kept}")
    matching = len(set(on_target) | {a.edge for a in pending if a.matches})
    waiting = "; ".join(f"{action} {_listed(plan.edges(action))}"
                        for action in PENDING if plan.edges(action))
    return GroupOutcome(
        state=GroupState.PARTIAL,
        cause=(f"{len(on_target)} of {_edges(matching)} on {version} and STARTED; "
               f"{waiting}{kept}"))


# ------------------------------------------------------------------ the group's table

ARTIFACT_KEY_RE = re.compile(r"[^a-z0-9-]+")
# a member's rank in the group's table, worst first (see ``member_rank``)
RANKS = ("ERROR", "deferred (edge not ONLINE)", "a run at work", "not running",
         "STARTED, not on the target", "STARTED on the target")
AT_WORK = frozenset({"STARTING", "UPDATING", "STOPPING"})
NONE_SHOWN = "n/a"  # the UI renders cells as markdown: a lone "-" becomes a bullet


def artifact_key(group: str) -> str:
    """The key of the group's table artifact: ``group-<name>``.

    Prefect takes lowercase letters, digits and dashes only: a name is lowercased and each
    run of anything else (``.``, ``_``) becomes one dash; when that changed the name, 8 hex
    digits of its SHA-256 are added, so ``a_b`` and ``a-b`` never share a table.
    """
    cleaned = ARTIFACT_KEY_RE.sub("-", group.lower()).strip("-") or "group"
    if cleaned != group:
        cleaned += "-" + hashlib.sha256(group.encode()).hexdigest()[:8]
    return f"group-{cleaned}"


def member_rank(row: Mapping[str, Any], availability: str | None, target: str) -> int:
    """Where a member row goes in the table, worst first (an index of ``RANKS``): ERROR,
    then deferred (its edge not ONLINE: OFFLINE, or never heard of), then a run at work on
    it, then not running (CREATED, STOPPED, no deployment yet), then STARTED on another
    version, and last STARTED on the target."""
    state = row.get("state")
    if state == "ERROR":
        return 0
    if availability != "ONLINE":
        return 1
    if state in AT_WORK:
        return 2
    if state != "STARTED":
        return 3
    return 4 if row.get("version") != target else 5


def group_table(rows: Sequence[Mapping[str, Any]], availability: Mapping[str, str | None],
                target: str) -> list[dict[str, str]]:
    """The rows of `group status` (edge, deployment_id, version, state, last_error) as the
    table artifact shows them: worst first (:func:`member_rank`), then by edge; with the
    edge's availability, and ``n/a`` for what is not there."""
    ranked = sorted(rows, key=lambda r: (member_rank(r, availability.get(r["edge"]), target),
                                         r["edge"], r.get("deployment_id") or ""))
    return [{"edge": r["edge"],
             "edge status": availability.get(r["edge"]) or "UNKNOWN",
             "deployment": (r.get("deployment_id") or NONE_SHOWN)[:12],
             "version": r.get("version") or NONE_SHOWN,
             "state": r.get("state") or "NO DEPLOYMENT",
             "last error": r.get("last_error") or NONE_SHOWN} for r in ranked]
