"""The deployment state machine: the reference platform's rules, in one table."""

import pytest

from edgefleet.models.states import (
    Action,
    DeploymentState,
    IllegalTransition,
    transition,
)

S = DeploymentState


@pytest.mark.parametrize(
    ("start", "action", "end"),
    [
        (S.CREATED, Action.START, S.STARTING),
        (S.STOPPED, Action.START, S.STARTING),
        (S.STARTING, Action.STARTED, S.STARTED),
        (S.STARTED, Action.UPDATE, S.UPDATING),
        (S.ERROR, Action.UPDATE, S.UPDATING),
        (S.UPDATING, Action.UPDATED, S.STARTED),
        (S.STARTING, Action.STOP, S.STOPPING),
        (S.UPDATING, Action.STOP, S.STOPPING),
        (S.STARTED, Action.STOP, S.STOPPING),
        (S.ERROR, Action.STOP, S.STOPPING),
        (S.STOPPING, Action.STOPPED, S.STOPPED),
        (S.STARTING, Action.FAIL, S.ERROR),
        (S.UPDATING, Action.FAIL, S.ERROR),
    ],
)
def test_legal_transitions(start: S, action: Action, end: S) -> None:
    assert transition(start, action) is end


@pytest.mark.parametrize(
    ("start", "action"),
    [
        (S.STARTED, Action.START),
        (S.STARTING, Action.START),
        (S.CREATED, Action.UPDATE),
        (S.STOPPED, Action.UPDATE),
        (S.CREATED, Action.STOP),
        (S.STOPPED, Action.STOP),
        (S.CREATED, Action.STARTED),
    ],
)
def test_illegal_transitions_name_the_allowed_states(start: S, action: Action) -> None:
    with pytest.raises(IllegalTransition, match="allowed from"):
        transition(start, action)

