"""Deployment groups: the one table of group moves, and the rollout options at the door."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from edgefleet.errors import InvalidInput, InvalidTransition
from edgefleet.models.groups import (
    GROUP_TRANSITIONS,
    NEW_GROUP_STATE,
    GroupMove,
    GroupState,
    OnFailure,
    RolloutOptions,
    WaveTarget,
    group_sources,
    move_group,
    parse_waves,
    percent_text,
    waves_text,
)
from edgefleet.validation import validated

G = GroupState
M = GroupMove
ROLLING = {G.DEPLOYING, G.UPDATING}

# The table written out by hand: move -> {state it may start from: states it may lead to}.
EXPECTED: dict[GroupMove, dict[GroupState, set[GroupState]]] = {
    M.DEPLOY: {G.STOPPED: {G.DEPLOYING}},
    M.UPDATE: {G.STARTED: {G.UPDATING}, G.PARTIAL: {G.UPDATING}, G.HALTED: {G.UPDATING}},
    M.AWAIT_APPROVAL: {G.DEPLOYING: {G.AWAITING_APPROVAL}, G.UPDATING: {G.AWAITING_APPROVAL}},
    M.APPROVE: {G.AWAITING_APPROVAL: ROLLING},
    M.PAUSE: {G.DEPLOYING: {G.PAUSED}, G.UPDATING: {G.PAUSED}},
    M.RESUME: {G.PAUSED: ROLLING},
    M.FINISH: {G.DEPLOYING: {G.STARTED, G.PARTIAL}, G.UPDATING: {G.STARTED, G.PARTIAL}},
    M.HALT: {s: {G.HALTED} for s in (G.DEPLOYING, G.UPDATING, G.AWAITING_APPROVAL, G.PAUSED)},
    M.STOP: {s: {G.STOPPED} for s in G if s is not G.STOPPED},
}


def test_the_table_is_the_one_written_out() -> None:
    assert set(GROUP_TRANSITIONS) == set(GroupMove)
    for move, (sources, targets) in GROUP_TRANSITIONS.items():
        assert set(sources) == set(EXPECTED[move]), move
        for source in sources:
            assert set(targets) == EXPECTED[move][source], (move, source)


@pytest.mark.parametrize("move", list(GroupMove))
@pytest.mark.parametrize("state", list(GroupState))
def test_every_state_and_move(state: GroupState, move: GroupMove) -> None:
    targets = EXPECTED[move].get(state)
    if targets is None:
        with pytest.raises(InvalidTransition, match=f"cannot {move.value} a group in state "
                           f"{state.value} \\(allowed from: "):
            move_group(state, move, min(next(iter(EXPECTED[move].values()))))
        return
    for target in targets:
        assert move_group(state, move, target) is target
    if len(targets) == 1:
        assert move_group(state.value, move) is next(iter(targets))


@pytest.mark.parametrize(
    ("start", "move", "to", "end"),
    [
        (NEW_GROUP_STATE, M.AWAIT_APPROVAL, None, G.AWAITING_APPROVAL),
        (G.AWAITING_APPROVAL, M.APPROVE, G.DEPLOYING, G.DEPLOYING),
        (G.AWAITING_APPROVAL, M.APPROVE, G.UPDATING, G.UPDATING),
        (G.UPDATING, M.PAUSE, None, G.PAUSED),
        (G.PAUSED, M.RESUME, G.UPDATING, G.UPDATING),
        (G.DEPLOYING, M.FINISH, G.PARTIAL, G.PARTIAL),
        (G.UPDATING, M.HALT, None, G.HALTED),
        (G.AWAITING_APPROVAL, M.HALT, None, G.HALTED),  # the gate timed out
        (G.HALTED, M.UPDATE, None, G.UPDATING),
        (G.PARTIAL, M.UPDATE, None, G.UPDATING),  # auto-update, reconcile
        (G.PAUSED, M.STOP, None, G.STOPPED),
        (G.STOPPED, M.DEPLOY, None, G.DEPLOYING),  # re-launch
    ],
)
def test_a_group_s_life(start: GroupState, move: GroupMove, to: GroupState | None,
                        end: GroupState) -> None:
    assert move_group(start, move, to) is end


def test_refusals_name_the_states_allowed() -> None:
    with pytest.raises(InvalidTransition) as caught:
        move_group(G.DEPLOYING, M.UPDATE)
    assert str(caught.value) == ("cannot update a group in state DEPLOYING (allowed from: "
                                 "HALTED, PARTIAL, STARTED)")
    with pytest.raises(InvalidTransition, match="cannot stop a group in state STOPPED"):
        move_group("STOPPED", M.STOP)
    with pytest.raises(InvalidTransition, match="cannot pause a group in state "
                       "AWAITING_APPROVAL"):
        move_group(G.AWAITING_APPROVAL, M.PAUSE)


def test_a_move_with_several_targets_is_told_which() -> None:
    with pytest.raises(ValueError, match="approve leads to one of DEPLOYING, UPDATING: pass to="):
        move_group(G.AWAITING_APPROVAL, M.APPROVE)
    with pytest.raises(ValueError, match="not HALTED"):
        move_group(G.UPDATING, M.FINISH, G.HALTED)


def test_sources_for_a_compare_and_set() -> None:
    assert group_sources(M.UPDATE) == {G.STARTED, G.PARTIAL, G.HALTED}
    assert group_sources(M.FINISH, expect=G.UPDATING) == {G.UPDATING}
    with pytest.raises(InvalidTransition, match="allowed from: DEPLOYING, UPDATING"):
        group_sources(M.FINISH, expect=G.PAUSED)


# ------------------------------------------------------------------ rollout options


def test_defaults() -> None:
    options = RolloutOptions()
    assert options.waves == (WaveTarget(amount=100, percent=True),)
    assert (options.max_parallel, options.failure_threshold, options.on_failure,
            options.approve) == (10, 0.0, OnFailure.HALT, False)
    assert options.describe() == ("waves 100%, at most 10 edges at a time, halt once more than "
                                  "0% of the attempted edges fail, no approval between waves")


def test_options_from_cli_text_and_back() -> None:
    options = RolloutOptions(waves=" 1, 25% ,100%", max_parallel="3",  # type: ignore[arg-type]
                             failure_threshold="12.5%", on_failure="Rollback",
                             approve=True)
    assert waves_text(options.waves) == "1,25%,100%"
    dumped = options.model_dump(mode="json")
    assert dumped == {"waves": "1,25%,100%", "max_parallel": 3, "failure_threshold": 12.5,
                      "on_failure": "rollback", "approve": True}
    assert RolloutOptions.model_validate(dumped) == options  # a flow parameter round-trips
    assert RolloutOptions(waves=["1", 25, "100%"]).waves[1] == WaveTarget(amount=25)  # type: ignore[arg-type]
    assert RolloutOptions(failure_threshold=5).failure_threshold == 5.0
    assert RolloutOptions(failure_threshold="7").failure_threshold == 7.0  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "waves"),
    [
        ("100%", "100%"),
        ("1,25%,100%", "1,25%,100%"),
        ("25%,25%,100%", "25%,25%,100%"),  # an equal target: an empty wave, dropped later
        ("5,2%,100%", "5,2%,100%"),  # counts and percentages compare only at plan time
        ("1,2,5,100%", "1,2,5,100%"),
    ],
)
def test_waves_accepted(text: str, waves: str) -> None:
    assert waves_text(parse_waves(text)) == waves


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"waves": "1,50%"},
         "waves: the last wave is '50%', not '100%': targets are cumulative and must end at "
         "100% so that every edge is reached (e.g. 1,25%,100%)"),
        ({"waves": "3"}, "waves: the last wave is '3', not '100%'"),
        ({"waves": ""}, "waves are empty: give cumulative targets (e.g. 1,25%,100%)"),
        ({"waves": []}, "waves are empty"),
        ({"waves": "1,,100%"},
         "waves: wave 2 ('') is not a number of edges or a percentage (e.g. 1,25%,100%)"),
        ({"waves": "1,x%,100%"}, "waves: wave 2 ('x%') is not a number of edges or a percentage"),
        ({"waves": "-1,100%"}, "waves: wave 1 ('-1') is not a number"),
        ({"waves": "1.5,100%"}, "waves: wave 1 ('1.5') is not a number"),
        ({"waves": "0,100%"}, "waves: wave 1 ('0') reaches no edge: a wave is at least 1 edge "
         "or 1%"),
        ({"waves": "0%,100%"}, "waves: wave 1 ('0%') reaches no edge"),
        ({"waves": "10%,150%"}, "waves: wave 2 ('150%') is over 100%"),
        ({"waves": "50%,25%,100%"},
         "waves: wave 2 ('25%') is below wave 1 ('50%'): targets are cumulative, each at least "
         "the one before"),
        ({"waves": "5,25%,2,100%"}, "waves: wave 3 ('2') is below wave 1 ('5')"),
        ({"waves": ",".join(["1"] * 60)}, "60 waves are too many (at most 50)"),
        ({"waves": 7}, "waves 7 are not text such as 1,25%,100%"),
        ({"max_parallel": 0}, "max_parallel 0 is not a whole number of at least 1"),
        ({"max_parallel": True}, "max_parallel True is not a whole number"),
        ({"max_parallel": "many"}, "max_parallel 'many' is not a whole number"),
        ({"failure_threshold": "120%"},
         "failure_threshold '120%' is not a percentage from 0 to 100 (e.g. 0, 10 or 12.5%)"),
        ({"failure_threshold": -1}, "failure_threshold -1 is not a percentage"),
        ({"failure_threshold": "nan"}, "failure_threshold 'nan' is not a percentage"),
        ({"failure_threshold": "ten"}, "failure_threshold 'ten' is not a percentage"),
        ({"failure_threshold": False}, "failure_threshold False is not a percentage"),
        ({"on_failure": "abort"}, "on_failure 'abort' is not one of halt, rollback, continue"),
        ({"on_failure": 1}, "on_failure 1 is not one of"),
        ({"wave": "1,100%"}, "wave: Extra inputs are not permitted"),
    ],
)
def test_bad_options_are_refused_naming_the_input(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        validated(RolloutOptions, **fields)
    assert str(caught.value).startswith(message)
    with pytest.raises(ValidationError):
        RolloutOptions(**fields)


def test_options_are_frozen() -> None:
    with pytest.raises(ValidationError):
        RolloutOptions().approve = True  # type: ignore[misc]


@pytest.mark.parametrize(("value", "text"),
                         [(0, "0%"), (40, "40%"), (12.5, "12.5%"), (100 / 3, "33.33%"),
                          (0.04, "0.04%"), (100, "100%")])
def test_percent_text(value: float, text: str) -> None:
    assert percent_text(value) == text


@pytest.mark.parametrize(
    ("wave", "n", "reach"),
    [("25%", 4, 1), ("25%", 5, 2), ("1%", 4, 1), ("100%", 7, 7), ("3", 2, 2), ("3", 10, 3),
     ("50%", 0, 0), ("1", 0, 0)],
)
def test_a_wave_target_s_reach_rounds_up(wave: str, n: int, reach: int) -> None:
    (target,) = parse_waves([wave, "100%"])[:1]
    assert target.reach(n) == reach
