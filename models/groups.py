"""Deployment groups: one application on a fleet, rolled out in waves that stop on failure.

Two things every layer above a group shares, kept here so that none of them invents its own:

- :class:`GroupState` and the one table of legal moves, :data:`GROUP_TRANSITIONS`. A check
  uses :func:`move_group`; a records layer does its compare-and-set with
  :func:`group_sources` in the ``WHERE`` (as deployments do with ``states.sources``).
- :class:`RolloutOptions`: how a rollout goes (cumulative waves, parallelism, the failure
  threshold and what a crossing does, an approval gate between waves), validated at the
  door so that a bad ``--waves`` or ``--failure-threshold`` is refused naming itself.

The life of a group::

    (new) ─► DEPLOYING ─┬─► AWAITING_APPROVAL ─approve─► DEPLOYING / UPDATING
              UPDATING ─┼─► PAUSED ─resume─► DEPLOYING / UPDATING
                        ├─► STARTED   every member on the target and STARTED
                        ├─► PARTIAL   done, some edges deferred or failed under "continue"
                        └─► HALTED    the failure threshold was crossed (or a gate timed out)
    STARTED, PARTIAL, HALTED ─update─► UPDATING   (group update, auto-update, reconcile)
    every state but STOPPED ─stop─► STOPPED ─deploy─► DEPLOYING   (re-launch)

AWAITING_APPROVAL and PAUSED do not remember whether the rollout they hold deploys or
updates: the run (or the record) that holds them does, and names the state to go back to
(``move_group(state, GroupMove.APPROVE, to=GroupState.UPDATING)``).

Pure: no records, no Prefect.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from enum import StrEnum

import semver
from pydantic import BaseModel, ConfigDict, Field, field_serializer, field_validator

from edgefleet.errors import InvalidTransition
from edgefleet.models.documents import shown

# ------------------------------------------------------------------ states


class GroupState(StrEnum):
    DEPLOYING = "DEPLOYING"  # the first rollout (or a re-launch) is under way
    UPDATING = "UPDATING"  # a later rollout (update, auto-update, reconcile) is under way
    AWAITING_APPROVAL = "AWAITING_APPROVAL"  # between two waves, waiting for an approval
    PAUSED = "PAUSED"  # an operator paused the rollout; it goes on when resumed
    STARTED = "STARTED"  # every member runs the target and is STARTED
    PARTIAL = "PARTIAL"  # the rollout ended; some edges deferred or failed (under continue)
    HALTED = "HALTED"  # the rollout stopped itself (failure threshold, gate timed out)
    STOPPED = "STOPPED"  # an operator stopped the group


class GroupMove(StrEnum):
    """What moves a group: an operator's command, or the rollout run's own progress."""

    DEPLOY = "deploy"  # launch again a STOPPED group
    UPDATE = "update"  # start a rollout on a group at rest
    AWAIT_APPROVAL = "await approval"  # a wave is done and --approve asks for a gate
    APPROVE = "approve"  # the gate opens: back to the rollout's state
    PAUSE = "pause"
    RESUME = "resume"  # back to the rollout's state
    FINISH = "finish"  # the last wave is done: STARTED or PARTIAL (``rollouts.summarize``)
    HALT = "halt"
    STOP = "stop"


G = GroupState
ROLLING: frozenset[GroupState] = frozenset({G.DEPLOYING, G.UPDATING})
AT_REST: frozenset[GroupState] = frozenset({G.STARTED, G.PARTIAL, G.HALTED})
# A group is created in this state: its first rollout starts at once.
NEW_GROUP_STATE = G.DEPLOYING
# Groups a reconcile nobody asked for (an edge back ONLINE, the served sweep) moves by
# UPDATE; a HALTED group waits for an operator, whatever its plan says.
SELF_RECONCILING: frozenset[GroupState] = frozenset({G.STARTED, G.PARTIAL})

# move -> (states it may start from, states it may lead to). A move with one target needs
# no ``to``; APPROVE, RESUME and FINISH are told theirs by the caller.
GROUP_TRANSITIONS: dict[GroupMove, tuple[frozenset[GroupState], frozenset[GroupState]]] = {
    GroupMove.DEPLOY: (frozenset({G.STOPPED}), frozenset({G.DEPLOYING})),
    GroupMove.UPDATE: (AT_REST, frozenset({G.UPDATING})),
    GroupMove.AWAIT_APPROVAL: (ROLLING, frozenset({G.AWAITING_APPROVAL})),
    GroupMove.APPROVE: (frozenset({G.AWAITING_APPROVAL}), ROLLING),
    GroupMove.PAUSE: (ROLLING, frozenset({G.PAUSED})),
    GroupMove.RESUME: (frozenset({G.PAUSED}), ROLLING),
    GroupMove.FINISH: (ROLLING, frozenset({G.STARTED, G.PARTIAL})),
    GroupMove.HALT: (ROLLING | {G.AWAITING_APPROVAL, G.PAUSED}, frozenset({G.HALTED})),
    GroupMove.STOP: (frozenset(set(G) - {G.STOPPED}), frozenset({G.STOPPED})),
}


def _names(states: frozenset[GroupState]) -> str:
    return ", ".join(sorted(s.value for s in states))


def _refusal(state: GroupState, move: GroupMove) -> InvalidTransition:
    allowed, _targets = GROUP_TRANSITIONS[move]
    return InvalidTransition(
        f"cannot {move.value} a group in state {state.value} (allowed from: {_names(allowed)})")


def move_group(current: GroupState | str, move: GroupMove,
               to: GroupState | str | None = None) -> GroupState:
    """The state ``move`` leads a group in ``current`` to.

    Raises :class:`~edgefleet.errors.InvalidTransition` naming the states allowed when the
    table forbids the move from ``current`` (an operator's command at the wrong time).
    ``to`` picks the target of a move that has several (APPROVE, RESUME: the rollout's
    state; FINISH: from ``rollouts.summarize``); a missing or impossible ``to`` is the
    caller's bug and raises ValueError.
    """
    state = GroupState(current)
    allowed, targets = GROUP_TRANSITIONS[move]
    if state not in allowed:
        raise _refusal(state, move)
    if to is None:
        if len(targets) != 1:
            raise ValueError(f"{move.value} leads to one of {_names(targets)}: pass to=")
        (target,) = targets
        return target
    target = GroupState(to)
    if target not in targets:
        raise ValueError(f"{move.value} leads to one of {_names(targets)}, not {target.value}")
    return target


def group_sources(move: GroupMove, expect: GroupState | str | None = None
                  ) -> frozenset[GroupState]:
    """The states ``move`` may move a group from: all the table allows, or only ``expect``
    (the state this run left it in, so no run ends another run's move)."""
    allowed, _targets = GROUP_TRANSITIONS[move]
    if expect is None:
        return allowed
    state = GroupState(expect)
    if state not in allowed:
        raise _refusal(state, move)
    return frozenset({state})


# ------------------------------------------------------------------ rollout options


class OnFailure(StrEnum):
    """What a rollout does once failures cross the threshold."""

    HALT = "halt"  # attempt no further edge; those done keep the new version
    ROLLBACK = "rollback"  # and roll the edges already updated in this rollout back
    CONTINUE = "continue"  # record the failures and go on with the next waves


MAX_WAVES = 50
WAVE_RE = re.compile(r"(\d{1,7})(%?)")
EXAMPLE = "e.g. 1,25%,100%"


class WaveTarget(BaseModel):
    """One cumulative wave target: ``amount`` edges, or ``amount`` percent of them."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    amount: int = Field(ge=1)
    percent: bool = False

    def __str__(self) -> str:
        return f"{self.amount}%" if self.percent else str(self.amount)

    def reach(self, n_edges: int) -> int:
        """How many of ``n_edges`` the rollout has reached once this wave is done: a
        percentage is rounded up (1% of 4 edges is 1 edge, never none), a count is capped
        at the fleet."""
        if self.percent:
            return min(n_edges, math.ceil(self.amount * n_edges / 100))
        return min(n_edges, self.amount)


ALL = WaveTarget(amount=100, percent=True)


def _wave(index: int, token: object) -> WaveTarget:
    if isinstance(token, WaveTarget):
        return token
    if isinstance(token, dict):
        return WaveTarget.model_validate(token)
    if isinstance(token, int) and not isinstance(token, bool):
        token = str(token)
    text = token.strip() if isinstance(token, str) else None
    match = WAVE_RE.fullmatch(text) if text is not None else None
    if match is None:
        raise ValueError(f"wave {index} ({shown(token)}) is not a number of edges or a "
                         f"percentage ({EXAMPLE})")
    amount, percent = int(match.group(1)), bool(match.group(2))
    if amount == 0:
        raise ValueError(f"wave {index} ({shown(text)}) reaches no edge: a wave is at least "
                         "1 edge or 1%")
    if percent and amount > 100:
        raise ValueError(f"wave {index} ({shown(text)}) is over 100%")
    return WaveTarget(amount=amount, percent=percent)


def parse_waves(given: object) -> tuple[WaveTarget, ...]:
    """Cumulative wave targets from ``1,25%,100%`` (or a list of such items).

    Each target says how far the rollout has reached once that wave is done: a number of
    edges or a percentage of the edges it rolls out to. Refused, naming the wave: an empty
    item, anything but a whole number with an optional ``%``, 0, over 100%, a target below
    an earlier one of the same kind, and a last target other than 100% (a rollout that
    would silently leave edges out: add ``100%`` to the end to say it is meant).
    """
    if isinstance(given, str):
        if not given.strip():
            raise ValueError(f"waves are empty: give cumulative targets ({EXAMPLE})")
        items: list[object] = list(given.split(","))
    elif isinstance(given, Sequence):
        items = list(given)
        if not items:
            raise ValueError(f"waves are empty: give cumulative targets ({EXAMPLE})")
    else:
        raise ValueError(f"waves {shown(given)} are not text such as 1,25%,100%")
    if len(items) > MAX_WAVES:
        raise ValueError(f"{len(items)} waves are too many (at most {MAX_WAVES})")
    waves = tuple(_wave(i, item) for i, item in enumerate(items, start=1))
    last: dict[bool, tuple[int, WaveTarget]] = {}
    for index, wave in enumerate(waves, start=1):
        before = last.get(wave.percent)
        if before is not None and wave.amount < before[1].amount:
            raise ValueError(
                f"wave {index} ({shown(str(wave))}) is below wave {before[0]} "
                f"({shown(str(before[1]))}): targets are "
                "cumulative, each at least the one before")
        last[wave.percent] = (index, wave)
    if waves[-1] != ALL:
        raise ValueError(
            f"the last wave is {shown(str(waves[-1]))}, not '100%': targets are cumulative "
            f"and must end at 100% so that every edge is reached ({EXAMPLE})")
    return waves


def parse_percent(given: object, what: str = "failure_threshold") -> float:
    """A percentage from 0 to 100, given as ``5``, ``5%``, ``12.5%`` or a number."""
    value: float | None = None
    if isinstance(given, int | float) and not isinstance(given, bool):
        value = float(given)
    elif isinstance(given, str):
        text = given.strip().removesuffix("%").strip()
        try:
            value = float(text)
        except ValueError:
            value = None
    if value is None or not math.isfinite(value) or not 0 <= value <= 100:
        raise ValueError(f"{what} {shown(given)} is not a percentage from 0 to 100 "
                         "(e.g. 0, 10 or 12.5%)")
    return value


def percent_text(value: float) -> str:
    """``40%``, ``12.5%``, ``33.33%``: at most two decimals, none when whole."""
    return f"{round(value, 2):g}%"


class RolloutOptions(BaseModel):
    """How a group's rollout goes. Defaults: one wave of every edge, 10 edges at a time,
    the first failure halts, no gate between waves.

    ``waves`` are cumulative targets (:func:`parse_waves`; dumped back as text, e.g.
    ``"1,25%,100%"``); ``failure_threshold`` is a percentage of the edges attempted in this
    rollout: the rollout acts on failures only when their share is strictly above it, so 0
    means the first failure acts (``rollouts.decide``).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    waves: tuple[WaveTarget, ...] = (ALL,)
    max_parallel: int = 10
    failure_threshold: float = 0.0
    on_failure: OnFailure = OnFailure.HALT
    approve: bool = False  # wait for an approval after each wave but the last

    @field_validator("waves", mode="before")
    @classmethod
    def _waves(cls, value: object) -> tuple[WaveTarget, ...]:
        return parse_waves(value)

    @field_serializer("waves")
    def _waves_text(self, waves: tuple[WaveTarget, ...]) -> str:
        return waves_text(waves)

    @field_validator("max_parallel", mode="before")
    @classmethod
    def _max_parallel(cls, value: object) -> int:
        number: int | None = None
        if isinstance(value, int) and not isinstance(value, bool):
            number = value
        elif isinstance(value, str) and value.strip().isdigit():
            number = int(value.strip())
        if number is None or number < 1:
            raise ValueError(f"max_parallel {shown(value)} is not a whole number of at least 1 "
                             "(how many edges a wave updates at a time)")
        return number

    @field_validator("failure_threshold", mode="before")
    @classmethod
    def _threshold(cls, value: object) -> float:
        return parse_percent(value)

    @field_validator("on_failure", mode="before")
    @classmethod
    def _on_failure(cls, value: object) -> OnFailure:
        if isinstance(value, str) and value.strip().lower() in set(OnFailure):
            return OnFailure(value.strip().lower())
        choices = ", ".join(o.value for o in OnFailure)
        raise ValueError(f"on_failure {shown(value)} is not one of {choices}")

    def describe(self) -> str:
        """One line for logs and the CLI."""
        gate = "an approval after each wave" if self.approve else "no approval between waves"
        return (f"waves {waves_text(self.waves)}, at most {self.max_parallel} edges at a time, "
                f"{self.on_failure.value} once more than "
                f"{percent_text(self.failure_threshold)} of the attempted edges fail, {gate}")


def waves_text(waves: Sequence[WaveTarget]) -> str:
    """Waves as the text they parse from: ``1,25%,100%``."""
    return ",".join(str(w) for w in waves)



# ------------------------------------------------------------------ the gate between waves

# A group waiting (for an approval, or for an operator's resume) with its rollout run paused.
HOLDING: frozenset[GroupState] = frozenset({G.AWAITING_APPROVAL, G.PAUSED})


class GateInput(BaseModel):
    """What a rollout paused at its approval gate waits for: the form the Prefect UI shows
    on the paused run, and what `group approve` sends (Prefect ``resume_flow_run`` with
    ``run_input``). Resuming with the defaults approves; ``approved: false`` halts."""

    model_config = ConfigDict(extra="forbid")

    approved: bool = Field(
        default=True, description="go on with the next wave (untick to halt the rollout)")
    note: str = Field(default="", max_length=500,
                      description="why (in the run's log; in the group's reason if it halts)")


PAUSED_WHILE = "paused by an operator while "


def pause_reason(rolling: GroupState | str, group: str) -> str:
    """The reason a paused group shows; it names the state a resume goes back to."""
    return (f"{PAUSED_WHILE}{GroupState(rolling).value}: the rollout stops before its next "
            f"edges; `edgefleet group resume {group}` goes on")


def paused_from(reason: str | None) -> GroupState:
    """The rolling state a group was paused in (:func:`pause_reason`); UPDATING when the
    reason does not say (a rollout that is not a group's first)."""
    if reason and reason.startswith(PAUSED_WHILE):
        word = reason[len(PAUSED_WHILE):].split(":", 1)[0].strip()
        if word in {s.value for s in ROLLING}:
            return GroupState(word)
    return G.UPDATING


def holding_hint(group: str, state: str | None, wave: int, waves: int) -> str | None:
    """What a group that waits needs from the operator (None when it waits for nothing)."""
    if state == G.AWAITING_APPROVAL:
        return (f"awaiting approval after wave {wave}/{waves}: run "
                f"`edgefleet group approve {group}`")
    if state == G.PAUSED:
        return f"paused in wave {wave}/{waves}: run `edgefleet group resume {group}`"
    return None


# ------------------------------------------------------------------ auto-update


class AutoUpdate(StrEnum):
    """Which newly published versions a group rolls out by itself (``--auto-update``)."""

    OFF = "off"
    PATCH = "patch"  # same major.minor: 1.2.0 → 1.2.3
    MINOR = "minor"  # same major: 1.2.0 → 1.4.0
    MAJOR = "major"  # any newer release: 1.2.0 → 2.0.0


def parse_auto_update(given: object) -> AutoUpdate:
    """``off``, ``patch``, ``minor`` or ``major`` (any case); anything else is refused by name."""
    if isinstance(given, AutoUpdate):
        return given
    if isinstance(given, str) and given.strip().lower() in set(AutoUpdate):
        return AutoUpdate(given.strip().lower())
    choices = "|".join(a.value for a in AutoUpdate)
    raise ValueError(f"auto_update {shown(given)} is not one of {choices} (which newly "
                     "published versions the group rolls out by itself)")


def auto_update_admits(level: AutoUpdate | str, target: str, published: str
                       ) -> tuple[bool, str]:
    """Whether a group on ``target`` at auto-update ``level`` rolls out ``published``, and why.

    Only a newer release: never an older or equal version, never a prerelease (a fleet is
    not a test bench; roll one out with `group update --to`). ``patch`` admits the same
    major.minor, ``minor`` the same major, ``major`` any newer release.
    """
    level = parse_auto_update(level)
    if level is AutoUpdate.OFF:
        return False, "auto-update is off"
    old, new = semver.Version.parse(target), semver.Version.parse(published)
    if new <= old:
        return False, f"{published} is not newer than {target}"
    if new.prerelease:
        return False, f"{published} is a prerelease (auto-update rolls out releases only)"
    same = {AutoUpdate.PATCH: (new.major, new.minor) == (old.major, old.minor),
            AutoUpdate.MINOR: new.major == old.major,
            AutoUpdate.MAJOR: True}[level]
    if not same:
        wider = "a minor" if new.major == old.major else "a major"
        return False, (f"{target} → {published} is {wider} release; auto-update {level.value} "
                       "leaves it to an operator")
    return True, f"auto-update {level.value} admits {target} → {published}"


class AutoUpdateStep(BaseModel):
    """What auto-update did with one group: the rollout it claimed (``claimed``), or why not."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    group: str
    application: str
    from_version: str
    to_version: str | None = None  # the version claimed, or the one that waits
    claimed: bool = False
    reason: str
