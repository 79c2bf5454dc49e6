"""A group's rollout: waves, the failure threshold, and the state it ends in (pure)."""

from __future__ import annotations

from typing import Any

import pytest

from edgefleet.group_plan import GroupEdge, GroupMember, GroupTarget, plan_group
from edgefleet.models.groups import GroupMove, GroupState, RolloutOptions, WaveTarget, parse_waves
from edgefleet.models.states import Availability, DeploymentState
from edgefleet.rollouts import (
    Decision,
    EdgeResult,
    Outcome,
    Verdict,
    decide,
    gate_after,
    plan_waves,
    rollout_order,
    summarize,
    wave_sizes,
)

S = DeploymentState
OK, FAIL, LATER = Outcome.SUCCEEDED, Outcome.FAILED, Outcome.DEFERRED


# ------------------------------------------------------------------ waves


@pytest.mark.parametrize(
    ("waves", "n", "sizes"),
    [
        ("1,25%,100%", 4, [1, 3]),  # 25% of 4 is 1: reached by the first wave, dropped
        ("1,25%,100%", 10, [1, 2, 7]),  # 25% of 10 rounds up to 3
        ("1,25%,100%", 2, [1, 1]),
        ("1,25%,100%", 1, [1]),
        ("1,25%,100%", 0, []),
        ("100%", 5, [5]),
        ("100%", 0, []),
        ("10%,50%,100%", 3, [1, 1, 1]),
        ("1%,100%", 1000, [10, 990]),
        ("5,2%,100%", 100, [5, 95]),  # 2% reaches 2, below the 5 already reached
        ("25%,25%,100%", 8, [2, 6]),  # a repeated target is an empty wave
        ("1,2,5,100%", 3, [1, 1, 1]),  # counts capped at the fleet
        ("50,100%", 7, [7]),
    ],
)
def test_wave_sizes(waves: str, n: int, sizes: list[int]) -> None:
    assert wave_sizes(parse_waves(waves), n) == sizes
    assert sum(sizes) == n


def test_waves_that_do_not_reach_every_edge_are_a_bug() -> None:
    with pytest.raises(ValueError, match="waves 1,50% reach 2 of 4 edges"):
        wave_sizes([WaveTarget(amount=1), WaveTarget(amount=50, percent=True)], 4)


def test_canaries_go_first_then_by_name() -> None:
    edges: dict[str, dict[str, str]] = {
        "lab-4": {}, "lab-1": {"tier": "edge"}, "lab-9": {"tier": "canary"}, "lab-2": {},
        "lab-3": {"tier": "canary", "site": "x"}, "lab-5": {}}
    assert rollout_order(edges) == ["lab-3", "lab-9", "lab-1", "lab-2", "lab-4", "lab-5"]
    assert plan_waves(edges, parse_waves("1,50%,100%")) == [
        ["lab-3"], ["lab-9", "lab-1"], ["lab-2", "lab-4", "lab-5"]]
    assert plan_waves(edges, RolloutOptions().waves) == [
        ["lab-3", "lab-9", "lab-1", "lab-2", "lab-4", "lab-5"]]


def test_small_fleets_and_no_edge() -> None:
    waves = parse_waves("1,25%,100%")
    assert plan_waves({}, waves) == []
    assert plan_waves({"solo": {}}, waves) == [["solo"]]
    assert plan_waves({"b": {}, "a": {}}, waves) == [["a"], ["b"]]


def test_waves_from_a_plan() -> None:
    plan = plan_group(
        GroupTarget(application="hello", version="1.1.0", spec_hash="h"),
        [GroupEdge(name=n, availability=Availability.ONLINE,
                   labels={"tier": "canary"} if n == "lab-3" else {}) for n in
         ("lab-1", "lab-2", "lab-3", "lab-4", "lab-5")]
        + [GroupEdge(name="lab-6", availability=Availability.OFFLINE)],
        [GroupMember(edge="lab-5", deployment_id="d5", version="1.1.0", state=S.STARTED,
                     spec_hash="h")],
        prune=False)
    # lab-5 is on the target and lab-6 deferred: 4 edges roll out, 25% of them is 1
    assert plan_waves(plan.rollout_edges(), parse_waves("1,25%,100%")) == [
        ["lab-3"], ["lab-1", "lab-2", "lab-4"]]


def test_the_approval_gate_sits_between_waves() -> None:
    gated = RolloutOptions(approve=True)
    assert [gate_after(gated, i, 3) for i in (1, 2, 3)] == [True, True, False]
    assert not gate_after(RolloutOptions(), 1, 3)
    assert not gate_after(gated, 1, 1)


# ------------------------------------------------------------------ failures


def results(*items: tuple[str, Outcome] | tuple[str, Outcome, str]) -> list[EdgeResult]:
    return [EdgeResult(edge=i[0], outcome=i[1], reason=i[2] if len(i) > 2 else None)
            for i in items]


def options(**given: Any) -> RolloutOptions:
    return RolloutOptions(**given)


def test_no_failure_goes_on() -> None:
    decision = decide(options(), results(("lab-1", OK), ("lab-2", LATER, "OFFLINE")))
    assert decision == Decision(verdict=Verdict.PROCEED, attempted=1,
                                reason="1 edge attempted, none failed")
    assert not decision.stops
    assert decide(options(), []).verdict is Verdict.PROCEED


def test_threshold_zero_halts_on_the_first_failure() -> None:
    decision = decide(options(), results(
        ("lab-1", OK), ("lab-2", FAIL, "health check failed"), ("lab-3", OK),
        ("lab-4", OK), ("lab-5", FAIL, "image pull failed"), ("lab-6", LATER, "OFFLINE")))
    assert decision.verdict is Verdict.HALT and decision.stops
    assert decision.reason == ("2 of 5 attempted edges failed (40% > threshold 0%): lab-2: "
                               "health check failed; lab-5: image pull failed")
    assert decision.failed == ("lab-2", "lab-5")
    assert decision.rollback == ()


def test_failures_at_or_under_the_threshold_go_on() -> None:
    given = results(("a", OK), ("b", OK), ("c", OK), ("d", FAIL, "unhealthy"))
    decision = decide(options(failure_threshold=25), given)
    assert decision.verdict is Verdict.PROCEED  # 25% is not above 25%
    assert decision.reason == ("1 of 4 attempted edges failed (25% ≤ threshold 25%): d: "
                               "unhealthy")
    assert decision.failed == ("d",)
    assert decide(options(failure_threshold="24.9%"), given).verdict is Verdict.HALT


def test_deferred_edges_are_not_attempted() -> None:
    given = results(("a", OK), ("b", FAIL), ("c", LATER), ("d", LATER), ("e", LATER))
    decision = decide(options(failure_threshold=49), given)
    assert decision.verdict is Verdict.HALT
    assert decision.reason == ("1 of 2 attempted edges failed (50% > threshold 49%): b: "
                               "no reason given")


def test_a_hundred_percent_threshold_never_stops() -> None:
    decision = decide(options(failure_threshold=100), results(("a", FAIL, "x")))
    assert decision.verdict is Verdict.PROCEED


def test_rollback_names_the_edges_this_rollout_updated() -> None:
    decision = decide(options(on_failure="rollback"), results(
        ("lab-3", OK), ("lab-1", OK), ("lab-2", FAIL, "crash loop"), ("lab-4", LATER)))
    assert decision.verdict is Verdict.ROLL_BACK and decision.stops
    assert decision.rollback == ("lab-3", "lab-1")  # in the order they were done


def test_continue_records_and_goes_on() -> None:
    decision = decide(options(on_failure="continue"), results(("a", FAIL, "x"), ("b", OK)))
    assert decision.verdict is Verdict.CONTINUE and not decision.stops
    assert decision.reason.startswith("1 of 2 attempted edges failed (50% > threshold 0%)")


def test_an_edge_tried_again_counts_by_its_last_result() -> None:
    given = results(("a", FAIL, "pull timed out"), ("b", OK), ("a", OK))
    assert decide(options(), given).verdict is Verdict.PROCEED
    given = results(("a", OK), ("a", FAIL, "unhealthy"), ("b", OK))
    decision = decide(options(on_failure="rollback"), given)
    assert decision.rollback == ("b",)
    assert decision.reason.startswith("1 of 2 attempted")


def test_many_failures_are_named_five_at_most() -> None:
    given = results(*[(f"e{i:02}", FAIL, "boom") for i in range(8)])
    assert decide(options(), given).reason == (
        "8 of 8 attempted edges failed (100% > threshold 0%): e00: boom; e01: boom; e02: boom; "
        "e03: boom; e04: boom; and 3 more")


def test_a_third_is_shown_rounded() -> None:
    given = results(("a", FAIL, "x"), ("b", OK), ("c", OK))
    assert decide(options(failure_threshold=33), given).reason.startswith(
        "1 of 3 attempted edges failed (33.33% > threshold 33%)")


# ------------------------------------------------------------------ how it ends

TARGET = GroupTarget(application="hello", version="1.1.0", spec_hash="h")


def edge(name: str, availability: Availability = Availability.ONLINE, matches: bool = True
         ) -> GroupEdge:
    return GroupEdge(name=name, availability=availability, matches=matches)


def member(name: str, version: str = "1.1.0", state: S = S.STARTED) -> GroupMember:
    return GroupMember(edge=name, deployment_id=f"d-{name}", version=version, state=state,
                       spec_hash="h")


def test_every_member_on_target_and_started_is_started() -> None:
    plan = plan_group(TARGET, [edge("a"), edge("b", Availability.OFFLINE)],
                      [member("a"), member("b")], prune=False)
    outcome = summarize(plan, decide(options(), results(("a", OK), ("b", OK))))
    assert (outcome.state, outcome.cause) == (GroupState.STARTED, "2 edges on 1.1.0, STARTED")
    assert outcome.move is GroupMove.FINISH


def test_members_kept_outside_do_not_count_against_started() -> None:
    plan = plan_group(TARGET, [edge("a"), edge("z", matches=False)],
                      [member("a"), member("z", "1.0.0")], prune=False)
    outcome = summarize(plan)
    assert outcome.state is GroupState.STARTED
    assert outcome.cause == ("1 edge on 1.1.0, STARTED; 1 kept outside the group (--prune is "
                             "off): z")


def test_deferred_or_failed_under_continue_is_partial() -> None:
    plan = plan_group(TARGET, [edge("a"), edge("b"), edge("c", Availability.OFFLINE),
                               edge("d")],
                      [member("a"), member("b", state=S.ERROR), member("d", "1.0.0")],
                      prune=False)
    decision = decide(options(on_failure="continue"), results(
        ("a", OK), ("b", FAIL, "unhealthy"), ("c", LATER, "OFFLINE"), ("d", FAIL, "pull")))
    assert decision.verdict is Verdict.CONTINUE
    outcome = summarize(plan, decision)
    assert outcome.state is GroupState.PARTIAL
    assert outcome.cause == "1 of 4 edges on 1.1.0 and STARTED; update b, d; defer c"
    assert outcome.move is GroupMove.FINISH


def test_a_stopped_rollout_is_halted() -> None:
    plan = plan_group(TARGET, [edge("a"), edge("b")], [member("a"), member("b", "1.0.0")],
                      prune=False)
    halted = decide(options(), results(("b", FAIL, "health check failed")))
    outcome = summarize(plan, halted)
    assert outcome.state is GroupState.HALTED and outcome.move is GroupMove.HALT
    assert outcome.cause == ("halted: 1 of 1 attempted edges failed (100% > threshold 0%): b: "
                             "health check failed")
    rolled = decide(options(on_failure="rollback"), results(("a", OK), ("b", FAIL, "unhealthy")))
    assert summarize(plan, rolled).cause == (
        "rolled back a and halted: 1 of 2 attempted edges failed (50% > threshold 0%): b: "
        "unhealthy")


def test_an_empty_group_is_started_and_says_so() -> None:
    outcome = summarize(plan_group(TARGET, [], [], prune=True))
    assert (outcome.state, outcome.cause) == (
        GroupState.STARTED,
        "nothing to do: no edge matches the selector and the group has no deployment")


def test_pending_removals_and_additions_are_partial() -> None:
    plan = plan_group(TARGET, [edge("a"), edge("n"), edge("old", matches=False)],
                      [member("a"), member("old")], prune=True)
    assert summarize(plan).cause == "1 of 2 edges on 1.1.0 and STARTED; add n; remove old"
