"""Channel deliveries: which automation events are failed ones (events built as the server
does), and a block's send raising when it does not deliver."""

from __future__ import annotations

import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from prefect.blocks.notifications import SlackWebhook
from prefect.events import Event

from edgefleet.deliveries import _failed, failure_of, send
from edgefleet.errors import EdgefleetError

AUTOMATION = "7d1c5a0e-0000-4000-8000-000000000001"
NOTICE = "0b4f6c2a-0000-4000-8000-000000000002"


def action(event: str, name: str = "edgefleet-notify-ops", **payload: Any) -> Event:
    return Event(event=event,
                 resource={"prefect.resource.id": f"prefect.automation.{AUTOMATION}",
                           "prefect.resource.name": name},
                 related=[{"prefect.resource.id": f"prefect.event.{NOTICE}",
                           "prefect.resource.role": "triggering-event"}],
                 payload={"action_index": 0, "action_type": "call-webhook",
                          "invocation": "inv-1", **payload})


def test_a_refusing_receiver_and_a_failed_action_are_failed_deliveries() -> None:
    refused = _failed(action("prefect.automation.action.executed", status_code=503))
    assert refused is not None
    assert (refused.channel, refused.automation_id, refused.event_id, refused.invocation) == (
        "ops", AUTOMATION, NOTICE, "inv-1")
    assert refused.reason == "the receiver answered HTTP 503"
    unreachable = _failed(action("prefect.automation.action.failed",
                                 reason="Webhook call failed: ConnectError()"))
    assert unreachable is not None and unreachable.reason.startswith("Webhook call failed")


def test_a_delivery_and_other_automations_are_not() -> None:
    assert failure_of(action("prefect.automation.action.executed", status_code=204)) is None
    assert _failed(action("prefect.automation.action.executed", status_code=204)) is None
    assert _failed(action("prefect.automation.action.failed", name="someone-elses")) is None


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.parametrize("scheme", ["http", "json"])
def test_an_apprise_block_that_cannot_deliver_raises(scheme: str) -> None:
    """Apprise blocks only log a failure by default: `notify test` would say "sent" and a
    delivery sent again would be recorded as sent. ``http://`` is no Slack URL Apprise
    knows (nothing to notify); ``json://`` is Apprise's plain JSON POST, refused here."""
    block = SlackWebhook(url=f"{scheme}://127.0.0.1:{closed_port()}/hook")
    with pytest.raises(EdgefleetError, match="SlackWebhook did not deliver"):
        send(block, subject="s", text="t", kind="test", channel="ops")


def test_an_apprise_block_that_delivers_does_not_raise() -> None:
    got: list[bytes] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's name)
            got.append(self.rfile.read(int(self.headers.get("Content-Length", 0))))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    receiver = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    try:
        block = SlackWebhook(url=f"json://127.0.0.1:{receiver.server_address[1]}/hook")
        send(block, subject="edgefleet test", text="it works", kind="test", channel="ops")
    finally:
        receiver.shutdown()
    assert len(got) == 1 and b"it works" in got[0]
