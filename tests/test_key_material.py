"""Key material: a TLS key readable by others is warned about; the control plane's secrets
never reach the compose CLI that interpolates a vendor's file."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

import edgefleet
from edgefleet.api.edges import key_file_warnings
from edgefleet.cli.main import app
from edgefleet.engine import EngineConnection, cli_environment
from tests.lab_helpers import unique


def tls_files(folder: Path, key_mode: int) -> dict[str, str]:
    paths = {}
    for name in ("ca", "cert", "key"):
        path = folder / f"{name}.pem"
        path.write_text(f"-----BEGIN {name.upper()}-----\n")
        paths[f"tls_{name}"] = str(path)
    Path(paths["tls_key"]).chmod(key_mode)
    return paths


def test_a_key_readable_by_others_is_warned_about_at_edge_add_and_set(tmp_path: Path) -> None:
    files = tls_files(tmp_path, 0o644)
    name = unique("keyed")
    added = CliRunner().invoke(app, ["edge", "add", name, "--docker-host",
                                     "tcp://127.0.0.1:1", "--tls-ca", files["tls_ca"],
                                     "--tls-cert", files["tls_cert"], "--tls-key",
                                     files["tls_key"], "--no-check"])
    assert added.exit_code == 0, added.output
    assert f"the TLS key {files['tls_key']} is readable by others (mode 0644)" in added.output
    assert f"chmod 600 {files['tls_key']}" in added.output
    changed = CliRunner().invoke(app, ["edge", "set", name, "--heartbeat-interval", "30"])
    assert "readable by others" in changed.output
    Path(files["tls_key"]).chmod(0o600)
    assert key_file_warnings(edgefleet.show_edge(name)) == []
    quiet = CliRunner().invoke(app, ["edge", "set", name, "--heartbeat-interval", "20"])
    assert quiet.exit_code == 0 and "warning" not in quiet.output
    edgefleet.remove_edge(name)


def test_group_readable_counts_and_plain_edges_have_no_key(tmp_path: Path) -> None:
    files = tls_files(tmp_path, 0o640)
    edge = edgefleet.add_edge(unique("grp"), "tcp://127.0.0.1:1", check=False, **files)
    assert "mode 0640" in key_file_warnings(edge)[0]
    plain = edgefleet.add_edge(unique("plain"), "tcp://127.0.0.1:1", check=False)
    assert key_file_warnings(plain) == []
    for row in (edge, plain):
        edgefleet.remove_edge(row.name)


def test_compose_never_sees_the_control_planes_secrets(monkeypatch: pytest.MonkeyPatch
                                                       ) -> None:
    monkeypatch.setenv("EDGEFLEET_DATABASE_URL", "postgresql://ef:s3cret@db/ef")
    monkeypatch.setenv("PREFECT_API_KEY", "pnu_secret")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "aws-secret")
    monkeypatch.setenv("DOCKER_HOST", "tcp://elsewhere:2375")
    monkeypatch.setenv("LC_ALL", "C.UTF-8")
    env = cli_environment(EngineConnection(name="e", docker_host="tcp://127.0.0.1:2376"))
    assert not {"EDGEFLEET_DATABASE_URL", "PREFECT_API_KEY", "AWS_SECRET_ACCESS_KEY"} & set(env)
    assert "s3cret" not in str(env) and "secret" not in str(env)
    assert env["DOCKER_HOST"] == "tcp://127.0.0.1:2376"
    assert env["PATH"] and env["LC_ALL"] == "C.UTF-8"
