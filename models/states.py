"""Deployment states and the one table of legal transitions (the reference platform's rules),
and an edge's availability.

Every state change goes through :func:`transition`, so no caller can invent a half-state.
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
