"""`edgefleet worker` and `up --workers`: what a worker is started with, and the refusals
that start nothing (no Prefect server, no worker process)."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path

import pytest
from prefect.settings import PREFECT_API_URL, temporary_settings
from typer.testing import CliRunner

from edgefleet import server, workers
from edgefleet.cli.main import app
from edgefleet.settings import get_settings


@pytest.fixture(autouse=True)
def own_home(switch_home: Callable[[Path], AbstractContextManager[Path]], tmp_path: Path,
             monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A home of its own: no `edgefleet up` runs there, even while the session's does."""
    monkeypatch.delenv(server.WORKER_API_ENV, raising=False)
    with switch_home(tmp_path / "home") as home:
        yield home


def cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.stdout + result.stderr


@pytest.mark.parametrize("name", ["plant-7", "cp.example_1", "a" * 100])
def test_a_worker_name_is_one_plain_word(name: str) -> None:
    assert workers.valid_name(name)


@pytest.mark.parametrize("name", ["", "-x", "--limit", "../etc", "a b", "$(id)", "x;y",
                                  "a" * 101, "é"])
def test_names_that_are_options_paths_or_shell_are_refused(name: str) -> None:
    assert not workers.valid_name(name)


def test_a_worker_takes_the_pool_s_jobs_polling_each_second_with_run_heartbeats() -> None:
    args = workers.command("plant-7", limit=3)
    assert args[1:5] == ["-m", "prefect", "worker", "start"]
    assert args[args.index("--pool") + 1] == "edgefleet"
    assert args[args.index("--type") + 1] == "process"
    assert args[args.index("--name") + 1] == "plant-7"
    assert args[args.index("--limit") + 1] == "3"
    env = workers.environment("http://cp.example:4200/api", base={"PREFECT_HOME": "/x"})
    assert env["PREFECT_API_URL"] == "http://cp.example:4200/api"
    assert env["PREFECT_WORKER_QUERY_SECONDS"] == "0.5"
    assert env["PREFECT_FLOWS_HEARTBEAT_FREQUENCY"] == str(get_settings().run_heartbeat_seconds)
    assert env["PREFECT_HOME"] == "/x"  # a home given is kept
    assert env[server.WORKER_API_ENV] == "http://cp.example:4200/api"  # for its runs' events
    assert "EDGEFLEET_DATABASE_URL" not in env  # nothing added that the caller did not set
    assert workers.default_name() != workers.default_name()


def test_worker_without_a_prefect_api_is_refused_with_what_to_set() -> None:
    assert server.running_api_url() is None
    with temporary_settings(restore_defaults={PREFECT_API_URL}):
        code, out = cli("worker")
    assert code == 1
    assert "PREFECT_API_URL" in out and "edgefleet up" in out


def test_worker_with_a_bad_name_is_refused_before_anything_starts() -> None:
    with temporary_settings({PREFECT_API_URL: "http://127.0.0.1:9/api"}):
        code, out = cli("worker", "--name", "../etc")
    assert code == 1
    assert "'../etc'" in out


def test_up_with_negative_workers_is_refused_and_starts_nothing() -> None:
    code, out = cli("up", "--workers", "-1")
    assert code == 2 and "--workers" in out
    assert not server.state_file().exists()


def test_a_worker_s_flow_runs_send_events_to_its_server_with_no_up_on_their_machine(
        monkeypatch: pytest.MonkeyPatch) -> None:
    assert server.served_api_url() is None and server.running_api_url() is None
    monkeypatch.setenv(server.WORKER_API_ENV, "http://cp.example:4200/api")
    assert server.served_api_url() == "http://cp.example:4200/api"
    assert server.running_api_url() == "http://cp.example:4200/api"


def test_down_stops_the_serving_process_an_earlier_release_recorded() -> None:
    sleeper = subprocess.Popen(["sleep", "300"], start_new_session=True)
    try:
        server.state_file().write_text(json.dumps({"serve_pid": sleeper.pid}))
        stopped: list[str] = []
        server.down(progress=stopped.append)
        assert sleeper.wait(timeout=20) is not None
        assert stopped == [f"stopping serve (pid {sleeper.pid})"]
        assert not server.state_file().exists()
    finally:
        sleeper.kill()
        sleeper.wait()


@pytest.mark.parametrize(("host", "url"), [("0.0.0.0", "http://127.0.0.1:4311/api"),
                                           ("10.8.0.1", "http://10.8.0.1:4311/api"),
                                           ("::", "http://127.0.0.1:4311/api"),
                                           ("fd00::1", "http://[fd00::1]:4311/api")])
def test_the_server_listens_where_prefect_host_says_and_is_reached_there(
        host: str, url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGEFLEET_PREFECT_HOST", host)
    monkeypatch.setenv("EDGEFLEET_PREFECT_PORT", "4311")
    get_settings.cache_clear()
    try:
        assert server.configured_api_url() == url
    finally:
        monkeypatch.delenv("EDGEFLEET_PREFECT_HOST")
        get_settings.cache_clear()


@pytest.mark.parametrize(("name", "value", "why"), [
    ("EDGEFLEET_PREFECT_HOST", "$(id)", "not an IP address"),
    ("EDGEFLEET_PREFECT_HOST", "cp.example", "not an IP address"),
    ("EDGEFLEET_PREFECT_PORT", "99999", "less than 65536")])
def test_a_bad_setting_is_named_with_its_value_not_a_traceback(
        name: str, value: str, why: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    try:
        code, out = cli("deployments")
    finally:
        monkeypatch.delenv(name)
        get_settings.cache_clear()
    assert code == 1
    assert f"{name}={value!r}" in out and why in out
    assert "Traceback" not in out
