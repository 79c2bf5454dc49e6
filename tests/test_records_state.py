"""State changes are compare-and-sets, applied specs live in the records (no engine here).

Each test gets empty records of its own, on SQLite and again on a real PostgreSQL server
(``empty_records``): the claim that two runs can never both move a deployment is tested
against both databases' own locking, with real concurrent sessions.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import Session, select

import edgefleet
from edgefleet.db import get_engine
from edgefleet.errors import AlreadyExists, EdgefleetError, NotFound, StateConflict
from edgefleet.models.inputs import AppKind
from edgefleet.models.plans import RenderedSpec
from edgefleet.models.records import AppliedSpec
from edgefleet.models.states import Action, DeploymentState
from edgefleet.tasks import records as R

S = DeploymentState


@pytest.fixture(autouse=True)
def own_records(empty_records: str) -> str:
    return empty_records


def new_deployment(app: str = "cas") -> str:
    edgefleet.add_edge("e-unchecked", "tcp://127.0.0.1:1", check=False)
    edgefleet.create_application(app, "1.0.0", image="x:1")
    edgefleet.add_version(app, "1.1.0", image="x:2")
    edgefleet.publish_version(app, "1.0.0")
    return edgefleet.create_deployment(app, "e-unchecked").id


def state_of(dep_id: str) -> str:
    return str(edgefleet.deployment_status(dep_id)["state"])


def test_two_sessions_try_the_same_move_and_exactly_one_wins() -> None:
    """Session one moves CREATED → STARTING and holds its transaction open; session two
    tries the same move meanwhile (it waits on the database's lock), then finds STARTING."""
    dep_id = new_deployment()
    engine = get_engine()
    outcome: dict[str, Any] = {}
    first = Session(engine)
    try:
        assert R.compare_and_set(first, dep_id, Action.START) is S.STARTING

        def second() -> None:
            with Session(engine) as session:
                try:
                    outcome["won"] = R.compare_and_set(session, dep_id, Action.START)
                    session.commit()
                except EdgefleetError as exc:
                    session.rollback()
                    outcome["lost"] = exc

        other = threading.Thread(target=second)
        other.start()
        other.join(timeout=1.0)
        assert other.is_alive(), "the second move did not wait for the first transaction"
        first.commit()
        other.join(timeout=30)
        assert not other.is_alive()
    finally:
        first.close()
    assert "won" not in outcome
    lost = outcome["lost"]
    assert isinstance(lost, StateConflict)
    assert lost.found == "STARTING" and lost.action == "start"
    assert "in state STARTING" in str(lost) and "another run" in str(lost)
    assert state_of(dep_id) == "STARTING"


def test_many_runs_race_for_one_move() -> None:
    dep_id = new_deployment()
    barrier = threading.Barrier(6)

    def attempt(_: int) -> str | EdgefleetError:
        barrier.wait()
        try:
            return R.move_state.fn(dep_id, Action.START, flow_run_id="run")
        except EdgefleetError as exc:
            return exc

    with ThreadPoolExecutor(6) as pool:
        results = list(pool.map(attempt, range(6)))
    assert results.count("STARTING") == 1, results
    losers = [r for r in results if r != "STARTING"]
    assert len(losers) == 5
    assert all(isinstance(r, StateConflict) and r.found == "STARTING" for r in losers)


def test_a_run_ends_only_the_transition_it_began() -> None:
    dep_id = new_deployment()
    R.move_state.fn(dep_id, Action.START)
    R.move_state.fn(dep_id, Action.STARTED)
    assert R.move_state.fn(dep_id, Action.UPDATE, expect=S.STARTED) == "UPDATING"  # run X
    R.move_state.fn(dep_id, Action.STOP)  # run Y stops it meanwhile: STOPPING
    # X's failure is not allowed to turn Y's STOPPING into ERROR
    with pytest.raises(StateConflict, match="left it UPDATING and another run") as caught:
        R.move_state.fn(dep_id, Action.FAIL, error="x failed", expect=S.UPDATING)
    assert caught.value.found == "STOPPING"
    assert state_of(dep_id) == "STOPPING"
    assert edgefleet.deployment_status(dep_id)["last_error"] is None
    assert R.move_state.fn(dep_id, Action.STOPPED) == "STOPPED"


def test_an_illegal_move_names_the_state_found_and_changes_nothing() -> None:
    dep_id = new_deployment()
    with pytest.raises(StateConflict, match=r"cannot update a deployment in state CREATED "
                                            r"\(allowed from: ERROR, STARTED\)"):
        R.move_state.fn(dep_id, Action.UPDATE)
    with pytest.raises(EdgefleetError, match="cannot stopped"):
        R.move_state.fn(dep_id, Action.STOPPED, expect=S.STARTED)  # not a legal source
    with pytest.raises(NotFound):
        R.move_state.fn("no-such-deployment", Action.START)
    assert state_of(dep_id) == "CREATED"


def spec(version: str, text: str, kind: AppKind = AppKind.COMPOSE) -> RenderedSpec:
    return RenderedSpec(version=version, kind=kind, text=text, env={"MODE": version},
                        digests={"x:1": f"sha256:{version}"}, source_key=f"key-{version}")


def test_applied_specs_form_a_chain_the_plan_and_a_rollback_follow() -> None:
    dep_id = new_deployment()
    assert R.load_plan.fn(dep_id).applied is None
    one = R.record_spec.fn(dep_id, spec("1.0.0", "{one}"), resolved={"services": {"a": {}}})
    two = R.record_spec.fn(dep_id, spec("1.1.0", "{two}"))
    assert R.record_spec.fn(dep_id, spec("1.1.0", "{two}")).id == two.id  # not twice
    plan = R.load_plan.fn(dep_id)
    assert plan.applied == two  # what an update of this deployment would roll back to
    assert R.cached_model(dep_id, "key-1.0.0") == {"services": {"a": {}}}
    assert R.cached_model(dep_id, "key-1.1.0") is None

    bad = R.record_spec.fn(dep_id, spec("2.0.0", "{bad}"))
    assert R.load_applied_spec.fn(dep_id) == bad
    assert R.restore_spec.fn(dep_id, two) == two
    assert R.load_applied_spec.fn(dep_id) == two
    shown = edgefleet.deployment_status(dep_id)["applied_spec"]
    assert shown["id"] == two.id and shown["version"] == "1.1.0"
    assert shown["previous_id"] == one.id
    from edgefleet.db import session_scope

    with session_scope() as session:
        rows = {r.version: r for r in session.exec(select(AppliedSpec)).all()}
        assert rows["2.0.0"].outcome == "rolled back" and rows["2.0.0"].previous_id == two.id
        assert rows["1.1.0"].outcome == "applied"
    edgefleet.delete_deployment(dep_id)  # its specs go with it
    with session_scope() as session:
        assert session.exec(select(AppliedSpec)).all() == []


def test_delete_refuses_a_deployment_another_run_started() -> None:
    dep_id = new_deployment()
    real: Callable[..., Any] = edgefleet.api.deployments.find_deployment
    calls = {"n": 0}

    def start_meanwhile(session: Session, ref: str) -> Any:
        calls["n"] += 1
        row = real(session, ref)
        if calls["n"] == 1:  # after delete read CREATED, another run starts it
            R.move_state.fn(dep_id, Action.START)
        return row

    edgefleet.api.deployments.find_deployment = start_meanwhile  # type: ignore[attr-defined]
    try:
        with pytest.raises(StateConflict, match="STARTING now"):
            edgefleet.delete_deployment(dep_id)
    finally:
        edgefleet.api.deployments.find_deployment = real  # type: ignore[attr-defined]
    assert state_of(dep_id) == "STARTING"


def test_two_adds_of_one_edge_name_give_one_edge() -> None:
    barrier = threading.Barrier(4)

    def add(_: int) -> str:
        barrier.wait()
        try:
            edgefleet.add_edge("twin", "tcp://127.0.0.1:1", check=False)
            return "added"
        except AlreadyExists:
            return "exists"

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(add, range(4)))
    assert sorted(results) == ["added", "exists", "exists", "exists"]
    assert [e.name for e in edgefleet.list_edges()] == ["twin"]


RELATIVE = """
services:
  web:
    image: 127.0.0.1:1/hello:1.1.0
    environment: {MODE: "${MODE:-test}"}
    volumes: ["./data:/data"]
"""


def test_compose_is_resolved_alike_in_every_home_and_cached_in_the_records(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``config`` needs no engine: a relative path resolves to the same fixed project
    directory whichever home runs it, and a model once applied is read from the records."""
    from edgefleet.settings import get_settings
    from edgefleet.tasks import compose as C

    edgefleet.add_edge("e-unchecked", "tcp://127.0.0.1:1", check=False)
    edgefleet.create_application("rel", "1.0.0", compose=RELATIVE, env=["MODE=prod"],
                                 allow_privileged=True)  # a bind mount of a host path
    edgefleet.publish_version("rel", "1.0.0")
    dep_id = edgefleet.create_deployment("rel", "e-unchecked").id
    database_url = get_settings().database_url
    models = []
    for name in ("a", "b"):
        monkeypatch.setenv("EDGEFLEET_HOME", str(tmp_path / name))
        monkeypatch.setenv("EDGEFLEET_DATABASE_URL", database_url)
        get_settings.cache_clear()
        plan = R.load_plan.fn(dep_id)
        models.append(C.resolve_compose.fn(plan))
        assert not (tmp_path / name / "deployments").exists()
    get_settings.cache_clear()
    assert models[0] == models[1]
    (volume,) = models[0]["services"]["web"]["volumes"]
    assert volume["source"] == f"/var/lib/edgefleet/projects/{plan.project}/data"
    assert models[0]["services"]["web"]["environment"] == {"MODE": "prod"}

    spec = C.render_compose(plan, models[0], {"127.0.0.1:1/hello:1.1.0": "sha256:abc"})
    assert '"image": "127.0.0.1:1/hello:1.1.0@sha256:abc"' in spec.text
    R.record_spec.fn(dep_id, spec, resolved=models[0])
    compose_config = C.compose_cli.compose
    monkeypatch.setattr(C.compose_cli, "compose", lambda *a, **k: pytest.fail("ran config"))
    assert C.resolve_compose.fn(plan) == models[0]  # from the records, not compose
    monkeypatch.setattr(C.compose_cli, "compose", compose_config)
