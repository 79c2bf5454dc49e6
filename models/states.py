"""Deployment states and the one table of legal transitions (the reference platform's rules),
and an edge's availability.

Every state change goes through this table, so no caller can invent a half-state: a check
uses :func:`transition`; the change itself is one compare-and-set in the database whose
``WHERE`` holds :func:`sources` (``tasks.records.move_state``).
"""

from __future__ import annotations

from enum import StrEnum


class DeploymentState(StrEnum):
    CREATED = "CREATED"
    STARTING = "STARTING"
    STARTED = "STARTED"
    UPDATING = "UPDATING"
    STOPPING = "STOPPING"
    STOPPED = "STOPPED"
    ERROR = "ERROR"


class Action(StrEnum):
    START = "start"
    STARTED = "started"
    UPDATE = "update"
    UPDATED = "updated"
    STOP = "stop"
    STOPPED = "stopped"
    FAIL = "fail"


class Work(StrEnum):
    """What a sweep does for one edge: a full sample, only a ping, or nothing."""

    SAMPLE = "sample"
    HEARTBEAT = "heartbeat"
    NONE = "none"


class Availability(StrEnum):
    """An edge's status by the heartbeat rule (``edgefleet.metrics.availability``)."""

    ONLINE = "ONLINE"
    OFFLINE = "OFFLINE"


S = DeploymentState

# action -> (states it may start from, state it leads to)
TRANSITIONS: dict[Action, tuple[frozenset[DeploymentState], DeploymentState]] = {
    Action.START: (frozenset({S.CREATED, S.STOPPED}), S.STARTING),
    Action.STARTED: (frozenset({S.STARTING}), S.STARTED),
    Action.UPDATE: (frozenset({S.STARTED, S.ERROR}), S.UPDATING),
    Action.UPDATED: (frozenset({S.UPDATING}), S.STARTED),
    Action.STOP: (frozenset({S.STARTING, S.UPDATING, S.STARTED, S.ERROR}), S.STOPPING),
    Action.STOPPED: (frozenset({S.STOPPING}), S.STOPPED),
    Action.FAIL: (frozenset({S.STARTING, S.UPDATING, S.STOPPING, S.STARTED}), S.ERROR),
}

DELETABLE: frozenset[DeploymentState] = frozenset({S.CREATED, S.STOPPED})


class IllegalTransition(ValueError):
    """Raised by :func:`transition`; converted to ``InvalidTransition`` at the API boundary."""


def transition(current: DeploymentState | str, action: Action) -> DeploymentState:
    """Return the state ``action`` leads to from ``current``, or raise IllegalTransition."""
    state = DeploymentState(current)
    allowed, target = TRANSITIONS[action]
    if state not in allowed:
        names = ", ".join(sorted(s.value for s in allowed))
        raise IllegalTransition(
            f"cannot {action.value} a deployment in state {state.value} (allowed from: {names})"
        )
    return target


def sources(action: Action, expect: DeploymentState | str | None = None
            ) -> frozenset[DeploymentState]:
    """The states ``action`` may move a deployment from: all the table allows, or only
    ``expect``, the state this run put it in (so no run ends another run's transition)."""
    allowed, _target = TRANSITIONS[action]
    if expect is None:
        return allowed
    state = DeploymentState(expect)
    if state not in allowed:
        transition(state, action)  # raises, naming the states allowed
    return frozenset({state})


def refusal(action: Action, found: DeploymentState | str,
            expect: DeploymentState | str | None = None) -> str:
    """Why a compare-and-set of ``action`` moved nothing, naming the state found."""
    state = DeploymentState(found)
    allowed, _target = TRANSITIONS[action]
    if expect is not None and state in allowed:
        return (f"cannot {action.value} a deployment in state {state.value}: this run left it "
                f"{DeploymentState(expect).value} and another run has moved it since")
    names = ", ".join(sorted(s.value for s in allowed))
    return (f"cannot {action.value} a deployment in state {state.value} (allowed from: "
            f"{names}); another run may have moved it")

