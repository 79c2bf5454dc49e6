"""The launch form without the lab: its run names and report, the run forms of every served
flow (titles, descriptions, enums), the second step's input form, and the launch's checks on
records alone, which refuse in `edgefleet deploy`'s own words."""

from __future__ import annotations

import logging
from types import SimpleNamespace
from typing import Any

import pytest
from pydantic import SecretStr

import edgefleet
from edgefleet.errors import InvalidInput, NotFound
from edgefleet.models.launch import (
    LaunchedDeployment,
    LaunchPlan,
    SecretEntry,
    masked,
    report,
    secret_values,
)
from edgefleet.models.parameters import MASK, Parameter
from edgefleet.models.run_names import (
    deploy_run_name,
    launch_run_name,
    stop_run_name,
    update_run_name,
)

GREETING = """
services:
  web:
    image: 127.0.0.1:5000/edgefleet/hello:1.0.0
    environment:
      GREETING: ${GREETING:?set GREETING}
      MOOD: ${MOOD:-calm}
      TOKEN: ${TOKEN:-none}
"""


def test_run_names_say_what_and_where() -> None:
    assert launch_run_name("hello", "1.1.0", ["lab-1", "lab-2"], None) == \
        "launch hello 1.1.0 → lab-1, lab-2"
    assert launch_run_name("hello", None, None, "site=plant-7") == \
        "launch hello newest → edges site=plant-7"
    many = [f"e{i}" for i in range(8)]
    assert launch_run_name("hello", "2.0.0", many, None) == \
        "launch hello 2.0.0 → e0, e1, e2, e3, e4 (+3 more)"
    assert deploy_run_name("hello", "1.1.0", "lab-1") == "deploy hello 1.1.0 → lab-1"
    assert update_run_name("hello", "1.1.0", "lab-3") == "update hello 1.1.0 → lab-3"
    assert stop_run_name("hello", "1.0.0", "lab-1") == "stop hello 1.0.0 on lab-1"


def test_a_run_takes_its_readable_name_unless_its_caller_named_it(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """``edgefleet update`` or the UI form start ``update <id>``: renamed; a group
    rollout's subflow (``roll back …``, or already ``update …``) keeps its name."""
    from edgefleet.tasks import runs

    renamed: list[tuple[str, str]] = []
    monkeypatch.setattr(runs, "rename_run",
                        lambda run_id, *, name: renamed.append((run_id, name)))
    readable = update_run_name("hello", "1.1.0", "lab-3")
    for current in ("update d-1", readable, "roll back hello 1.0.0 → lab-3"):
        monkeypatch.setattr(runs, "runtime", SimpleNamespace(
            flow_run=SimpleNamespace(id="run-1", name=current)))
        runs.name_run(readable, placeholder="update d-1")
    assert renamed == [("run-1", "update hello 1.1.0 → lab-3")]


def test_a_rename_that_fails_never_fails_the_change(monkeypatch: pytest.MonkeyPatch,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    from edgefleet.tasks import runs

    def refused(run_id: str, *, name: str) -> None:
        raise RuntimeError("the API said 503")

    monkeypatch.setattr(runs, "rename_run", refused)
    monkeypatch.setattr(runs, "runtime", SimpleNamespace(
        flow_run=SimpleNamespace(id="run-1", name="update d-1")))
    monkeypatch.setattr(runs, "get_run_logger", lambda: logging.getLogger("edgefleet-test"))
    with caplog.at_level(logging.WARNING, logger="edgefleet-test"):
        runs.name_run("update hello 1.1.0 → lab-3", placeholder="update d-1")
    assert "keeps its name 'update d-1': the API said 503" in caplog.text


def test_the_report_lists_each_deployment_with_state_and_urls() -> None:
    plan = LaunchPlan(application="hello", version="1.1.0", edges=["lab-1", "lab-2"])
    text = report(plan, [
        LaunchedDeployment(deployment_id="a" * 32, edge="lab-1", state="STARTED",
                           urls=["http://127.0.0.1:49153"], run_url="http://ui/runs/1"),
        LaunchedDeployment(deployment_id="b" * 32, edge="lab-2", state="ERROR",
                           last_error="pull failed:\nmanifest | unknown")])
    assert text.splitlines()[0] == "# launch hello 1.1.0"
    assert "1 of 2 deployments STARTED." in text
    assert ("| lab-1 | `aaaaaaaaaaaa` | STARTED | [http://127.0.0.1:49153]"
            "(http://127.0.0.1:49153) | [run](http://ui/runs/1) |") in text
    assert "| lab-2 | `bbbbbbbbbbbb` | ERROR: pull failed: manifest \\| unknown | - | - |" in text


def served() -> list[Any]:
    from edgefleet.deployments.work_pool import served_flows

    return [flow for flow, _options in served_flows()]


def test_every_served_flow_parameter_has_a_title_and_a_description() -> None:
    from edgefleet.flows.edge_operation import edge_operation

    flows = [*served(), edge_operation]  # edge-operation: served on the pull pool
    assert "launch-application" in [f.name for f in flows]
    for flow in flows:
        schema = flow.parameters.model_dump()
        for name, prop in schema["properties"].items():
            where = f"{flow.name}.{name}"
            if "$ref" in prop:  # a model: the form titles it with the model's own title
                prop = {**schema["definitions"][prop["$ref"].rsplit("/", 1)[1]], **prop}
            assert prop.get("title") and prop["title"] != name, f"{where} has no title"
            assert prop.get("description"), f"{where} has no description"


def test_the_launch_form() -> None:
    from edgefleet.flows.launch import launch_application

    schema = launch_application.parameters.model_dump()
    props = schema["properties"]
    assert schema["required"] == ["application"]
    assert [props[k]["title"] for k in ("application", "version", "edges", "selector", "env",
                                        "secrets")] == [
        "Application", "Version", "Edges", "Edge selector", "Parameters",
        "Sensitive parameters"]
    # a list of named entries: the UI draws a password field for each value (it draws a
    # map of values as raw JSON)
    assert props["secrets"]["type"] == "array"
    entry = schema["definitions"][props["secrets"]["items"]["$ref"].rsplit("/", 1)[1]]
    assert entry["title"] == "Sensitive parameter" and entry["required"] == ["name", "value"]
    assert entry["properties"]["value"]["format"] == "password"
    assert all(p.get("title") and p.get("description") for p in entry["properties"].values())
    assert [props[k]["type"] for k in ("version", "edges", "selector", "env")] == [
        "string", "array", "string", "object"]  # plain fields, no None switch on the form
    policy = schema["definitions"]["UpdatePolicy"]["properties"]
    assert policy["notify"]["title"] == "Notify of"
    assert schema["definitions"]["Change"]["enum"] == ["patch", "minor", "major"]


def test_sensitive_entries_by_name_and_masked_in_the_recorded_parameters() -> None:
    entries = [SecretEntry(name="TOKEN", value=SecretStr("t")),
               SecretEntry.model_validate({"name": "KEY", "value": "k"})]
    assert {k: v.get_secret_value() for k, v in secret_values(entries).items()} == {
        "TOKEN": "t", "KEY": "k"}
    assert "'t'" not in repr(entries)
    assert "TOKEN given twice in secrets" in refusal(lambda: secret_values(
        [*entries, SecretEntry(name="TOKEN", value=SecretStr("u"))]))
    recorded = [{"name": "TOKEN", "value": "t"}, {"name": "KEY", "value": "k"}, "junk"]
    assert masked(recorded, {"TOKEN", "KEY"}) == [
        {"name": "TOKEN", "value": MASK}, {"name": "KEY", "value": MASK}, "junk"]
    assert masked({"GREETING": "hi", "TOKEN": "t"}, {"TOKEN"}) == {
        "GREETING": "hi", "TOKEN": MASK}
    assert masked(None, {"TOKEN"}) is None


def test_the_second_step_asks_for_the_missing_names_only() -> None:
    from edgefleet.flows.launch import input_form

    plan = LaunchPlan(application="hello", version="1.1.0", edges=["lab-1"],
                      sensitive=["TOKEN"], missing=[
                          Parameter(name="GREETING", required=True, message="set GREETING"),
                          Parameter(name="TOKEN", required=True),
                          Parameter(name="json", required=True)])  # a BaseModel attribute
    form = input_form(plan)
    schema = form.model_json_schema()
    assert schema["required"] == ["GREETING", "TOKEN", "json"]
    assert schema["properties"]["GREETING"]["description"] == "set GREETING"
    assert schema["properties"]["TOKEN"]["format"] == "password"
    answer = form.model_validate({"GREETING": "hi", "TOKEN": "s3", "json": "j"})
    values = answer.model_dump(by_alias=True)
    assert values["GREETING"] == "hi" and values["json"] == "j"
    assert isinstance(values["TOKEN"], SecretStr) and "s3" not in repr(answer)


@pytest.fixture
def records(empty_records: str) -> str:
    edgefleet.create_application("greet", "1.0.0", compose=GREETING, params=[
        {"name": "TOKEN", "sensitive": True}])
    edgefleet.add_edge("e-1", "tcp://127.0.0.1:1", check=False, labels=["site=a"])
    edgefleet.add_edge("e-2", "tcp://127.0.0.1:2", check=False, labels=["site=a"])
    return empty_records


def check(**given: Any) -> LaunchPlan:
    from edgefleet.tasks.launch import check_launch_request

    args: dict[str, Any] = {"version": "1.0.0", "edges": ["e-1", "e-2"], "selector": None,
                            "env": {}, "secrets": {}, "allow_unpublished": True}
    args.update(given)
    plan: LaunchPlan = check_launch_request.fn("greet", **args)
    return plan


def refusal(call: Any) -> str:
    with pytest.raises((InvalidInput, NotFound)) as caught:
        call()
    return str(caught.value)


def test_the_launch_refuses_in_the_words_of_deploy(records: str) -> None:
    for env in ({}, {"GREETING": "hi", "MODE": "x"}):
        words = refusal(lambda env=env: edgefleet.create_deployment(
            "greet", "e-1", version="1.0.0", env=env, allow_unpublished=True))
        assert refusal(lambda env=env: check(env=env, ask_missing=False)) == words
        assert "nothing was deployed" in words
    unpublished = refusal(lambda: edgefleet.create_deployment("greet", "e-1", version="1.0.0"))
    assert refusal(lambda: check(allow_unpublished=False)) == unpublished
    no_edge = refusal(lambda: edgefleet.create_deployment("greet", "nope", version="1.0.0",
                                                          allow_unpublished=True))
    assert refusal(lambda: check(edges=["e-1", "nope"])) == no_edge
    assert "exactly one of them" in refusal(lambda: check(selector="site=a"))
    assert "exactly one of them" in refusal(lambda: check(edges=None))
    assert "no edge matches selector" in refusal(lambda: check(edges=None, selector="site=b"))
    assert "given both in env and in secrets" in refusal(lambda: check(
        env={"TOKEN": "a"}, secrets={"TOKEN": SecretStr("b")}))
    assert edgefleet.list_deployments() == []


def test_a_missing_required_parameter_is_asked_for_and_a_selector_resolved(
        records: str) -> None:
    plan = check(edges=None, selector="site=a", env={"MOOD": "ok"})
    assert plan.edges == ["e-1", "e-2"] and plan.version == "1.0.0"
    assert [p.name for p in plan.missing] == ["GREETING"] and plan.sensitive == ["TOKEN"]
    # still refused for what cannot be asked: an unknown name
    assert "did you mean MOOD" in refusal(lambda: check(env={"MODE": "x"}))
    assert check(env={"GREETING": "hi"}).missing == []


def test_the_deployments_are_created_all_or_none(records: str) -> None:
    from edgefleet.models.policies import Change, UpdatePolicy
    from edgefleet.tasks.launch import create_launch_deployments

    plan = check(env={"GREETING": "hi"})
    policy = UpdatePolicy(notify=Change.MINOR)
    ids = create_launch_deployments.fn(plan, env={"GREETING": "hi"}, secrets={},
                                       policy=policy, allow_unpublished=True)
    shown = [edgefleet.deployment_status(i) for i in ids]
    assert [(s["edge"], s["state"], s["env"], s["policy"]["notify"]) for s in shown] == [
        ("e-1", "CREATED", {"GREETING": "hi"}, "minor"),
        ("e-2", "CREATED", {"GREETING": "hi"}, "minor")]
    # an edge gone between the check and the creation: none of the deployments is recorded
    edgefleet.create_application("other", "1.0.0", image="x:1")
    edgefleet.add_edge("e-3", "tcp://127.0.0.1:3", check=False)
    late = LaunchPlan(application="other", version="1.0.0", edges=["e-3", "e-4"])
    assert "no edge named 'e-4'" in refusal(lambda: create_launch_deployments.fn(
        late, env={}, secrets={}, policy=policy, allow_unpublished=True))
    assert len(edgefleet.list_deployments()) == 2
