"""The Python API on records alone (no engine): duplicates and bad input change nothing."""

import pytest

import edgefleet
from edgefleet.errors import (
    AlreadyExists,
    EdgeUnreachable,
    InvalidInput,
    InvalidTransition,
    NotFound,
)


@pytest.fixture(autouse=True)
def own_records(empty_records: str) -> str:
    """Each test gets an empty database of its own (SQLite, then PostgreSQL)."""
    return empty_records


COMPOSE = "services:\n  web:\n    image: 127.0.0.1:5000/edgefleet/hello:1.0.0\n"


def test_application_lifecycle_and_duplicates() -> None:
    edgefleet.create_application("shop", "1.0.0", image="registry.local/shop:1.0.0",
                                 ports=["8080"], env=["MODE=prod"])
    with pytest.raises(AlreadyExists):
        edgefleet.create_application("shop", "1.0.0", image="registry.local/shop:1.0.0")
    edgefleet.add_version("shop", "1.1.0", image="registry.local/shop:1.1.0")
    with pytest.raises(AlreadyExists):
        edgefleet.add_version("shop", "1.1.0", image="registry.local/shop:1.1.0")
    edgefleet.publish_version("shop", "1.1.0")
    edgefleet.publish_version("shop", "1.1.0")  # idempotent
    shown = edgefleet.show_application("shop")
    assert [v["version"] for v in shown["versions"]] == ["1.0.0", "1.1.0"]
    assert shown["latest_published"] == "1.1.0"
    assert shown["versions"][0]["env"] == {"MODE": "prod"}


@pytest.mark.parametrize(
    "kwargs",
    [
        {"version": "1.0", "image": "x:1"},
        {"version": "1.0.0"},
        {"version": "1.0.0", "image": "x:1", "compose": COMPOSE},
        {"version": "1.0.0", "compose": "services: ["},
        {"version": "1.0.0", "compose": "[1, 2]"},
        {"version": "1.0.0", "image": "x:1", "ports": ["abc"]},
        {"version": "1.0.0", "image": "x:1", "env": ["nokey"]},
        {"version": "1.0.0", "compose": "x: &a [*a]\n" + COMPOSE},
        {"version": "1.0.0", "compose": COMPOSE + "  db: {image: a}\n  db: {image: b}\n"},
        {"version": "1.0.0", "compose": b"services:\n  caf\xe9: {image: a}\n"},
        {"version": "1.0.0", "stack": COMPOSE + "    privileged: true\n"},
    ],
)
def test_bad_application_input_writes_nothing(kwargs: dict[str, object]) -> None:
    before = edgefleet.list_applications()
    with pytest.raises(InvalidInput):
        edgefleet.create_application("bad-app", **kwargs)  # type: ignore[arg-type]
    assert edgefleet.list_applications() == before


def test_unknown_names_are_not_found() -> None:
    with pytest.raises(NotFound, match="no application named 'ghost'"):
        edgefleet.publish_version("ghost", "1.0.0")
    edgefleet.create_application("solo", "1.0.0", image="x:1")
    with pytest.raises(NotFound, match="has no version '9.9.9'"):
        edgefleet.publish_version("solo", "9.9.9")
    with pytest.raises(NotFound, match="no edge named"):
        edgefleet.show_edge("ghost")


def test_unreachable_docker_host_writes_no_edge() -> None:
    with pytest.raises(EdgeUnreachable, match="did not answer"):
        edgefleet.add_edge("far-away", "tcp://127.0.0.1:1")
    assert [e.name for e in edgefleet.list_edges()] == []


def test_bad_edge_input_writes_no_edge() -> None:
    with pytest.raises(InvalidInput, match="not a URL"):
        edgefleet.add_edge("e1", "localhost:2375")
    with pytest.raises(InvalidInput, match="all three"):
        edgefleet.add_edge("e1", "tcp://127.0.0.1:2376", tls_ca="/nope.pem")
    assert edgefleet.list_edges() == []


def test_deploy_requires_a_published_version_and_known_edge() -> None:
    edgefleet.add_edge("e-unchecked", "tcp://127.0.0.1:1", check=False)
    edgefleet.create_application("draft", "1.0.0", image="x:1")
    with pytest.raises(InvalidInput, match="no published version"):
        edgefleet.create_deployment("draft", "e-unchecked")
    with pytest.raises(InvalidInput, match="not published"):
        edgefleet.create_deployment("draft", "e-unchecked", version="1.0.0")
    with pytest.raises(NotFound, match="no edge named"):
        edgefleet.create_deployment("draft", "nowhere", version="1.0.0")
    assert edgefleet.list_deployments() == []
    dep = edgefleet.create_deployment("draft", "e-unchecked", version="1.0.0",
                                      allow_unpublished=True)
    assert edgefleet.deployment_status(dep.id)["state"] == "CREATED"
    edgefleet.delete_deployment(dep.id[:8])
    assert edgefleet.list_deployments() == []


@pytest.mark.parametrize("state", ["STARTING", "STARTED", "UPDATING", "STOPPING", "ERROR"])
def test_a_deployment_is_deleted_only_from_created_or_stopped(state: str) -> None:
    edgefleet.add_edge("e-unchecked", "tcp://127.0.0.1:1", check=False)
    edgefleet.create_application("held", "1.0.0", image="x:1")
    dep = edgefleet.create_deployment("held", "e-unchecked", version="1.0.0",
                                      allow_unpublished=True)
    _set_state(dep.id, state)
    with pytest.raises(InvalidTransition,
                       match=f"is {state}; delete is allowed from CREATED, STOPPED"):
        edgefleet.delete_deployment(dep.id)
    assert [d["id"] for d in edgefleet.list_deployments()] == [dep.id]  # still there
    _set_state(dep.id, "STOPPED")
    edgefleet.delete_deployment(dep.id)
    assert edgefleet.list_deployments() == []


def test_an_application_is_deleted_only_without_deployments() -> None:
    edgefleet.add_edge("e-unchecked", "tcp://127.0.0.1:1", check=False)
    edgefleet.create_application("moved", "1.0.0", image="127.0.0.1:1111/moved:1.0.0")
    edgefleet.add_version("moved", "1.1.0", image="127.0.0.1:1111/moved:1.1.0")
    edgefleet.publish_version("moved", "1.0.0")
    dep = edgefleet.create_deployment("moved", "e-unchecked")
    with pytest.raises(InvalidInput, match=f"still has 1 deployment.*{dep.id[:12]}"):
        edgefleet.delete_application("moved")
    assert len(edgefleet.show_application("moved")["versions"]) == 2  # nothing changed
    edgefleet.delete_deployment(dep.id)
    assert edgefleet.delete_application("moved") == 2
    assert edgefleet.list_applications() == []
    with pytest.raises(NotFound):
        edgefleet.delete_application("moved")
    # the name is free again, with images from the registry's new address
    edgefleet.create_application("moved", "1.0.0", image="127.0.0.1:2222/moved:1.0.0")
    assert edgefleet.show_application("moved")["versions"][0]["image"].startswith("127.0.0.1:2222")


def test_app_delete_on_the_command_line() -> None:
    from typer.testing import CliRunner

    from edgefleet.cli.main import app

    edgefleet.create_application("gone", "1.0.0", image="x:1")
    unknown = CliRunner().invoke(app, ["app", "delete", "nothing-here"])
    assert unknown.exit_code == 1 and "nothing-here" in unknown.output
    done = CliRunner().invoke(app, ["app", "delete", "gone"])
    assert done.exit_code == 0 and "gone deleted (1 version(s))" in done.output
    assert edgefleet.list_applications() == []


def test_update_policy_decides_who_hears_of_a_published_version() -> None:
    edgefleet.add_edge("e-unchecked", "tcp://127.0.0.1:1", check=False)
    edgefleet.create_application("policed", "1.0.0", image="x:1")
    for version in ("1.0.1", "1.1.0", "2.0.0-rc.1", "2.0.0"):
        edgefleet.add_version("policed", version, image=f"x:{version}")
    edgefleet.publish_version("policed", "1.0.0")
    every = edgefleet.create_deployment("policed", "e-unchecked").id
    minor = edgefleet.create_deployment("policed", "e-unchecked", policy={"notify": "minor"}).id
    major = edgefleet.create_deployment("policed", "e-unchecked", policy={"notify": "major"}).id
    with pytest.raises(InvalidInput, match="notify"):
        edgefleet.create_deployment("policed", "e-unchecked", policy={"notify": "sometimes"})
    assert len(edgefleet.list_deployments()) == 3  # the refused one wrote nothing
    ids = [every, minor, major]
    for dep_id in ids:  # not started: make them count as running (no engine here)
        _set_state(dep_id, "STARTED")

    def heard(version: str) -> list[str]:
        return sorted(n["deployment_id"] for n in edgefleet.list_notifications()
                      if n["to_version"] == version)

    edgefleet.publish_version("policed", "1.0.1")  # no Prefect server: notified here
    assert heard("1.0.1") == [every]
    edgefleet.publish_version("policed", "1.1.0")
    assert heard("1.1.0") == sorted([every, minor])
    edgefleet.publish_version("policed", "2.0.0-rc.1")
    assert heard("2.0.0-rc.1") == []
    assert edgefleet.set_policy(major, prereleases=True) == {"notify": "major",
                                                             "prereleases": True}
    with pytest.raises(InvalidInput, match="notify"):
        edgefleet.set_policy(major, notify="never")
    assert edgefleet.deployment_status(major)["policy"]["notify"] == "major"  # unchanged
    edgefleet.publish_version("policed", "2.0.0")
    assert heard("2.0.0") == sorted(ids)
    for dep_id in ids:
        _set_state(dep_id, "STOPPED")
        edgefleet.delete_deployment(dep_id)


PRIVILEGED = COMPOSE + "    network_mode: host\n    volumes: ['/:/host:ro']\n"


def test_host_privileges_need_the_allowance_which_is_recorded_and_shown() -> None:
    from typer.testing import CliRunner

    from edgefleet.cli.main import app

    with pytest.raises(InvalidInput, match="services.web.network_mode: host; "
                       "services.web.volumes.0.: bind mount of host path /"):
        edgefleet.create_application("root", "1.0.0", compose=PRIVILEGED)
    assert edgefleet.list_applications() == []
    edgefleet.create_application("root", "1.0.0", compose=COMPOSE)
    with pytest.raises(InvalidInput, match="--allow-privileged"):
        edgefleet.add_version("root", "1.1.0", compose=PRIVILEGED)
    assert [v["version"] for v in edgefleet.show_application("root")["versions"]] == ["1.0.0"]
    edgefleet.add_version("root", "1.1.0", compose=PRIVILEGED, allow_privileged=True)
    plain, allowed = edgefleet.show_application("root")["versions"]
    assert (plain["allow_privileged"], plain["privileges"]) == (False, [])
    assert allowed["allow_privileged"] is True
    assert allowed["privileges"] == ["services.web.network_mode: host",
                                     "services.web.volumes[0]: bind mount of host path /"]

    edgefleet.add_edge("e-unchecked", "tcp://127.0.0.1:1", check=False)
    edgefleet.publish_version("root", "1.0.0")
    dep = edgefleet.create_deployment("root", "e-unchecked").id
    _set_state(dep, "STARTED")
    published = CliRunner().invoke(app, ["app", "publish", "root", "1.1.0"])
    assert published.exit_code == 0 and "--allow-privileged" in published.output
    (note,) = [n for n in edgefleet.list_notifications() if n["deployment_id"] == dep]
    assert "Created with --allow-privileged" in note["message"]
    assert "services.web.network_mode: host" in note["message"]
    shown = CliRunner().invoke(app, ["app", "show", "root"], env={"COLUMNS": "300"})
    assert "allowed: services.web.network_mode: host" in shown.output
    _set_state(dep, "STOPPED")
    edgefleet.delete_deployment(dep)


def _set_state(dep_id: str, state: str) -> None:
    from edgefleet.db import session_scope
    from edgefleet.models.records import Deployment

    with session_scope() as session:
        row = session.get(Deployment, dep_id)
        assert row is not None
        row.state = state
        session.add(row)
