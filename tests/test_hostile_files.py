"""Hostile files are refused at the door: fast, in one line, before anything is stored.

The hostile files are the benchmark's (``bench/hostile_files.py``), so the figures and the
tests speak of the same files. Generated junk (hypothesis) may only ever produce edgefleet's
own validation error, never a traceback.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel
from typer.testing import CliRunner

import edgefleet
from bench.hostile_files import GOOD, billion_laughs, compose_cases, env_cases, many_services
from edgefleet.cli.main import app
from edgefleet.errors import InvalidInput, RefusedFile
from edgefleet.models.documents import (
    Limits,
    env_file_keys,
    load_yaml,
    text_of,
)
from edgefleet.models.inputs import (
    DeploymentCreate,
    EdgeCreate,
    VersionCreate,
    parse_compose,
    parse_env,
)
from edgefleet.models.privileges import control_plane_files, host_privileges
from edgefleet.validation import validated

REFUSALS = {
    "billion laughs (nested aliases)": "aliases expand to more than 10000 nodes",
    "alias cycle": "a cycle",
    "deep nesting (10,000 flow levels)": "nesting depth",
    "deep nesting (100 block levels)": "nested deeper than 32 levels",
    "13 MB compose file": "over the limit of 1 MiB",
    "201 services": "more than 200 services",
    "20,000 services (under 1 MiB)": "more than 200 services",
    "not UTF-8 (Latin-1)": "not UTF-8 text (byte 0xe9 at offset 15)",
    "duplicate keys": "key 'web' appears twice in one mapping (line 3)",
    "privileged without --allow-privileged": "services.web.privileged: true; services.web.pid",
    "env_file of the control plane": "services.web.env_file[0]: /etc/shadow",
    "1 MiB list of ints, duplicate key at the end": "more than 100000 YAML nodes",
    "1 MiB list of ints, invalid image": "more than 100000 YAML nodes",
    "1 MiB list of ints, otherwise valid": "more than 100000 YAML nodes",
    "99,990 ints, invalid image": "image reference 'not an image' is not valid",
}


@functools.cache
def hostile_files() -> dict[str, bytes]:
    """Built once per session (the 13 MB one takes a moment)."""
    return compose_cases()


@pytest.mark.parametrize("name", sorted(REFUSALS))
def test_hostile_compose_file_is_refused_in_one_line(name: str) -> None:
    """(How fast: `python bench/hostile_files.py`, never a timed assertion here.)"""
    data = hostile_files()[name]
    with pytest.raises(InvalidInput) as refused:
        edgefleet.create_application("hostile", "1.0.0", compose=data)
    message = str(refused.value)
    assert REFUSALS[name] in message
    assert "\n" not in message and len(message) < 700
    assert "hostile" not in [a["name"] for a in edgefleet.list_applications()]


def test_hostile_files_on_the_command_line_store_nothing(tmp_path: Path) -> None:
    for i, (name, data) in enumerate(hostile_files().items()):
        path = tmp_path / f"case{i}.yaml"
        path.write_bytes(data)
        result = CliRunner().invoke(app, ["app", "create", "cli-hostile", "--version", "1.0.0",
                                          "--stack" if i % 2 else "--compose", str(path)])
        assert result.exit_code == 1, name
        (line,) = result.output.strip().splitlines()
        assert line.startswith("error: ") and REFUSALS[name] in line, line
    assert "cli-hostile" not in [a["name"] for a in edgefleet.list_applications()]


def test_a_pipe_or_device_is_read_only_up_to_the_limit() -> None:
    result = CliRunner().invoke(app, ["app", "create", "zeros", "--version", "1.0.0",
                                      "--compose", "/dev/zero"])
    assert result.exit_code == 1
    assert "over the limit of 1 MiB" in result.output


def test_limits_are_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    from edgefleet.settings import get_settings

    monkeypatch.setenv("EDGEFLEET_MAX_FILE_BYTES", "100")
    monkeypatch.setenv("EDGEFLEET_MAX_SERVICES", "2")
    get_settings.cache_clear()
    try:
        with pytest.raises(RefusedFile, match="over the limit of 100 bytes"):
            parse_compose(many_services(3))
        with pytest.raises(RefusedFile, match="more than 2 services"):
            parse_compose(many_services(3, "a"))
    finally:
        monkeypatch.undo()
        get_settings.cache_clear()


def test_normal_files_with_anchors_and_merges_are_accepted() -> None:
    model = parse_compose(GOOD)
    assert model["services"]["worker"]["restart"] == "unless-stopped"
    assert len(parse_compose(many_services(200))["services"]) == 200
    # overriding a merged key is what a merge is for: not a duplicate
    assert load_yaml("x: &x {a: 1}\ny: {<<: *x, a: 2}\n", what="f") == {
        "x": {"a": 1}, "y": {"a": 2}}


def test_alias_budget_counts_what_aliases_expand_to() -> None:
    limits = Limits(alias_budget=100)
    ten = "a: &a [1,2,3,4,5,6,7,8,9]\n"  # 10 nodes
    load_yaml(ten + "b: [" + ",".join(["*a"] * 10) + "]\n", what="f", limits=limits)
    with pytest.raises(RefusedFile, match="aliases expand to more than 100 nodes"):
        load_yaml(ten + "b: [" + ",".join(["*a"] * 11) + "]\n", what="f", limits=limits)
    with pytest.raises(RefusedFile, match="more than 10000"):
        load_yaml(billion_laughs(), what="f")


def test_aliases_cannot_hide_depth() -> None:
    deep = "a: &a " + "[" * 20 + "]" * 20 + "\n"
    load_yaml(deep + "b: *a\n", what="f", limits=Limits(max_depth=24))
    with pytest.raises(RefusedFile, match="nested deeper than 24"):
        load_yaml(deep + "b: [[[[[*a]]]]]\n", what="f", limits=Limits(max_depth=24))


@pytest.mark.parametrize(("text", "message"), [
    ("a: !!int xyz", "not valid YAML: ValueError"),
    ("a: 2020-13-45", "month must be in 1..12"),
    ("a: *nope", "found undefined alias"),
    ("a: !!python/object:os.system x", "could not determine a constructor"),
    ("a: 1\n---\nb: 2\n", "expected a single document"),
    ("a: \x00", "not valid YAML"),
    ("a: \ud800", "lone surrogate"),
])
def test_what_yaml_cannot_build_is_one_refusal(text: str, message: str) -> None:
    with pytest.raises(RefusedFile, match=message):
        load_yaml(text, what="compose file")


def test_env_files_have_the_same_limits() -> None:
    assert env_file_keys(b"# comment\nA=1\n\nexport B='two words'\nC=\"q\"\nD=\n") == [
        "A", "B", "C", "D"]
    expected = {"env file of 13 MB": "over the limit of 1 MiB",
                "env file not UTF-8": "not UTF-8 text (byte 0xe9 at offset 5)",
                "env file with a duplicate": "line 3: 'A' is set twice"}
    for name, data in env_cases().items():
        with pytest.raises(RefusedFile, match=re.escape(expected[name])):
            env_file_keys(data)
    with pytest.raises(RefusedFile, match="more than 2 variables"):
        env_file_keys("A=1\nB=2\nC=3\n", limits=Limits(max_env_entries=2))
    with pytest.raises(InvalidInput, match="NUL"):
        env_file_keys("A=\x00")


ENV_APP = """\
services:
  web:
    image: 127.0.0.1:5000/edgefleet/hello:1.0.0
    env_file: [app.env, {path: ./opt.env, required: false}]
    volumes: [./conf.txt:/etc/conf.txt:ro]
"""


@pytest.mark.parametrize(("name", "data", "message"), [
    ("app.env", b"A=1\nB=2\nA=3\n", "env file app.env (services.web.env_file) refused: "
                                     "line 3: 'A' is set twice (first on line 1)"),
    ("opt.env", "A=1\nB=\x00\n", "env file opt.env (services.web.env_file) refused: "
                                   "contains a NUL character"),
    ("app.env", "".join(f"K{i}=v\n" for i in range(20_000)),
     "env file app.env (services.web.env_file) refused: more than 10000 variables"),
])
def test_bundled_env_files_are_held_to_the_env_file_limits(name: str, data: str | bytes,
                                                          message: str) -> None:
    files: dict[str, str | bytes] = {"app.env": "A=1\n", "conf.txt": "x\n", name: data}
    with pytest.raises(InvalidInput) as refused:
        edgefleet.create_application("hostile-env", "1.0.0", compose=ENV_APP, files=files)
    assert str(refused.value).startswith(message), str(refused.value)
    assert "\n" not in str(refused.value)
    assert "hostile-env" not in [a["name"] for a in edgefleet.list_applications()]


def test_a_bundled_env_file_is_read_the_way_compose_reads_it() -> None:
    # what compose accepts stays accepted: a value over lines, KEY: VALUE, a bare KEY;
    # a file used only as a bind mount is no env file (its lines may repeat)
    env = 'A="one\nA=still the value of A"\nB: 2\nexport C=3\nD\n# A=4\n'
    assert env_file_keys(env) == ["A", "B", "C", "D"]
    row = edgefleet.create_application("env-syntax", "1.0.0", compose=ENV_APP,
                                       files={"app.env": env, "conf.txt": "X=1\nX=2\n"})
    assert row.files["app.env"] == env
    edgefleet.delete_application("env-syntax")


def test_an_empty_compose_file_says_so(tmp_path: Path) -> None:
    for text in ("", "\n", "# only a comment\n"):
        with pytest.raises(InvalidInput, match="^compose file is empty"):
            edgefleet.create_application("empty", "1.0.0", compose=text)
    (tmp_path / "c.yaml").write_text("")
    result = CliRunner().invoke(app, ["app", "create", "empty", "--version", "1.0.0",
                                      "--compose", str(tmp_path / "c.yaml")])
    assert result.output.strip() == f"error: compose file {tmp_path / 'c.yaml'} is empty"
    assert "empty" not in [a["name"] for a in edgefleet.list_applications()]


@pytest.mark.parametrize("shape", ["5", "{a: b}", "./x:/y", "true", "[5, [1], {type: 3}]"])
def test_a_volumes_key_of_any_shape_gets_one_line(shape: str) -> None:
    """The bundled-file references are read before the file is validated: a shape they do
    not expect is left to the validation, which names the key."""
    compose = f"services:\n  web:\n    image: 127.0.0.1:5000/x:1\n    volumes: {shape}\n"
    with pytest.raises(InvalidInput, match=r"services\.web\.volumes"):
        edgefleet.create_application("odd-volumes", "1.0.0", compose=compose,
                                     files={"a.env": "A=1\n"})


def test_env_entries_of_any_type_are_checked() -> None:
    for junk in ([1, 2], {"A": ["x"]}, "A=1", {"A": "\x00"}):
        with pytest.raises(ValueError, match="environment"):
            parse_env(junk)  # type: ignore[arg-type]


# --- generated junk: only edgefleet's own validation error may come out ---------------

FRAGMENTS = [
    "services:", "\n", "  ", "    ", "web:", "image: a", "image: 127.0.0.1:5000/x:1", "&a ",
    "*a", "&b ", "*b", "<<: ", "[", "]", "{", "}", ",", "- ", "!!binary ", "!!int ",
    "!!timestamp ", "!!set ", "!!omap ", "!!float ", "!!python/object ", "!custom ", "? ",
    ": ", "'", '"', "#", "---\n", "...\n", "%YAML 1.1\n", "\t", "\x00", "\ud800", "é", "\u2028",
    "privileged: true", "pid: host", "volumes: [/:/h]", "env_file: /etc/x", "0x1F",
    "2020-13-45", "2001-12-14t21:59:43.10-05:00", "~", "null", "yes", "1e999", "-.inf", "9" * 30,
    "cap_add: [ALL]", "networks: [host]", "x-a: &x {a: 1}", "include: [/etc/passwd]",
]
yaml_junk = st.lists(st.one_of(st.sampled_from(FRAGMENTS), st.text(max_size=6)),
                     max_size=40).map("".join)
anything = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8)
    | st.binary(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner,
                                                                max_size=4),
    max_leaves=12)
# 100 junk inputs per test keep the fast tier fast; every run draws new ones
JUNK = settings(max_examples=100, deadline=None,
                suppress_health_check=[HealthCheck.too_slow])


def _only_our_error(build: type[BaseModel], **fields: Any) -> None:
    try:
        validated(build, **fields)
    except InvalidInput as exc:
        assert "\n" not in str(exc) and len(str(exc)) < 2000, str(exc)


@JUNK
@given(text=yaml_junk | st.text(max_size=200), kind=st.sampled_from(["compose", "swarm"]),
       allow=st.booleans(), as_bytes=st.booleans())
def test_generated_compose_files_give_only_our_error(text: str, kind: str, allow: bool,
                                                     as_bytes: bool) -> None:
    compose: Any = text.encode("utf-8", "surrogatepass") if as_bytes else text
    _only_our_error(VersionCreate, version="1.0.0", kind=kind, compose=compose,
                    allow_privileged=allow)
    try:
        parse_compose(compose)
    except ValueError as exc:
        assert "\n" not in str(exc)


SERVICE_KEYS = ["privileged", "pid", "ipc", "uts", "network_mode", "userns_mode", "cap_add",
                "devices", "security_opt", "volumes", "networks", "env_file", "extends"]
service_junk = st.builds(
    lambda image, rest: {"image": image, **rest},
    st.sampled_from(["a", "127.0.0.1:5000/x:1"]),
    st.dictionaries(st.sampled_from(SERVICE_KEYS), anything, max_size=5))
model_junk = st.fixed_dictionaries(
    {"services": st.dictionaries(st.text(max_size=4) | st.integers(), service_junk,
                                 min_size=1, max_size=3)},
    optional={key: anything for key in ("volumes", "secrets", "configs", "networks", "include")})


@JUNK
@given(model=model_junk, allow=st.booleans())
def test_generated_compose_models_give_only_our_error(model: dict[str, Any], allow: bool
                                                      ) -> None:
    host_privileges(model)
    control_plane_files(model)
    _only_our_error(VersionCreate, version="1.0.0", kind="compose",
                    compose=yaml.safe_dump(model), allow_privileged=allow)


VOLUME_SPECS = ["./conf.txt:/c:ro", "conf.txt:/c", "${HOST:-/}:/h", "${A:-./conf.txt}:/c",
                "data:/d", "/:/h", "$${x}:/y", "${A:/x", ":", "::::"]
ENV_FILE_SPECS = ["app.env", "./app.env", "missing.env", "/etc/x", "${E}.env",
                  {"path": "app.env", "required": False}, {"path": 5}, {"required": "x"}]
# values a service key may have: a flat mix of types (a scalar where a list is expected is
# the common mistake), junk, and values close to what the checks look for
scalar = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8)
near = st.sampled_from(VOLUME_SPECS + ENV_FILE_SPECS)
service_value = st.one_of(
    scalar, scalar, near, anything, st.lists(near | scalar, max_size=3),
    st.dictionaries(st.sampled_from(["source", "target", "type", "path", "file", "required"]),
                    scalar | near, max_size=3))
api_service = st.fixed_dictionaries(
    {"image": st.sampled_from(["a", "127.0.0.1:5000/x:1", "Not An Image", 5, None])},
    optional={key: service_value for key in (
        "volumes", "env_file", "configs", "privileged", "pid", "cap_add", "environment",
        "networks", "extends", "ports")})
api_model = st.fixed_dictionaries(
    {"services": st.dictionaries(st.text(max_size=4) | st.integers(), api_service,
                                 min_size=1, max_size=3)},
    optional={key: scalar | anything | st.dictionaries(st.text(max_size=4), st.fixed_dictionaries(
        {"file": st.sampled_from(["./conf.txt", "conf.txt", "/etc/x", "app.env"])}),
        max_size=2) for key in ("volumes", "configs", "secrets", "networks")})
bundled = st.dictionaries(
    st.sampled_from(["app.env", "conf.txt", "other.env"]),
    st.text(max_size=40) | st.binary(max_size=20) | st.sampled_from(
        ["A=1\n", "A=1\nA=2\n", "A=\x00", 'A="open\nB=1\n', "K: v\nK\n"]),
    max_size=3)
_names = itertools.count()
# fewer examples than JUNK: an input that passes every check costs a `compose config` run
THROUGH_THE_API = settings(max_examples=60, deadline=None,
                           suppress_health_check=[HealthCheck.too_slow])


@THROUGH_THE_API
@given(compose=yaml_junk | api_model.map(yaml.safe_dump), files=bundled, allow=st.booleans())
@example(compose="services: {web: {image: a, volumes: 5}}", files={}, allow=False)
@example(compose="services: {web: {image: a, volumes: true, env_file: 5}}",
         files={"app.env": "A=1\n"}, allow=True)
@example(compose="services: {web: {image: a, env_file: [{path: app.env}, 7]}}\nconfigs: [1]",
         files={"app.env": "A=1\nA=2\n"}, allow=False)
def test_generated_files_given_to_create_application_give_only_our_error(
        compose: str, files: dict[str, Any], allow: bool) -> None:
    """The public entry, as a user or a script calls it: whatever the file and the bundled
    files, the answer is a version or one line of InvalidInput, and a refusal stores nothing."""
    name = f"junk-{next(_names)}"
    try:
        edgefleet.create_application(name, "1.0.0", compose=compose, files=files,
                                     allow_privileged=allow)
    except InvalidInput as exc:
        assert "\n" not in str(exc) and len(str(exc)) < 2000, str(exc)
        assert name not in [a["name"] for a in edgefleet.list_applications()]
    else:
        edgefleet.delete_application(name)


@JUNK
@given(version=anything, kind=anything, image=anything, compose=anything, env=anything,
       ports=anything, secret=anything, allow=anything)
def test_generated_version_fields_give_only_our_error(version: Any, kind: Any, image: Any,
                                                      compose: Any, env: Any, ports: Any,
                                                      secret: Any, allow: Any) -> None:
    _only_our_error(VersionCreate, version=version, kind=kind, image=image, compose=compose,
                    env=env, ports=ports, registry_secret=secret, allow_privileged=allow)


@JUNK
@given(name=anything, host=anything, ca=anything, interval=anything, app_name=anything,
       env=anything, version=anything)
def test_generated_edge_and_deployment_fields_give_only_our_error(
        name: Any, host: Any, ca: Any, interval: Any, app_name: Any, env: Any,
        version: Any) -> None:
    _only_our_error(EdgeCreate, name=name, docker_host=host, tls_ca=ca, tls_cert=ca,
                    tls_key=ca, telemetry_interval=interval)
    _only_our_error(DeploymentCreate, application=app_name, edge=name, version=version, env=env)


@JUNK
@given(data=st.binary(max_size=300) | yaml_junk.map(
    lambda t: t.encode("utf-8", "surrogatepass")))
def test_generated_env_files_give_only_our_error(data: bytes) -> None:
    try:
        env_file_keys(data)
    except RefusedFile as exc:
        assert "\n" not in str(exc)
    with contextlib.suppress(RefusedFile):
        text_of(data, what="f")
