"""Notify channels without a Prefect server: requests refused before anything is made, and
which channels delivered a notice (the automations' events and edgefleet's re-sends)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any
from uuid import uuid4

import pytest
from prefect.events import Event
from prefect.types.names import BlockDocumentName
from pydantic import TypeAdapter, ValidationError
from typer.testing import CliRunner

from edgefleet import server
from edgefleet.api import channels
from edgefleet.deliveries import MAX_PAGES, PAGE, PREFIX, delivered, read_all
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


NOTICE = "0b4f6c2a-0000-4000-8000-000000000002"
OTHER = "0b4f6c2a-0000-4000-8000-000000000003"


def action(channel: str, notice: str, **payload: Any) -> Event:
    """An automation's action event as the server records it (see tests/test_deliveries)."""
    return Event(event="prefect.automation.action.executed",
                 resource={"prefect.resource.id": f"prefect.automation.{uuid4()}",
                           "prefect.resource.name": channel},
                 related=[{"prefect.resource.id": f"prefect.event.{notice}",
                           "prefect.resource.role": "triggering-event"}],
                 payload={"action_index": 0, "action_type": "call-webhook", **payload})


def test_a_notice_is_delivered_by_its_channels_actions_and_by_a_send_again() -> None:
    events = [action(PREFIX + "ops", NOTICE, status_code=204),
              action(PREFIX + "ops", NOTICE, status_code=204),  # a second action: one channel
              action(PREFIX + "pager", NOTICE, status_code=503),  # refused: not delivered
              action("someone-elses", NOTICE, status_code=204),
              action(PREFIX + "ops", OTHER, status_code=204)]
    again = [(NOTICE, "pager"), ("1e9d0000-0000-4000-8000-000000000009", "ops")]
    assert delivered(events, again, [NOTICE]) == {NOTICE: ["ops", "pager"]}
    assert delivered(events, [], [NOTICE, OTHER]) == {NOTICE: ["ops"], OTHER: ["ops"]}
    assert delivered([], [], [NOTICE]) == {}


def test_without_a_prefect_server_who_delivered_is_unknown(monkeypatch: pytest.MonkeyPatch
                                                           ) -> None:
    monkeypatch.setattr(server, "running_api_url", lambda: None)
    assert channels.delivered_to([NOTICE]) is None
    assert channels.delivered_to([]) is None


class EventPages:
    """A Prefect client's event pages over ``events``: ``PAGE`` a page, each pointing at the
    next; the pages read are counted."""

    def __init__(self, events: list[Any]) -> None:
        self.events, self.read = events, 0

    def read_events(self, filter: Any, limit: int) -> Any:  # noqa: A002 (the client's name)
        assert limit == PAGE
        return self._page(0)

    def read_events_page(self, next_page: str) -> Any:
        return self._page(int(next_page))

    def _page(self, number: int) -> Any:
        self.read += 1
        end = (number + 1) * PAGE
        return SimpleNamespace(events=self.events[number * PAGE:end],
                               next_page=str(number + 1) if end < len(self.events) else None)


def test_all_pages_are_read_up_to_the_bound_and_a_cut_is_said() -> None:
    few = EventPages(list(range(2 * PAGE + 3)))
    assert read_all(few, None) == (few.events, True) and few.read == 3
    exact = EventPages(list(range(MAX_PAGES * PAGE)))
    assert read_all(exact, None) == (exact.events, True) and exact.read == MAX_PAGES
    many = EventPages(list(range(MAX_PAGES * PAGE + 1)))
    assert read_all(many, None) == (many.events[:MAX_PAGES * PAGE], False)
    assert many.read == MAX_PAGES


def test_notify_list_labels_counts_that_are_not_totals(monkeypatch: pytest.MonkeyPatch) -> None:
    from edgefleet.cli.main import app

    counted = {"sent": 990, "failed": 10, "counted": 1000, "complete": False,
               "last_failure": None, "sent_again": 0, "failed_again": 0}
    monkeypatch.setattr(channels, "list_channels", lambda: [
        {"name": "ops", "on": ["offline"], "webhook": "http://127.0.0.1:9/x",
         "deliveries": counted},
        {"name": "pager", "on": ["failed"], "block": "slack-webhook/p",
         "deliveries": {**counted, "sent": 4, "failed": 0, "counted": 4, "complete": True}}])
    result = CliRunner().invoke(app, ["notify", "list"], env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    ops, pager = (line for line in result.output.splitlines() if "offline" in line
                  or "slack-webhook" in line)
    assert "990 of the last 1000" in ops and "10 of the last 1000" in ops
    assert " 4 " in pager and "of the last" not in pager
