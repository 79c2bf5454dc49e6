"""Tasks over a deployment group's records: observe it as a plan, add a member, record the
progress and the end of a rollout (each a compare-and-set where the state moves)."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NONE
from pydantic import BaseModel, ConfigDict

from edgefleet.crud import (
    add_member,
    get_edge,
    get_group,
    move_group_record,
    observe_group,
)
from edgefleet.db import session_scope
from edgefleet.group_plan import GroupPlan, plan_group
from edgefleet.models.groups import GroupMove, GroupState, RolloutOptions
from edgefleet.models.records import Deployment, utcnow
from edgefleet.tasks.retry import unless_final


class GroupView(BaseModel):
    """A group as one rollout sees it: its target, state, rollout options and plan."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    application: str
    version: str
    state: GroupState
    options: RolloutOptions
    plan: GroupPlan


@task(name="plan-group", task_run_name="plan group {name}", retries=2, retry_delay_seconds=1,
      cache_policy=NONE, retry_condition_fn=unless_final)
def load_group_plan(name: str) -> GroupView:
    """Observe the group's members and matching edges (availability from the records) and
    plan what each edge needs."""
    with session_scope() as session:
        group = get_group(session, name=name)
        target, edges, members, matched_by = observe_group(session, group=group)
        plan = plan_group(target, edges, members, prune=group.prune, matched_by=matched_by)
        return GroupView(name=group.name, application=target.application,
                         version=group.version, state=GroupState(group.state),
                         options=RolloutOptions.model_validate(group.options), plan=plan)


@task(name="add-group-member", task_run_name="add {edge} to group {name}", retries=2,
      retry_delay_seconds=1, cache_policy=NONE, retry_condition_fn=unless_final)
def add_group_member(name: str, edge: str) -> str:
    """A CREATED member deployment of the group on ``edge``; returns its id."""
    with session_scope() as session:
        group = get_group(session, name=name)
        return add_member(session, group=group, edge=get_edge(session, name=edge)).id


@task(name="member-error", cache_policy=NONE)
def member_error(deployment_id: str) -> str | None:
    """A member's last error as its run left it (why an update failed, or was rolled back)."""
    with session_scope() as session:
        dep = session.get(Deployment, deployment_id)
        return dep.last_error if dep is not None else "the deployment is gone"


@task(name="record-group-progress", task_run_name="group {name}: wave {wave}/{waves}",
      retries=2, retry_delay_seconds=1, cache_policy=NONE)
def record_group_progress(name: str, wave: int, waves: int, flow_run_id: str | None = None
                          ) -> None:
    """The wave the rollout has reached, for `group status` and `--wait`."""
    with session_scope() as session:
        group = get_group(session, name=name)
        group.wave, group.waves, group.updated_at = wave, waves, utcnow()
        if flow_run_id:
            group.flow_run_id = flow_run_id
        session.add(group)


@task(name="end-group-rollout", task_run_name="group {name}: {move.value}", retries=2,
      retry_delay_seconds=1, cache_policy=NONE, retry_condition_fn=unless_final)
def end_group_rollout(name: str, move: GroupMove, to: GroupState, expect: GroupState,
                      reason: str) -> GroupState:
    """The rollout is over: the group moves from the state this run held (``expect``) to
    STARTED, PARTIAL or HALTED, with the reason."""
    with session_scope() as session:
        return move_group_record(session, name=name, move=move,
                                 to=None if move is GroupMove.HALT else to, expect=expect,
                                 reason=reason)


@task(name="read-group-state", task_run_name="group {name}: state", retries=2,
      retry_delay_seconds=1, cache_policy=NONE, retry_condition_fn=unless_final)
def read_group_state(name: str) -> tuple[GroupState, str | None]:
    """The group's state and reason now: a rollout looks between its batches whether an
    operator paused it."""
    with session_scope() as session:
        group = get_group(session, name=name)
        return GroupState(group.state), group.reason


@task(name="move-group", task_run_name="group {name}: {move.value}", retries=2,
      retry_delay_seconds=1, cache_policy=NONE, retry_condition_fn=unless_final)
def move_group_state(name: str, move: GroupMove, expect: GroupState,
                     to: GroupState | None = None, reason: str | None = None) -> GroupState:
    """One move of the group by its rollout run (to the gate, through it, back from a
    pause), from the state this run left it in (``expect``); the reason replaces the old."""
    with session_scope() as session:
        return move_group_record(session, name=name, move=move, to=to, expect=expect,
                                 reason=reason)
