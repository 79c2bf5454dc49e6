"""Validation at the boundary: each bad input names itself and what to do."""

from typing import Any

import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from edgefleet.models.inputs import (
    AppKind,
    EdgeCreate,
    VersionCreate,
    check_image,
    check_name,
    check_port,
    parse_compose,
    parse_env,
)

GOOD_COMPOSE = "services:\n  web:\n    image: 127.0.0.1:5000/edgefleet/hello:1.0.0\n"


def test_semver_is_normalised_and_checked() -> None:
    v = VersionCreate(version="v1.2.3", kind=AppKind.IMAGE, image="nginx:1.25")
    assert v.version == "1.2.3"
    with pytest.raises(ValidationError, match="not a semantic version"):
        VersionCreate(version="1.2", kind=AppKind.IMAGE, image="nginx")


def test_kind_must_match_the_spec() -> None:
    with pytest.raises(ValidationError, match="needs --image"):
        VersionCreate(version="1.0.0", kind=AppKind.IMAGE, compose=GOOD_COMPOSE)
    with pytest.raises(ValidationError, match="needs --compose"):
        VersionCreate(version="1.0.0", kind=AppKind.COMPOSE, image="nginx")
    with pytest.raises(ValidationError, match="kind"):
        VersionCreate(version="1.0.0", kind="helm", image="nginx")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("services: [unclosed", "not valid YAML"),
        ("- just\n- a list\n", "must be a mapping"),
        ("version: '3'\n", "'services'"),
        ("services:\n  web: 3\n", "must be a mapping"),
        ("services:\n  web:\n    build: .\n", "has no 'image'"),
        ("services:\n  web:\n    image: 'Bad Image!'\n", "image reference"),
    ],
)
def test_bad_compose_files_are_refused(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_compose(text)


def test_good_compose_parses() -> None:
    assert list(parse_compose(GOOD_COMPOSE)["services"]) == ["web"]


@pytest.mark.parametrize("port", ["8080", "80:8080", "5353/udp", "1:65535"])
def test_ports_accepted(port: str) -> None:
    assert VersionCreate(version="1.0.0", kind=AppKind.IMAGE, image="x", ports=[port]).ports == [
        port]


@pytest.mark.parametrize("port", ["http", "0:80", "70000", "80:80/sctp", ":80"])
def test_ports_refused(port: str) -> None:
    with pytest.raises(ValidationError, match="port"):
        VersionCreate(version="1.0.0", kind=AppKind.IMAGE, image="x", ports=[port])


def test_env_pairs() -> None:
    assert parse_env(["A=1", "B=x=y", "C="]) == {"A": "1", "B": "x=y", "C": ""}
    with pytest.raises(ValueError, match="KEY=VALUE"):
        parse_env(["novalue"])
    with pytest.raises(ValueError, match="environment name"):
        parse_env(["1BAD=x"])


def test_edge_input() -> None:
    with pytest.raises(ValidationError, match="not a URL"):
        EdgeCreate(name="e1", docker_host="127.0.0.1:2376")
    with pytest.raises(ValidationError, match="all three"):
        EdgeCreate(name="e1", docker_host="tcp://127.0.0.1:2376", tls_ca="/ca.pem")
    with pytest.raises(ValidationError, match="edge name"):
        EdgeCreate(name="Bad Name", docker_host="tcp://127.0.0.1:2376")


def test_a_heartbeat_under_two_seconds_is_refused_by_edge_add_and_set() -> None:
    """2 s is the shortest interval the served sweep honours (the lab's load test)."""
    import edgefleet
    from edgefleet.cli.main import app
    from edgefleet.errors import InvalidInput
    from tests.lab_helpers import unique

    name = unique("beat")
    with pytest.raises(InvalidInput, match=r"^heartbeat interval 1 is outside 2-86400 seconds: "):
        edgefleet.add_edge(name, "tcp://127.0.0.1:1", check=False, heartbeat_interval=1)
    assert name not in [e.name for e in edgefleet.list_edges()]
    with pytest.raises(ValidationError, match="outside 2-86400"):
        EdgeCreate(name="e1", docker_host="tcp://127.0.0.1:2376", heartbeat_interval=1)
    edgefleet.add_edge(name, "tcp://127.0.0.1:1", check=False, heartbeat_interval=2)
    result = CliRunner().invoke(app, ["edge", "set", name, "--heartbeat-interval", "1"])
    assert result.exit_code == 1
    (line,) = result.output.strip().splitlines()
    assert "heartbeat interval 1 is outside 2-86400 seconds" in line, line
    assert edgefleet.show_edge(name).heartbeat_interval == 2
    with pytest.raises(InvalidInput, match="telemetry interval 0 is outside 1-86400"):
        edgefleet.set_edge(name, telemetry_interval=0)
    edgefleet.remove_edge(name)


@pytest.mark.parametrize("check", [
    lambda v: check_name(v, "edge"), check_image, check_port,
    lambda v: parse_env([f"{v}=1"]),
])
def test_a_trailing_newline_is_no_part_of_a_valid_value(check: Any) -> None:
    """``$`` matches before a final newline: every pattern must end at the very end."""
    for value in ("lab-1\n", "127.0.0.1:5000/edgefleet/hello:1.0.0\n", "8080\n", "KEY\n"):
        with pytest.raises(ValueError):
            check(value)
