"""Parameters without the lab: discovery in a file (hostile ones too), declarations that
refine it, the deploy refusals, compose's own words, and the CLI's spelling."""

from __future__ import annotations

import json
import time

import pytest
from typer.testing import CliRunner

import edgefleet
from edgefleet import compose_cli
from edgefleet import parameters as P
from edgefleet.cli.main import app as cli
from edgefleet.errors import InvalidInput
from edgefleet.models.documents import load_yaml
from edgefleet.models.parameters import MASK, Parameter, ParameterDeclaration

GREETING = """
services:
  web:
    image: 127.0.0.1:5000/edgefleet/hello:1.0.0
    environment:
      GREETING: ${GREETING:?set GREETING}
      MOOD: ${MOOD:-calm}
"""


def found(text: str) -> dict[str, dict[str, object]]:
    return {p.name: p.model_dump(exclude={"name", "discovered", "description", "sensitive"})
            for p in P.discover(load_yaml(text, what="compose file"))}


def test_every_interpolation_form_is_a_parameter() -> None:
    text = """
services:
  web:
    image: "reg.local/app:${TAG:-1.0}"
    command: ["sh", "-c", "echo $$HOME $${NOT_ONE} $PLAIN"]
    environment:
      A: ${A}
      B: ${B:-b default}
      C: ${C-c default}
      D: ${D:?D is needed}
      E: ${E?E too}
      F: ${F:+set}
      G: ${G+set}
      ${KEYED:-k}: value
"""
    params = found(text)
    assert list(params) == ["TAG", "PLAIN", "A", "B", "C", "D", "E", "F", "G", "KEYED"]
    assert params["TAG"] == {"default": "1.0", "required": False, "message": None}
    assert params["PLAIN"] == {"default": None, "required": False, "message": None}
    assert params["B"]["default"] == "b default" and params["C"]["default"] == "c default"
    assert params["D"] == {"default": None, "required": True, "message": "D is needed"}
    assert params["E"] == {"default": None, "required": True, "message": "E too"}
    assert params["F"] == params["G"] == params["A"]
    assert "HOME" not in params and "NOT_ONE" not in params  # $$ is a literal dollar


def test_nested_defaults_and_repeated_names() -> None:
    text = """
services:
  web:
    image: a:1
    environment:
      URL: ${URL:-http://${HOST:-localhost}:${PORT:-80}}
      AGAIN: ${HOST:?need a host}
      LATER: ${URL:-other}
"""
    params = found(text)
    assert list(params) == ["URL", "HOST", "PORT"]
    assert params["URL"]["default"] == "http://${HOST:-localhost}:${PORT:-80}"  # first wins
    # required anywhere is required: compose fails on that use
    assert params["HOST"] == {"default": None, "required": True, "message": "need a host"}


@pytest.mark.parametrize("text", ["${1ABC}", "${}", "${A.B}", "${A B}", "${UNCLOSED",
                                  "$", "$$", "${A:-${B}", "$1", "$-x"])
def test_what_is_not_a_variable_is_left_to_compose(text: str) -> None:
    uses = list(P.uses_in(text))
    assert all(u.name.isidentifier() for u in uses)
    assert not [u for u in uses if u.name in ("1ABC", "A.B")]


def test_comments_are_not_parameters() -> None:
    assert found("# ${IN_A_COMMENT}\nservices:\n  web:\n    image: a:1  # $ALSO\n") == {}


def test_a_huge_file_is_scanned_in_linear_time() -> None:
    body = "x" * 200_000 + "${" * 20_000 + "$$" * 50_000
    data = {"services": {"web": {"image": "a:1", "command": body}}}
    started = time.perf_counter()
    assert P.discover(data) == []
    many = {"services": {"web": {"image": "a:1", "environment": {
        f"K{i}": f"${{V{i}}}" for i in range(501)}}}}
    with pytest.raises(InvalidInput, match="more than 500 variables"):
        P.discover(many)
    assert time.perf_counter() - started < 5


def test_a_declaration_refines_a_discovered_parameter() -> None:
    discovered = P.discover(load_yaml(GREETING, what="compose file"))
    merged = {p.name: p for p in P.merge(discovered, [
        ParameterDeclaration(name="GREETING", description="what it says"),
        ParameterDeclaration(name="MOOD", sensitive=True),
        ParameterDeclaration(name="EXTRA", default="1"),
        ParameterDeclaration(name="OTHER", required=True),
    ])}
    assert merged["GREETING"].required and merged["GREETING"].message == "set GREETING"
    assert merged["GREETING"].description == "what it says"
    assert merged["MOOD"].sensitive and merged["MOOD"].default == "calm"
    assert merged["MOOD"].public()["default"] == MASK
    assert merged["EXTRA"].default == "1" and not merged["EXTRA"].discovered
    assert merged["OTHER"].required
    # a declared default satisfies a required one
    (greeting,) = P.merge(discovered[:1], [ParameterDeclaration(name="GREETING", default="hi")])
    assert not greeting.required and greeting.default == "hi"
    with pytest.raises(ValueError, match="a default already satisfies it"):
        ParameterDeclaration(name="X", default="1", required=True)
    with pytest.raises(ValueError, match="not valid"):
        ParameterDeclaration(name="1X")


def test_a_deploy_is_refused_for_missing_or_unknown_names() -> None:
    params = [Parameter(name="GREETING", required=True, message="set GREETING"),
              Parameter(name="MOOD", default="calm"), Parameter(name="TOKEN", required=True)]
    with pytest.raises(InvalidInput) as missing:
        P.check_environment(params, kind="compose", version_env={}, env={"MOOD": "x"},
                            label="hello 1.0.0")
    text = str(missing.value)
    assert "required parameter GREETING is not set (set GREETING)" in text
    assert "required parameter TOKEN is not set" in text and "\n" not in text
    with pytest.raises(InvalidInput, match="does not know --env GREETNG; did you mean GREETING"):
        P.check_environment(params, kind="compose", version_env={},
                            env={"GREETNG": "hi", "TOKEN": "t"}, label="hello 1.0.0")
    P.check_environment(params, kind="compose", version_env={"TOKEN": "t"},
                        env={"GREETING": "hi"}, label="hello 1.0.0")
    # an image without declared parameters takes any key; one with them knows its names
    P.check_environment([], kind="image", version_env={}, env={"ANY": "1"}, label="img")
    with pytest.raises(InvalidInput, match="did you mean MODE"):
        P.check_environment([Parameter(name="MODE")], kind="image", version_env={},
                            env={"MDOE": "1"}, label="img")


def test_references_of_sensitive_values() -> None:
    dep = "0123456789abcdef0123456789abcdef"
    ref = P.secret_block_name(dep, "TOKEN")
    assert P.is_reference("TOKEN", ref) and not P.is_reference("OTHER", ref)
    assert not P.is_reference("TOKEN", "edgefleet-param-x")
    env = {"TOKEN": ref, "MODE": "plain"}
    assert P.masked(env) == {"TOKEN": MASK, "MODE": "plain"}
    assert P.with_placeholders(f'{{"A": "u:{ref}@db"}}', env) == '{"A": "u:${TOKEN}@db"}'


def test_a_member_owns_only_its_own_blocks_not_its_group_s() -> None:
    """A group's members refer to the group's blocks: deleting a member deletes none."""
    group, member = "a" * 32, "b" * 32
    env = {"TOKEN": P.secret_block_name(group, "TOKEN"),
           "KEY": P.secret_block_name(member, "KEY"), "MODE": "plain"}
    assert set(P.references(env)) == {"TOKEN", "KEY"}
    assert P.owned_references(env, member) == {"KEY": env["KEY"]}
    assert P.owned_references(env, group) == {"TOKEN": env["TOKEN"]}
    assert P.owned_references({"MODE": "plain"}, group) == {}


def test_compose_words_are_one_clean_line_with_the_service() -> None:
    noisy = ('time="2026-12-02T10:00:00Z" level=warning msg="the attribute `version` is '
             'obsolete"\n Container ef-abc-web-1  Creating\n Container ef-abc-web-1  Error\n'
             'Error response from daemon: pull access denied for nope\n')
    assert compose_cli.compose_words(noisy, project="ef-abc") == (
        "Error response from daemon: pull access denied for nope (service web)")
    logrus = 'time="x" level=fatal msg="services.db.ports \\"x\\" is invalid"\n'
    assert compose_cli.compose_words(logrus) == 'services.db.ports "x" is invalid (service db)'
    panic = ("panic: interface conversion: interface {} is int, not string\n\ngoroutine 1 "
             "[running]:\ngithub.com/x/override.envFileIndexer(...)\n\tuncity.go:224 +0x134\n")
    assert compose_cli.compose_words(panic) == (
        "compose crashed on this file (panic: interface conversion: interface {} is int, "
        "not string)")


def test_compose_refuses_a_file_in_its_own_words() -> None:
    with pytest.raises(compose_cli.ComposeError) as refused:
        compose_cli.check_file(GREETING, env={})
    assert str(refused.value) == ("error while interpolating services.web.environment."
                                  "GREETING: required variable GREETING is missing a value: "
                                  "set GREETING (service web)")
    compose_cli.check_file(GREETING, env={"GREETING": P.PLACEHOLDER})
    bad = GREETING.replace("    environment:", "    restart: sometimes\n    foo: 1\n"
                           "    environment:")
    with pytest.raises(compose_cli.ComposeError, match="additional properties 'foo' not "
                       r"allowed \(service web\)"):
        compose_cli.check_file(bad, env={"GREETING": "x"})


@pytest.fixture
def records(empty_records: str) -> str:
    return empty_records


def test_api_create_show_and_deploy_refusals(records: str) -> None:
    edgefleet.create_application("greet", "1.0.0", compose=GREETING, params=[
        {"name": "GREETING", "description": "the greeting"},
        {"name": "TOKEN", "sensitive": True}])
    shown = edgefleet.show_application("greet")["versions"][0]["parameters"]
    assert [(p["name"], p["default"], p["required"], p["description"], p["sensitive"])
            for p in shown] == [("GREETING", None, True, "the greeting", False),
                                ("MOOD", "calm", False, None, False),
                                ("TOKEN", None, False, None, True)]
    edgefleet.add_edge("e-unchecked", "tcp://127.0.0.1:1", check=False)
    with pytest.raises(InvalidInput, match=r"required parameter GREETING is not set \(set "
                       "GREETING\\)"):
        edgefleet.create_deployment("greet", "e-unchecked", version="1.0.0",
                                    allow_unpublished=True)
    with pytest.raises(InvalidInput, match="did you mean MOOD"):
        edgefleet.create_deployment("greet", "e-unchecked", version="1.0.0",
                                    allow_unpublished=True, env={"GREETING": "hi", "MODE": "x"})
    assert edgefleet.list_deployments() == []
    dep = edgefleet.create_deployment("greet", "e-unchecked", version="1.0.0",
                                      allow_unpublished=True, env={"GREETING": "hi"})
    assert edgefleet.deployment_status(dep.id)["env"] == {"GREETING": "hi"}
    # compose refuses a file at the door; nothing is stored
    with pytest.raises(InvalidInput, match="compose file refused by compose: .*additional "
                       "properties 'foo' not allowed"):
        edgefleet.add_version("greet", "1.1.0",
                              compose=GREETING.replace("    environment:",
                                                       "    foo: 1\n    environment:"))
    assert len(edgefleet.show_application("greet")["versions"]) == 1


def test_cli_spelling_of_parameters(records: str) -> None:
    runner = CliRunner()
    help_text = runner.invoke(cli, ["app", "create", "--help"], env={"COLUMNS": "200"}).output
    for flag in ("--param", "--required", "--description", "--sensitive"):
        assert flag in help_text
    made = runner.invoke(cli, ["app", "create", "img", "--version", "1.0.0", "--image",
                               "reg.local/img:1", "--param", "GREETING", "--required",
                               "--description", "the greeting", "--param", "MODE=quiet",
                               "--param", "KEY", "--sensitive", "--description=api key"])
    assert made.exit_code == 0, made.output
    shown = json.loads(runner.invoke(cli, ["app", "show", "img", "--json"]).output)
    params = {p["name"]: p for p in shown["versions"][0]["parameters"]}
    assert params["GREETING"]["required"] and params["GREETING"]["description"] == "the greeting"
    assert params["MODE"]["default"] == "quiet" and not params["MODE"]["required"]
    assert params["KEY"]["sensitive"] and params["KEY"]["description"] == "api key"
    table = runner.invoke(cli, ["app", "show", "img"], env={"COLUMNS": "200"}).output
    assert "GREETING" in table and "the greeting" in table
    for args, said in [
        (["--required", "--param", "X"], "--required applies to the --param before it"),
        (["--param", "X", "--sensitive", "--sensitive"], "--sensitive is given twice"),
        (["--param", "X=1", "--required"], "a default already satisfies it"),
        (["--param", "1X"], "parameter name '1X' is not valid"),
        (["--param", "X", "--param", "X"], "--param X is declared twice"),
    ]:
        refused = runner.invoke(cli, ["app", "version", "img", "1.1.0", "--image",
                                      "reg.local/img:1", *args])
        assert refused.exit_code == 1, refused.output
        assert said in refused.output and len(refused.output.strip().splitlines()) == 1, (
            refused.output)
    edgefleet.add_edge("e-unchecked", "tcp://127.0.0.1:1", check=False)
    refused = runner.invoke(cli, ["deploy", "img", "--edge", "e-unchecked", "--version", "1.0.0",
                                  "--allow-unpublished", "--env", "MDOE=x"])
    assert refused.exit_code == 1
    assert "required parameter GREETING is not set" in refused.output
    assert "does not know --env MDOE; did you mean MODE?" in refused.output


def test_a_version_recorded_before_parameters_has_its_files(records: str) -> None:
    from sqlmodel import select

    from edgefleet.db import session_scope
    from edgefleet.models.records import ApplicationVersion

    edgefleet.create_application("old", "1.0.0", compose=GREETING)
    with session_scope() as session:  # as migration 0010 leaves a version made before it
        for row in session.exec(select(ApplicationVersion)).all():
            row.parameters = []
            session.add(row)
    shown = edgefleet.show_application("old")["versions"][0]["parameters"]
    assert [p["name"] for p in shown] == ["GREETING", "MOOD"]
    edgefleet.add_edge("e-unchecked", "tcp://127.0.0.1:1", check=False)
    with pytest.raises(InvalidInput, match="required parameter GREETING is not set"):
        edgefleet.create_deployment("old", "e-unchecked", version="1.0.0",
                                    allow_unpublished=True)
