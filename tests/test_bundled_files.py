"""Files bundled with a version, without the lab: names, limits, references that must name
one, how they travel (a second compose file: config content, env files read where compose
runs), the config hash they change, and the notice that says what changed."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import edgefleet
from edgefleet import bundled_files as B
from edgefleet import compose_cli
from edgefleet import labels as L
from edgefleet import version_changes as V
from edgefleet.cli.main import app as cli
from edgefleet.errors import InvalidInput
from edgefleet.models.documents import load_yaml
from edgefleet.models.privileges import host_privileges

IMAGE = "127.0.0.1:5000/edgefleet/hello:1.0.0"
FILES_APP = f"""
services:
  web:
    image: {IMAGE}
    env_file: app.env
    configs: [{{source: motd, target: /etc/motd.txt}}]
  side:
    image: {IMAGE}
    volumes: ["./side.conf:/etc/side.conf:ro", "data:/data"]
  plain:
    image: {IMAGE}
volumes: {{data: {{}}}}
configs:
  motd: {{file: ./motd.txt}}
"""
FILES = {"app.env": "GREETING=hello from a file\n", "motd.txt": "costs $5\n",
         "side.conf": "side=1\n"}


@pytest.mark.parametrize("name", ["../x", "a/b", ".env", "..", "", "a b", "x" * 129, "é"])
def test_a_bundled_name_is_a_plain_file_name(name: str) -> None:
    with pytest.raises(InvalidInput, match="plain file name"):
        B.check_name(name)


def test_file_arguments_name_the_file() -> None:
    assert B.split_arg("conf/app.env") == ("conf/app.env", "app.env")
    assert B.split_arg("/tmp/x.txt=motd.txt") == ("/tmp/x.txt", "motd.txt")
    with pytest.raises(InvalidInput, match="plain file name"):
        B.split_arg("x=../etc/passwd")


def test_limits_name_the_file_and_the_limit() -> None:
    limits = B.FileLimits(max_file_bytes=10, max_total_bytes=15, max_files=2)
    assert B.checked({"a": b"12345"}, limits) == {"a": "12345"}
    with pytest.raises(InvalidInput, match=r"bundled file big is 11 bytes: at most 10 bytes "
                                           "per file"):
        B.checked({"big": "x" * 11}, limits)
    with pytest.raises(InvalidInput, match=r"reach 16 bytes with b: at most 15 bytes per "
                                           "version"):
        B.checked({"a": "x" * 8, "b": "y" * 8}, limits)
    with pytest.raises(InvalidInput, match="3 bundled files: at most 2 per version"):
        B.checked({"a": "", "b": "", "c": ""}, limits)
    with pytest.raises(InvalidInput, match=r"bundled file bin is not UTF-8 text \(byte 0xff"):
        B.checked({"bin": b"\xff\x00"}, limits)


def test_relative_references_must_name_bundled_files() -> None:
    doc = load_yaml(FILES_APP, what="compose file")
    assert [(r.path, r.where) for r in B.missing(doc, {})] == [
        ("app.env", "services.web.env_file"), ("./side.conf", "services.side.volumes"),
        ("./motd.txt", "configs.motd.file")]
    assert B.missing(doc, FILES) == []
    # absolute paths and named volumes are not references; an optional env file may be absent
    other = load_yaml("""
services:
  web:
    image: x
    env_file: [{path: ./opt.env, required: false}, ./conf/in.env]
    volumes: ["/srv:/srv", "data:/d", {type: bind, source: ./dir/sub, target: /s}]
""", what="compose file")
    assert [r.path for r in B.missing(other, {})] == ["./conf/in.env", "./dir/sub"]
    # a version allowed host paths may bind one; an env file is read on the control plane
    assert [r.path for r in B.missing(other, {}, host_paths_allowed=True)] == ["./conf/in.env"]


def test_a_missing_file_is_refused_at_create_naming_each() -> None:
    with pytest.raises(InvalidInput) as refused:
        edgefleet.create_application("files-missing", "1.0.0", compose=FILES_APP,
                                     files={"app.env": "A=1\n"})
    message = str(refused.value)
    assert "./side.conf (services.side.volumes)" in message
    assert "./motd.txt (configs.motd.file)" in message and "app.env" not in message.split(
        "bundled:")[1].split(";")[0]
    with pytest.raises(InvalidInput, match="an image application cannot use them"):
        edgefleet.create_application("files-image", "1.0.0", image=IMAGE, files={"a": "b"})


def test_bundled_files_are_no_host_privilege() -> None:
    doc = load_yaml(FILES_APP, what="compose file")
    assert host_privileges(doc) != []  # a bind mount, a file config: the host's files
    assert host_privileges(doc, bundled=FILES) == []
    row = edgefleet.create_application("files-ok", "1.0.0", compose=FILES_APP, files=FILES)
    assert row.files == FILES and row.privileges == []
    shown = edgefleet.show_application("files-ok")["versions"][0]["files"]
    assert shown["app.env"]["bytes"] == len(FILES["app.env"])
    edgefleet.delete_application("files-ok")


def test_the_cli_reads_files_and_names_them(tmp_path: Path) -> None:
    (tmp_path / "compose.yaml").write_text(FILES_APP)
    for name, text in FILES.items():
        (tmp_path / f"my-{name}").write_text(text)
    args = ["app", "create", "files-cli", "--version", "1.0.0", "--compose",
            str(tmp_path / "compose.yaml")]
    refused = CliRunner().invoke(cli, [*args, "--file", f"{tmp_path}/my-app.env=app.env"])
    assert refused.exit_code != 0 and "./motd.txt" in refused.output
    files = [a for name in FILES for a in ("--file", f"{tmp_path}/my-{name}={name}")]
    done = CliRunner().invoke(cli, [*args, *files])
    assert done.exit_code == 0, done.output
    shown = CliRunner().invoke(cli, ["app", "show", "files-cli"])
    assert "motd.txt" in shown.output and "side.conf" in shown.output
    edgefleet.delete_application("files-cli")


def resolved(files: dict[str, str], tmp_path: Path, text: str = FILES_APP
             ) -> dict[str, Any]:
    """Compose's model of ``text`` with ``files`` sent along, as ``resolve-compose`` asks
    for it (compose needs no engine for ``config``)."""
    folder = tmp_path / f"f{len(list(tmp_path.iterdir()))}"
    (folder / "files").mkdir(parents=True)
    for name, content in files.items():
        (folder / "files" / name).write_text(content)
    (folder / "compose.yaml").write_text(text)
    override = B.override(load_yaml(text, what="compose file"), files,
                          folder=str(folder / "files"))
    assert override is not None
    (folder / "over.yaml").write_text(override)
    proc = subprocess.run([*compose_cli.compose_binary(), "-p", "ef-x", "-f",
                           str(folder / "compose.yaml"), "-f", str(folder / "over.yaml"),
                           "--project-directory", "/var/lib/edgefleet/projects/ef-x", "config",
                           "--format", "json"], capture_output=True, text=True, cwd=folder)
    assert proc.returncode == 0, proc.stderr
    model: dict[str, Any] = json.loads(proc.stdout)
    return model


def test_the_vendors_file_is_read_by_compose_as_written(tmp_path: Path) -> None:
    """Only the override is ours: YAML 1.1 readings (``no`` → false, ``22:22`` → 1342)
    never reach what compose reads."""
    text = f"""
services:
  web:
    image: {IMAGE}
    env_file: [{{path: ./opt.env, required: false}}, app.env]
    environment: {{DEBUG: no, PAIR: 22:22}}
    volumes: ["./side.conf:/etc/side.conf", {{type: volume, source: data, target: /d}}]
volumes: {{data: {{}}}}
"""
    model = resolved({"app.env": "A=1\n", "side.conf": "s"}, tmp_path, text)
    web = model["services"]["web"]
    assert web["environment"] == {"A": "1", "DEBUG": "no", "PAIR": "22:22"}
    assert [v["source"] for v in web["volumes"]] == ["data"]
    assert web["configs"] == [{"source": "edgefleet-file-side.conf",
                               "target": "/etc/side.conf"}]
    assert B.override(load_yaml(text, what="compose file"), {}, folder="/x") is None


def test_files_travel_as_content_and_change_only_their_services_hash(tmp_path: Path) -> None:
    model = resolved(FILES, tmp_path)
    services, configs = model["services"], model["configs"]
    assert services["web"]["environment"] == {"GREETING": "hello from a file"}
    assert "env_file" not in services["web"]  # folded in: no path reaches the edge
    assert configs["motd"]["content"] == "costs $$5\n"  # escaped again: `up` interpolates
    assert "volumes" in services["side"] and all(
        v["type"] == "volume" for v in services["side"]["volumes"])
    assert {"source": "edgefleet-file-side.conf", "target": "/etc/side.conf"} in services[
        "side"]["configs"]
    assert host_privileges(model) == []

    def hashes(m: dict[str, Any]) -> dict[str, str]:
        return {name: L.config_hash(L.hashed_spec(m, name)) for name in ("web", "side", "plain")}

    before = hashes(model)
    assert hashes(resolved(FILES, tmp_path)) == before  # stable wherever it is resolved
    for name, changed in (("motd.txt", {"web"}), ("app.env", {"web"}),
                          ("side.conf", {"side"})):
        after = hashes(resolved({**FILES, name: FILES[name] + "MORE=1\n"}, tmp_path))
        assert {s for s in before if before[s] != after[s]} == changed, name


def definition(**kw: object) -> V.Definition:
    base: dict[str, object] = {"images": {"web": "reg/web:1.0", "db": "reg/db:1"},
                               "defaults": {"MOOD": "calm", "TOKEN": "s1"},
                               "sensitive": frozenset({"TOKEN"}),
                               "files": {"motd.txt": "hi"}, "urls": {"site": "http://x"},
                               "other": {"compose": "a"}}
    return V.Definition(**{**base, **kw})  # type: ignore[arg-type]


def test_the_notice_says_what_changed() -> None:
    old = definition()
    assert V.changes_note(old, old) == ""
    assert V.changes(old, definition(images={"web": "reg/web:1.1", "db": "reg/db:1"},
                                     other={"compose": "b"})) == [
        "images: web reg/web:1.0 → reg/web:1.1"]
    assert V.changes(old, definition(defaults={"MOOD": "happy", "TOKEN": "s2", "NEW": "1"})
                     ) == ["parameter defaults: MOOD 'calm' → 'happy', NEW added ('1'), "
                           "TOKEN changed"]
    assert V.changes(old, definition(files={"motd.txt": "ho", "extra": ""})) == [
        "files: extra added, motd.txt"]
    assert V.changes(old, definition(urls={"admin": "http://y"})) == ["URLs: admin, site"]
    assert V.changes(old, definition(other={"compose": "b"})) == ["definition: compose"]
    assert V.changes_note(old, definition(defaults={"MOOD": "x"}, files={})) == (
        ". Changed: parameter defaults: MOOD 'calm' → 'x', TOKEN removed; files: "
        "motd.txt removed")


def test_images_of_a_version() -> None:
    assert V.images_of("compose", None, FILES_APP) == {"web": IMAGE, "side": IMAGE,
                                                       "plain": IMAGE}
    assert V.images_of("image", "reg/app:1", None, "app") == {"app": "reg/app:1"}


def test_the_notice_of_a_recorded_version_says_what_changed() -> None:
    from edgefleet.crud import get_application, get_version
    from edgefleet.db import session_scope
    from edgefleet.version_notices import changed_note

    app = "files-notice"
    edgefleet.create_application(app, "1.0.0", compose=FILES_APP, files=FILES,
                                 urls=["site=http://${host}/"])
    edgefleet.add_version(app, "1.0.1", compose=FILES_APP, files={**FILES, "side.conf": "2"},
                          urls=["site=http://${host}/"])
    edgefleet.add_version(app, "1.0.2", compose=FILES_APP, files={**FILES, "side.conf": "2"},
                          urls=["site=http://${host}/v2"])
    with session_scope() as session:
        found = get_application(session, name=app)
        v = {n: get_version(session, application=found, version=n)
             for n in ("1.0.0", "1.0.1", "1.0.2")}
        assert changed_note(app, v["1.0.0"], v["1.0.1"]) == ". Changed: files: side.conf"
        assert changed_note(app, v["1.0.1"], v["1.0.2"]) == (
            ". Changed: URLs: site. Only its URLs changed: updating keeps the running "
            "containers")
        assert changed_note(app, v["1.0.0"], v["1.0.2"]) == (
            ". Changed: files: side.conf; URLs: site")
    edgefleet.delete_application(app)
