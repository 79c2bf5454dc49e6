"""How a step crosses to a pull edge's agent, without an agent: arguments and results as
JSON by the step's own hints, errors back as the same classes, what the agent refuses, and
the engine guard that keeps a pull edge's socket path from reaching this machine's engine."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, SecretStr

from edgefleet import errors
from edgefleet.agent import WITHHELD, command, environment
from edgefleet.edge_calls import (
    AGENT_DOCKER_HOST_ENV,
    _error_of,
    encode_arguments,
    local_connection,
    on_edge,
    run_here,
)
from edgefleet.engine import make_client
from edgefleet.engine_api import AsyncEngine
from edgefleet.models.connections import AGENT_EDGE_ENV, EngineConnection, agent_command_line
from edgefleet.models.plans import ObservedContainer

KEY = f"{__name__}:"
PULLED = EngineConnection(name="kiosk-3", docker_host="unix:///var/run/docker.sock",
                          mode="pull", address="10.8.0.3")


class Login(BaseModel):
    username: str
    password: SecretStr


@on_edge
def echo_step(conn: EngineConnection, count: int, seen: ObservedContainer,
              tags: dict[str, str] | None = None) -> list[ObservedContainer]:
    """A step as the tasks write them; it says where it ran."""
    if count < 0:
        raise errors.DeploymentFailed(f"count {count} on {conn.name}")
    return [seen.model_copy(update={"service": f"{conn.docker_host}|{conn.address}"})] * count


@on_edge
def login_step(conn: EngineConnection, login: Login | None = None) -> str:
    return conn.name


def observed() -> ObservedContainer:
    return ObservedContainer(container_id="c1", name="web-1", service="web", image="hello",
                             state="running", health=None, restart_count=0)


def test_arguments_cross_as_json_by_the_step_s_hints_without_the_connection() -> None:
    sent = encode_arguments(KEY + "echo_step", PULLED, 2, observed(), tags={"a": "b"})
    assert set(sent) == {"count", "seen", "tags"}
    assert sent["seen"]["container_id"] == "c1" and sent["tags"] == {"a": "b"}


def test_a_secret_argument_is_refused_for_a_pull_edge_before_anything_is_sent() -> None:
    with pytest.raises(errors.InvalidInput, match="kiosk-3 is a pull edge.*login"):
        encode_arguments(KEY + "login_step", PULLED,
                         Login(username="u", password=SecretStr("p4ss")))


def test_the_agent_runs_the_step_on_its_own_engine_and_hands_back_json(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(AGENT_EDGE_ENV, "kiosk-3")
    monkeypatch.setenv(AGENT_DOCKER_HOST_ENV, "unix:///run/edge/docker.sock")
    sent = encode_arguments(KEY + "echo_step", PULLED, 2, observed())
    outcome = run_here(KEY + "echo_step", "kiosk-3", "10.8.0.3", sent)
    result = outcome["result"]
    assert len(result) == 2 and result[0]["service"] == "unix:///run/edge/docker.sock|10.8.0.3"
    # and the wrapper, on the agent, runs it here
    assert login_step(PULLED) == "kiosk-3"


def test_the_agent_hands_back_an_error_that_is_raised_again_as_the_same_class(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(AGENT_EDGE_ENV, "kiosk-3")
    outcome = run_here(KEY + "echo_step", "kiosk-3", None,
                       {"count": -1, "seen": observed().model_dump(mode="json")})
    assert outcome == {"error": {"type": "DeploymentFailed",
                                 "message": "count -1 on kiosk-3"}}
    raised = _error_of(outcome["error"])
    assert type(raised) is errors.DeploymentFailed and str(raised) == "count -1 on kiosk-3"
    failed = _error_of({"type": "EngineRequestFailed", "message": "no such image", "status": 404})
    assert isinstance(failed, errors.EngineRequestFailed) and failed.status == 404
    other = _error_of({"type": "KeyError", "message": "'x'"})
    assert type(other) is errors.EdgefleetError and "KeyError on the edge" in str(other)


@pytest.mark.parametrize(("edge", "key", "message"), [
    ("plant-9", KEY + "echo_step", "agent of kiosk-3, not of 'plant-9'"),
    ("kiosk-3", "os:system", "not an operation an agent runs"),
    ("kiosk-3", KEY + "missing", "not an operation an agent runs"),
])
def test_the_agent_refuses_another_edge_s_step_and_anything_not_a_step(
        monkeypatch: pytest.MonkeyPatch, edge: str, key: str, message: str) -> None:
    monkeypatch.setenv(AGENT_EDGE_ENV, "kiosk-3")
    with pytest.raises(errors.InvalidInput, match=message):
        run_here(key, edge, None, {})


def test_a_pull_edge_s_engine_is_never_opened_off_its_agent(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(AGENT_EDGE_ENV, raising=False)
    with pytest.raises(errors.EdgeUnreachable, match="kiosk-3 is a pull edge"):
        make_client(PULLED)
    with pytest.raises(errors.EdgeUnreachable, match="kiosk-3 is a pull edge"):
        AsyncEngine(PULLED, 1.0)
    monkeypatch.setenv(AGENT_EDGE_ENV, "kiosk-3")
    make_client(PULLED).close()  # on its agent: the local socket


def test_the_agent_gets_the_api_and_its_edge_but_never_the_records(
        monkeypatch: pytest.MonkeyPatch) -> None:
    base = {"PATH": "/usr/bin", **{name: "postgresql://cp/secret" for name in WITHHELD}}
    env = environment("http://cp:4200/api", "kiosk-3", None, base=base)
    assert not set(WITHHELD) & set(env)
    assert env["PREFECT_API_URL"] == "http://cp:4200/api" and env[AGENT_EDGE_ENV] == "kiosk-3"
    assert env[AGENT_DOCKER_HOST_ENV] == "unix:///var/run/docker.sock"
    args = command("kiosk-3")
    assert args[args.index("--pool") + 1] == "edgefleet-pull"
    assert args[args.index("--work-queue") + 1] == "edge-kiosk-3"
    assert args[args.index("--name") + 1] == "agent-kiosk-3"
    assert agent_command_line("kiosk-3", "unix:///run/d.sock", "http://cp:4200/api") == (
        "PREFECT_API_URL=http://cp:4200/api edgefleet agent --edge kiosk-3 "
        "--docker-host unix:///run/d.sock")
    assert local_connection("kiosk-3", None).docker_host == "unix:///var/run/docker.sock"


def test_every_module_with_steps_is_one_an_agent_may_import() -> None:
    """A step in a module missing from the list would be refused by every agent."""
    import os
    from pathlib import Path

    import edgefleet as package
    from edgefleet.edge_calls import OPERATION_MODULES

    root = Path(package.__file__).parent
    with_steps = set()
    for folder, _, files in os.walk(root, followlinks=True):  # tasks/ etc. are links
        for path in (Path(folder) / name for name in files if name.endswith(".py")):
            if "@on_edge\n" in path.read_text():
                parts = path.relative_to(root).with_suffix("").parts
                with_steps.add(".".join(("edgefleet", *parts)))
    with_steps.discard("edgefleet.edge_calls")  # the decorator itself (its docstring)
    assert with_steps == set(OPERATION_MODULES)


def test_an_agent_is_silent_after_three_missed_heartbeats_or_when_never_heard_from() -> None:
    from datetime import UTC, datetime, timedelta

    from edgefleet.edge_calls import AGENT_HEARTBEAT_SECONDS, silence

    now = datetime(2026, 12, 4, 7, 0, tzinfo=UTC)
    beats = timedelta(seconds=AGENT_HEARTBEAT_SECONDS)
    assert silence("kiosk-3", now - 3 * beats, now) is None
    late = silence("kiosk-3", now - 3 * beats - timedelta(seconds=1), now)
    assert late and "last heard 2026-12-04 06:59:44 UTC" in late
    never = silence("kiosk-3", None, now)
    assert never and "never heard from" in never and "edgefleet agent --edge kiosk-3" in never
