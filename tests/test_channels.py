"""Notify channels without a Prefect server: requests refused before anything is made, and
which channels delivered a notice (the automations' events and edgefleet's re-sends)."""

from __future__ import annotations

from typing import Any

import pytest
from prefect.types.names import BlockDocumentName
from pydantic import TypeAdapter, ValidationError
from typer.testing import CliRunner

from edgefleet.api import channels
from edgefleet.deliveries import PREFIX
from edgefleet.errors import InvalidInput
from edgefleet.models.inputs import check_block_name

PREFECT_NAME: TypeAdapter[str] = TypeAdapter(BlockDocumentName)


@pytest.fixture
def no_prefect(monkeypatch: pytest.MonkeyPatch) -> None:
    """Reaching the Prefect server (where a channel is made) fails the test."""
    def reached() -> Any:
        raise AssertionError("a refused request reached the Prefect server")

    monkeypatch.setattr(channels, "_client", reached)


@pytest.mark.parametrize("name", ["a.b", "a_b", "Ops", "-ops", "", "o" * 64, "a/b"])
def test_a_channel_name_prefect_would_refuse_is_refused_first(name: str,
                                                              no_prefect: None) -> None:
    with pytest.raises(InvalidInput) as info:
        channels.add_channel(name, webhook="http://127.0.0.1:9/x", on="offline")
    message = str(info.value)
    assert f"channel name {name!r}"[:40] in message and "'-'" in message
    assert "\n" not in message


def test_the_cli_refuses_it_in_one_line(no_prefect: None) -> None:
    from edgefleet.cli.main import app

    result = CliRunner().invoke(app, ["notify", "add", "a.b", "--webhook",
                                      "http://127.0.0.1:9/x", "--on", "offline"])
    assert result.exit_code == 1
    assert "channel name 'a.b' is not valid" in result.output
    assert "Traceback" not in result.output and "pydantic" not in result.output


@pytest.mark.parametrize("name", ["ops", "a-b", "0", "slack-ops", "o" * 63])
def test_every_channel_name_accepted_is_a_block_name_prefect_accepts(name: str) -> None:
    assert check_block_name(name, "channel") == name
    assert PREFECT_NAME.validate_python(PREFIX + name) == PREFIX + name


@pytest.mark.parametrize("name", ["a.b", "a_b", "Ops"])
def test_prefect_itself_refuses_what_is_refused(name: str) -> None:
    with pytest.raises(ValidationError):
        PREFECT_NAME.validate_python(PREFIX + name)
