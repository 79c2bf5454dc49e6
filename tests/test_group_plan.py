"""The group planner, compared as rendered text (no records, no engine)."""

from __future__ import annotations

from edgefleet.group_plan import (
    GroupEdge,
    GroupMember,
    GroupTarget,
    plan_group,
)
from edgefleet.models.states import Availability, DeploymentState

S = DeploymentState
ON, OFF = Availability.ONLINE, Availability.OFFLINE
TARGET = GroupTarget(application="hello", version="1.1.0", spec_hash="h2")


def edge(name: str, availability: Availability | None = ON, *, matches: bool = True,
         **labels: str) -> GroupEdge:
    return GroupEdge(name=name, availability=availability, labels=labels, matches=matches)


def member(name: str, version: str = "1.1.0", state: S = S.STARTED, spec: str = "h2",
           dep: str | None = None) -> GroupMember:
    return GroupMember(edge=name, deployment_id=dep or f"dep-{name}", version=version,
                       state=state, spec_hash=spec)


def test_every_action_with_its_cause() -> None:
    plan = plan_group(
        TARGET,
        [edge("lab-1"), edge("lab-2"), edge("lab-3", tier="canary"), edge("lab-4"),
         edge("lab-5", OFF), edge("lab-6", matches=False), edge("lab-7", matches=False)],
        [member("lab-1", "1.0.0"), member("lab-2", state=S.ERROR), member("lab-4"),
         member("lab-5", "1.0.0"), member("lab-6"), member("lab-7")],
        prune=True,
    )
    assert plan.render() == "\n".join([
        "update lab-1: 1.0.0 → 1.1.0",
        "update lab-2: deployment ERROR, not STARTED",
        "add    lab-3: matches the selector, no deployment yet",
        "keep   lab-4: on 1.1.0, STARTED",
        "defer  lab-5: OFFLINE; then update: 1.0.0 → 1.1.0",
        "remove lab-6: no longer matches the selector (--prune)",
        "remove lab-7: no longer matches the selector (--prune)",
    ])
    assert plan.needs_rollout
    assert plan.rollout_edges() == {"lab-1": {}, "lab-2": {}, "lab-3": {"tier": "canary"}}
    assert plan.edges("remove") == ["lab-6", "lab-7"]
    (deferred,) = [a for a in plan.actions if a.action == "defer"]
    assert (deferred.deferred, deferred.deployment_id, deferred.version_before) == (
        "update", "dep-lab-5", "1.0.0")


def test_without_prune_members_that_no_longer_match_are_kept_untouched() -> None:
    plan = plan_group(TARGET, [edge("lab-6", matches=False), edge("lab-7", OFF, matches=False)],
                      [member("lab-6", "1.0.0"), member("lab-7", state=S.ERROR)], prune=False)
    assert plan.render() == "\n".join([
        "keep   lab-6: no longer matches the selector; kept because --prune is off",
        "keep   lab-7: no longer matches the selector; kept because --prune is off",
    ])
    assert not plan.needs_rollout
    assert [a.matches for a in plan.actions] == [False, False]


def test_a_static_list_words_its_causes() -> None:
    plan = plan_group(TARGET, [edge("a"), edge("b", matches=False)], [member("b")],
                      prune=True, matched_by="list")
    assert plan.render() == "\n".join([
        "add    a: is in the group's list, no deployment yet",
        "remove b: no longer in the group's list (--prune)",
    ])


def test_a_changed_spec_is_an_update_and_every_difference_is_named() -> None:
    plan = plan_group(TARGET, [edge("a"), edge("b"), edge("c")],
                      [member("a", spec="h1"), member("b", "1.0.0", S.ERROR, "h1"),
                       member("c", state=S.STOPPED)], prune=False)
    assert plan.render() == "\n".join([
        "update a: configuration changed",
        "update b: 1.0.0 → 1.1.0; configuration changed; deployment ERROR, not STARTED",
        "update c: deployment STOPPED, not STARTED",
    ])
    assert [a.state_before for a in plan.actions] == [S.STARTED, S.ERROR, S.STOPPED]


def test_offline_and_unknown_edges_are_deferred_never_failed() -> None:
    plan = plan_group(TARGET, [edge("a", OFF), edge("b", None), edge("c", OFF),
                               edge("d", None, matches=False)],
                      [member("c"), member("d")], prune=True)
    assert plan.render() == "\n".join([
        "defer  a: OFFLINE; then add: matches the selector, no deployment yet",
        "defer  b: availability UNKNOWN; then add: matches the selector, no deployment yet",
        "keep   c: on 1.1.0, STARTED (edge OFFLINE)",
        "defer  d: availability UNKNOWN; then remove: no longer matches the selector (--prune)",
    ])
    assert [a.deferred for a in plan.actions] == ["add", "add", None, "remove"]
    assert not plan.needs_rollout
    assert plan.rollout_edges() == {}


def test_a_deployment_another_run_is_busy_with_waits() -> None:
    plan = plan_group(TARGET, [edge("a"), edge("b"), edge("c", matches=False)],
                      [member("a", "1.0.0", S.UPDATING), member("b", state=S.STARTING),
                       member("c", state=S.STOPPING)], prune=True)
    assert plan.render() == "\n".join([
        "defer  a: deployment UPDATING, another run is at work on it; then update: "
        "1.0.0 → 1.1.0",
        "defer  b: deployment STARTING, another run is at work on it",
        "defer  c: deployment STOPPING, another run is at work on it; then remove: no longer "
        "matches the selector (--prune)",
    ])
    assert [a.deferred for a in plan.actions] == ["update", None, "remove"]


def test_a_member_whose_edge_is_gone_no_longer_matches() -> None:
    assert plan_group(TARGET, [], [member("gone")], prune=True).render() == (
        "defer  gone: edge not known (availability UNKNOWN); then remove: no longer matches "
        "the selector (--prune)")
    assert plan_group(TARGET, [], [member("gone")], prune=False).render() == (
        "keep   gone: no longer matches the selector; kept because --prune is off")


def test_a_second_deployment_on_one_edge_is_removed_the_one_on_target_stays() -> None:
    plan = plan_group(TARGET, [edge("a")],
                      [member("a", "1.0.0", dep="0001"), member("a", dep="0002")], prune=False)
    assert plan.render() == "\n".join([
        "remove a: a second deployment of the group on this edge (0001; 0002 stays)",
        "keep   a: on 1.1.0, STARTED",
    ])
    assert [a.deployment_id for a in plan.actions] == ["0001", "0002"]


def test_nothing_to_do() -> None:
    assert plan_group(TARGET, [], [], prune=True).render() == (
        "nothing to do: no edge matches the selector and the group has no deployment")
    assert plan_group(TARGET, [], [], prune=True, matched_by="list").render() == (
        "nothing to do: the group lists no edge and has no deployment")
    plan = plan_group(TARGET, [edge("a")], [member("a")], prune=True)
    assert plan.render() == "keep   a: on 1.1.0, STARTED"
    assert not plan.needs_rollout


def test_the_plan_is_sorted_and_does_not_depend_on_input_order() -> None:
    edges = [edge(f"lab-{i}") for i in (3, 1, 10, 2)]
    members = [member("lab-10", "1.0.0"), member("lab-2")]
    forward = plan_group(TARGET, edges, members, prune=False)
    backward = plan_group(TARGET, edges[::-1], members[::-1], prune=False)
    assert forward == backward
    assert [a.edge for a in forward.actions] == ["lab-1", "lab-10", "lab-2", "lab-3"]


def test_the_plan_is_plain_data_for_a_flow() -> None:
    plan = plan_group(TARGET, [edge("a", tier="canary")], [], prune=False)
    data = plan.model_dump(mode="json")
    assert data["actions"][0] == {
        "edge": "a", "action": "add", "cause": "matches the selector, no deployment yet",
        "deferred": None, "deployment_id": None, "version_before": None, "state_before": None,
        "labels": {"tier": "canary"}, "matches": True}
    assert type(plan).model_validate(data) == plan
