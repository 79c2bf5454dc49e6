"""Registering a pull edge (records alone, no engine): `edge add --pull` keeps its mode and
prints its agent's command; what cannot be a pull edge is refused and writes nothing."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

import edgefleet
from edgefleet.cli.main import app
from edgefleet.errors import InvalidInput


@pytest.fixture(autouse=True)
def own_records(empty_records: str) -> str:
    """Each test gets an empty database of its own (SQLite, then PostgreSQL)."""
    return empty_records


def cli(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_edge_add_pull_records_the_mode_and_prints_the_agent_command() -> None:
    code, out, _ = cli("edge", "add", "kiosk-3", "--pull", "--address", "10.8.0.3")
    assert code == 0, out
    assert "edgefleet agent --edge kiosk-3" in " ".join(out.split())
    edge = edgefleet.show_edge("kiosk-3")
    assert (edge.mode, edge.docker_host, edge.status) == (
        "pull", "unix:///var/run/docker.sock", "UNKNOWN")  # nothing contacted it
    code, out, _ = cli("edge", "show", "kiosk-3", "--json")
    shown = json.loads(out)
    assert shown["mode"] == "pull"
    assert shown["agent_command"] == "edgefleet agent --edge kiosk-3"
    code, out, _ = cli("edge", "add", "kiosk-4", "--pull", "--docker-host",
                       "unix:///run/user/1000/docker.sock", "--json")
    assert code == 0 and json.loads(out)["agent_command"].endswith(
        "--docker-host unix:///run/user/1000/docker.sock")
    assert edgefleet.show_edge("kiosk-4").mode == "pull"


@pytest.mark.parametrize(("args", "message"), [
    (["edge", "add", "e1"], "--docker-host is missing"),
    (["edge", "add", "e1", "--pull", "--docker-host", "tcp://10.0.0.7:2376"], "local socket"),
    (["edge", "add", "e1", "--pull", "--tls-ca", "a", "--tls-cert", "b", "--tls-key", "c"],
     "give no TLS files"),
    (["edge", "add", "../e1", "--pull"], "edge name"),
])
def test_what_cannot_be_a_pull_edge_is_refused_and_nothing_is_written(
        args: list[str], message: str) -> None:
    code, out, err = cli(*args)
    assert code != 0
    assert message in " ".join((out + err).split()), out + err
    assert edgefleet.list_edges() == []


def test_the_python_api_refuses_an_unknown_mode() -> None:
    with pytest.raises(InvalidInput, match="mode"):
        edgefleet.add_edge("e2", "unix:///var/run/docker.sock", mode="poll")
    assert edgefleet.list_edges() == []
