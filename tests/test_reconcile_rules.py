"""The pure rules of reconcile-deployments and clean-up-edge, with a clock of the test's own."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from edgefleet import labels as L
from edgefleet.models.plans import ObservedContainer
from edgefleet.models.states import Action
from edgefleet.reconcile_rules import (
    Item,
    Limits,
    Owner,
    RunView,
    plan_clean_up,
    run_is_gone,
    settle,
)

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
RULES = Limits(silent=timedelta(seconds=100), stale=timedelta(minutes=10))
DEP = "0123456789abcdef0123456789abcdef"
NAME = "ef-0123456789ab-hello"


def ago(seconds: float) -> datetime:
    return NOW - timedelta(seconds=seconds)


@pytest.mark.parametrize(("run", "since", "expected"), [
    (None, ago(60), None),
    (None, ago(700), "no flow run was recorded and 11 min passed"),
    (RunView(found=False), ago(1), "its flow run no longer exists in Prefect"),
    (RunView(found=True, state="CRASHED", state_name="Crashed"), ago(1),
     "its flow run ended Crashed"),
    (RunView(found=True, state="COMPLETED", state_name="Completed"), ago(1),
     "its flow run ended Completed"),
    # alive: a recent heartbeat, however long it has been transient
    (RunView(found=True, state="RUNNING", changed=ago(3000), heartbeat=ago(20)), ago(3000),
     None),
    (RunView(found=True, state="RUNNING", changed=ago(300), heartbeat=ago(150)), ago(300),
     "its flow run is still marked RUNNING but sent no heartbeat for 2 min "
     "(its process is gone)"),
    # a run that beats every 120 s (a worker set otherwise) is given three of its beats
    (RunView(found=True, state="RUNNING", changed=ago(400), heartbeat=ago(150),
             beat_every=timedelta(seconds=120)), ago(400), None),
    (RunView(found=True, state="RUNNING", changed=ago(900), heartbeat=ago(380),
             beat_every=timedelta(seconds=120)), ago(900),
     "its flow run is still marked RUNNING but sent no heartbeat for 6 min "
     "(its process is gone)"),
    # no heartbeats at all (a run in a CLI process): only the long limit
    (RunView(found=True, state="RUNNING", changed=ago(300)), ago(300), None),
    (RunView(found=True, state="RUNNING", changed=ago(900)), ago(900),
     "its flow run is still marked RUNNING, sends no heartbeat and held it for 15 min"),
    (RunView(found=True, state="SCHEDULED", state_name="Late"), ago(60), None),
    (RunView(found=True, state="SCHEDULED", state_name="Late"), ago(660),
     "its flow run is still Late after 11 min"),
])
def test_when_a_run_is_gone(run: RunView | None, since: datetime, expected: str | None) -> None:
    assert run_is_gone(run, since, NOW, RULES) == expected


def container(name: str, version: str, state: str = "running", health: str | None = "healthy",
              service: str = "hello") -> ObservedContainer:
    return ObservedContainer(service=service, container_id=f"id-{name}"[:12], name=name,
                             image="reg/hello", state=state, health=health,
                             labels={L.VERSION: version, L.DEPLOYMENT: DEP})


WHY = "its flow run ended Crashed"
LEAD = f"the run that was updating it stopped without a result ({WHY})"


def test_an_interrupted_update_settles_on_what_runs() -> None:
    # the swap happened and the new container runs: STARTED on it, the swap confirmed
    swapped = settle("UPDATING", WHY, expected=["hello"], container_name=NAME, observed=[
        container(NAME, "1.0.0", state="exited", health=None),
        container(f"{NAME}-next", "1.1.0")])
    assert swapped.render() == (
        f"STARTED on 1.1.0; then confirm {NAME}-next as {NAME}: {LEAD}; found "
        f"{NAME}-next 1.1.0 running (healthy): running and healthy on version 1.1.0")
    assert swapped.action is Action.UPDATED
    # killed before the swap: the old one still runs, the half-made new one goes
    before = settle("UPDATING", WHY, expected=["hello"], container_name=NAME, observed=[
        container(NAME, "1.0.0"), container(f"{NAME}-next", "1.1.0", state="created",
                                            health=None)])
    assert before.render().startswith(f"STARTED on 1.0.0; then remove {NAME}-next: ")
    # nothing healthy: ERROR saying what was found
    sick = settle("UPDATING", WHY, expected=["hello"], container_name=NAME,
                  observed=[container(NAME, "1.1.0", health="unhealthy")])
    assert sick.render() == (f"ERROR: {LEAD}; found: {NAME} 1.1.0 running (unhealthy)")


def test_an_interrupted_deploy_and_stop() -> None:
    lead = f"the run that was starting it stopped without a result ({WHY})"
    assert settle("STARTING", WHY, expected=["hello"], container_name=NAME,
                  observed=[]).render() == f"ERROR: {lead}; found: no container"
    done = settle("STARTING", WHY, expected=["hello"], container_name=NAME,
                  observed=[container(NAME, "1.0.0")])
    assert (done.action, done.version) == (Action.STARTED, "1.0.0")
    # compose: a service that never came is named
    half = settle("STARTING", WHY, expected=["db", "web"], observed=[
        container("ef-x-web-1", "1.0.0", service="web")])
    assert half.render().endswith("found: ef-x-web-1 1.0.0 running (healthy); "
                                  "missing service(s): db")
    # unchanged services keep their older version label: the newest one is the version
    mixed = settle("UPDATING", WHY, expected=["db", "web"], observed=[
        container("ef-x-web-1", "1.1.0", service="web"),
        container("ef-x-db-1", "1.0.0", service="db", health=None)])
    assert (mixed.action, mixed.version) == (Action.UPDATED, "1.1.0")
    stop_lead = f"the run that was stopping it stopped without a result ({WHY})"
    assert settle("STOPPING", WHY, expected=["hello"], observed=[]).render() == (
        f"STOPPED: {stop_lead}; found no container left")
    assert settle("STOPPING", WHY, expected=["hello"],
                  observed=[container(NAME, "1.0.0")]).render() == (
        f"ERROR: {stop_lead}; found: {NAME} 1.0.0 running (healthy) (stop it again)")
    assert settle("STARTING", WHY, expected=["hello"], observed=[],
                  unreachable="connection refused").render() == (
        f"ERROR: {lead}; its edge did not answer: connection refused")


def test_the_clean_up_keeps_what_is_in_use() -> None:
    ids = {name: name[0] * 32 for name in ("running", "stopped", "failed", "broken", "gone",
                                           "updating")}
    owners = [
        Owner(ids["running"], "STARTED"),
        Owner(ids["stopped"], "STOPPED"),
        Owner(ids["failed"], "ERROR", last_flow="deploy-application"),
        Owner(ids["broken"], "ERROR", last_flow="update-application"),  # rollback failed
        Owner(ids["updating"], "UPDATING"),
    ]
    items = [Item(kind="container", id=f"c{key}", name=f"c-{key}", deployment_id=dep)
             for key, dep in ids.items()]
    items += [
        Item(kind="network", id="n1", name="ef-net-gone", deployment_id=ids["gone"]),
        Item(kind="network", id="n2", name=f"{L.project_name(ids['failed'])}_default",
             project=L.project_name(ids["failed"])),
        Item(kind="network", id="n3", name=f"{L.project_name(ids['running'])}_default",
             project=L.project_name(ids["running"])),
        Item(kind="network", id="n4", name="ef-999999999999_default", project="ef-999999999999"),
        Item(kind="network", id="n5", name="someone_default", project="someone"),
        Item(kind="container", id="c-unlabelled", name="mystery"),
        Item(kind="service", id="s1", name="ef-stack_web", deployment_id=ids["gone"]),
    ]
    rendered = [r.render() for r in plan_clean_up(items, owners)]
    assert rendered == [
        "remove service ef-stack_web (s1): deployment gggggggggggg no longer exists (deleted)",
        "remove container c-failed (cfailed): deployment ffffffffffff is ERROR after a failed "
        "deploy",
        "remove container c-gone (cgone): deployment gggggggggggg no longer exists (deleted)",
        "remove container c-stopped (cstopped): deployment ssssssssssss is STOPPED",
        "remove network ef-999999999999_default (n4): project ef-999999999999 no longer "
        "exists (deleted)",
        "remove network ef-ffffffffffff_default (n2): project ef-ffffffffffff is ERROR after a "
        "failed deploy",
        "remove network ef-net-gone (n1): deployment gggggggggggg no longer exists (deleted)",
    ]


def test_the_fault_flows_are_served_and_submittable() -> None:
    """reconcile-deployments on an interval, clean-up-edge on the online event and hourly;
    `edgefleet up` waits for both; a job can run them by name."""
    from edgefleet import jobs, server
    from edgefleet.deployments.work_pool import build_deployments

    built = {d.name: d for d in build_deployments()}
    assert set(server.SERVED_FLOWS) == set(built)
    assert set(jobs.FLOWS) <= set(built)
    reconcile, clean = built["reconcile-deployments"], built["clean-up-edge"]
    assert [s.schedule.interval.total_seconds() for s in reconcile.schedules] == [60]
    (trigger,) = clean.triggers
    assert trigger.expect == {"edgefleet.edge.online"}
    assert trigger.parameters == {"edge": "{{ event.payload.edge }}",
                                  "docker_host": "{{ event.payload.docker_host }}"}
    assert [s.schedule.interval.total_seconds() for s in clean.schedules] == [3600]
    for name in ("reconcile-deployments", "clean-up-edge"):
        assert jobs.load_flow(name).name == name
