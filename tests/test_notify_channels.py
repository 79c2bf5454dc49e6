"""Notify channels on the lab: Prefect automations deliver edgefleet's events to a webhook.

A local HTTP receiver on 127.0.0.1 stands for the operators' endpoint; `edgefleet up` (the
session's Prefect server and served flows) evaluates the automations.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName
from prefect.settings import PREFECT_API_URL, temporary_settings

import edgefleet
from edgefleet.api.channels import add_channel, list_channels, remove_channel
from edgefleet.api.channels import test_channel as send_test_message
from edgefleet.errors import EdgefleetError, InvalidInput, NotFound
from edgefleet.events import missing_on_server
from edgefleet.lab.daemons import free_port
from edgefleet.version_notices import notify_version
from tests.conftest import RECONCILE_SECONDS
from tests.lab_helpers import TcpRelay, unique

pytestmark = pytest.mark.lab
# After a wait ends on a count reached, how long a late duplicate (a POST, or the
# automation's action event) has to show before the exact totals are checked.
SETTLE_SECONDS = 10


class Receiver:
    """Collects the JSON bodies POSTed to it; the first ``refuse`` POSTs get HTTP 503 (and
    are kept in ``refused``)."""

    def __init__(self, refuse: int = 0) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.refused: list[dict[str, Any]] = []
        received, refused = self.bodies, self.refused

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                length = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(length) or b"{}")
                if len(refused) < refuse:
                    refused.append(body)
                    self.send_response(503)
                else:
                    received.append(body)
                    self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def matching(self, test: Callable[[dict[str, Any]], bool]) -> list[dict[str, Any]]:
        return [b for b in list(self.bodies) if test(b)]

    def wait_for(self, test: Callable[[dict[str, Any]], bool], count: int,
                 timeout: float = 60) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while len(self.matching(test)) < count and time.monotonic() < deadline:
            time.sleep(0.5)
        return self.matching(test)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    found = Receiver()
    yield found
    found.server.shutdown()


def kind(name: str) -> Callable[[dict[str, Any]], bool]:
    return lambda body: body.get("subject", "").startswith(f"edgefleet {name}:")


def published(body: dict[str, Any]) -> bool:
    """A version notice ("APP V is published; ..."), not the served image check's own
    update-available notice, which its 5-minute cadence may send during any test."""
    return kind("update-available")(body) and " is published; " in body.get("subject", "")


def test_webhook_channel_gets_each_notice_once(lab: Any, edges: dict[str, Any], prefect_api: str,
                                               receiver: Receiver, quick_local_runs: None) -> None:
    app = unique("ntf")
    image = f"{lab.registry}/edgefleet/hello"
    # 1.0.0 runs the registry's newest tag: the served image check has nothing to tell (an
    # image notice of its own would be one more delivery to this channel)
    edgefleet.create_application(app, "1.0.0", image=f"{image}:2.0.0", ports=["8080"])
    edgefleet.add_version(app, "1.1.0", image=f"{image}:1.1.0", ports=["8080"])
    edgefleet.add_version(app, "1.2.0", image=f"{image}:2.0.0", ports=["8080"],
                          env=["HELLO_CRASH=1"])
    edgefleet.publish_version(app, "1.0.0")
    channel = unique("ops")
    made = add_channel(channel, webhook=receiver.url, application=app,
                       on="update-available,rolled-back,offline")
    assert made["on"] == ["update-available", "rolled-back", "offline"]
    launched = [edgefleet.deploy(app, edge) for edge in ("lab-1", "lab-2")]
    deployments = [d["id"] for d in launched]
    try:
        assert [d["state"] for d in launched] == ["STARTED", "STARTED"], launched
        edgefleet.publish_version(app, "1.1.0")
        available = receiver.wait_for(published, 2)
        assert len(available) == 2
        named = sorted(d[:12] for b in available for d in deployments if d[:12] in b["text"])
        assert named == sorted(d[:12] for d in deployments)  # one message per deployment
        assert all("1.0.0 → 1.1.0" in b["text"] and "edgefleet update" in b["text"]
                   for b in available)

        edgefleet.publish_version(app, "1.1.0")  # again: the notices exist, nothing is sent
        run = f"notify {app} 1.1.0"  # the publish trigger's run (flow_run_name)
        wait_until(lambda: completed_runs(prefect_api, run) >= 2, 60,
                   f"the second run {run!r} completed")
        assert len(receiver.matching(published)) == 2  # a late one: the exact totals below

        edgefleet.publish_version(app, "1.2.0")
        assert len(receiver.wait_for(published, 4)) >= 4
        after = edgefleet.update_deployment(deployments[0], to="1.2.0")
        assert after["state"] == "STARTED" and "rolled back" in (after["last_error"] or "")
        rolled = receiver.wait_for(kind("rolled-back"), 1)
        assert rolled and deployments[0][:12] in rolled[0]["text"], rolled
        deadline = time.monotonic() + 60  # the automation records its actions as events
        while time.monotonic() < deadline:
            sent = {c["name"]: c["deliveries"] for c in list_channels()}[channel]
            if sent["sent"] >= 5:
                break
            time.sleep(1)
        time.sleep(SETTLE_SECONDS)  # a duplicate sent late would have arrived by now
        assert len(receiver.matching(published)) == 4
        assert len(receiver.matching(kind("rolled-back"))) == 1
        sent = {c["name"]: c["deliveries"] for c in list_channels()}[channel]
        assert sent["sent"] == 5 and sent["failed"] == 0, sent
        deadline = time.monotonic() + 60  # each notice names the channel that delivered it
        while time.monotonic() < deadline:
            notes = [n for n in edgefleet.list_notifications()
                     if n["deployment_id"] in deployments and n["reason"] == "version"]
            if len(notes) == 4 and all(n["delivered_to"] == [channel] for n in notes):
                break
            time.sleep(1)
        assert [n["delivered_to"] for n in notes] == [[channel]] * 4, notes
    finally:
        for dep in deployments:
            edgefleet.delete_deployment(dep, force=True)
        remove_channel(channel)
    assert channel not in {c["name"] for c in list_channels()}


def test_a_notice_whose_event_was_lost_is_announced_once_by_the_reconcile(
        lab: Any, edges: dict[str, Any], prefect_api: str, receiver: Receiver,
        quick_local_runs: None) -> None:
    app = unique("lost")
    image = f"{lab.registry}/edgefleet/hello"
    edgefleet.create_application(app, "1.0.0", image=f"{image}:2.0.0", ports=["8080"])
    edgefleet.add_version(app, "1.1.0", image=f"{image}:1.1.0", ports=["8080"])
    edgefleet.publish_version(app, "1.0.0")
    channel = unique("lost")
    add_channel(channel, webhook=receiver.url, application=app, on="update-available")
    dep = edgefleet.deploy(app, "lab-2")["id"]
    try:
        # recorded, but its event never sent (as if the process died right after the commit)
        notice = notify_version(app, "1.1.0", dep)
        assert notice is not None and notice.event_id
        sent = receiver.wait_for(published, 1,
                                 timeout=3 * RECONCILE_SECONDS + 30)
        assert len(sent) == 1 and dep[:12] in sent[0]["text"], sent
        # the server stores events a little after its triggers see them
        wait_until(lambda: missing_on_server([str(notice.event_id)]) == [], 30,
                   "the event stored on the server")
        time.sleep(RECONCILE_SECONDS + 5)  # the next reconciles find it on the server
        assert len(receiver.matching(published)) == 1
    finally:
        edgefleet.delete_deployment(dep, force=True)
        remove_channel(channel)


def test_a_refused_delivery_is_sent_again_once(
        lab: Any, edges: dict[str, Any], prefect_api: str, quick_local_runs: None) -> None:
    receiver = Receiver(refuse=1)  # down for the automation's delivery, back for the retry
    app = unique("again")
    image = f"{lab.registry}/edgefleet/hello"
    # 1.0.0 runs the registry's newest tag: the served image check has nothing to tell (an
    # image notice of its own would be another POST to this channel)
    edgefleet.create_application(app, "1.0.0", image=f"{image}:2.0.0", ports=["8080"])
    edgefleet.add_version(app, "1.1.0", image=f"{image}:1.1.0", ports=["8080"])
    edgefleet.publish_version(app, "1.0.0")
    channel = unique("again")
    add_channel(channel, webhook=receiver.url, application=app, on="update-available")
    dep = edgefleet.deploy(app, "lab-2")["id"]
    try:
        edgefleet.publish_version(app, "1.1.0")
        sent = receiver.wait_for(published, 1,
                                 timeout=3 * RECONCILE_SECONDS + 60)
        assert len(receiver.refused) == 1 and dep[:12] in receiver.refused[0]["text"]
        assert len(sent) == 1 and sent[0]["text"] == receiver.refused[0]["text"], sent
        time.sleep(RECONCILE_SECONDS + 5)  # later reconciles never send it a third time
        assert len(receiver.matching(published)) == 1
        assert len(receiver.refused) == 1
        deliveries = {c["name"]: c["deliveries"] for c in list_channels()}[channel]
        assert deliveries["failed"] == 1 and deliveries["sent_again"] == 1, deliveries
        assert "503" in deliveries["last_failure"]
    finally:
        edgefleet.delete_deployment(dep, force=True)
        remove_channel(channel)
        receiver.server.shutdown()


def test_offline_edge_test_message_and_a_refusing_receiver(
        lab: Any, edges: dict[str, Any], prefect_api: str, receiver: Receiver) -> None:
    # An edge behind a relay the test cuts: ONLINE first, so the channels exist before it
    # goes OFFLINE (an edge never reached is OFFLINE at the first sweep, before any channel).
    engine = edges["lab-2"]
    host, port = engine.docker_host.removeprefix("tcp://").rsplit(":", 1)
    relay = TcpRelay((host, int(port)))
    gone = unique("gone")
    edgefleet.add_edge(gone, relay.address, tls_ca=engine.tls_ca, tls_cert=engine.tls_cert,
                       tls_key=engine.tls_key, heartbeat_interval=2)
    watch = unique("edgewatch")
    refused = unique("refused")
    try:
        wait_until(lambda: edge_status(gone) == "ONLINE", 60, f"{gone} ONLINE")
        add_channel(watch, webhook=receiver.url, edge=gone, on="offline,online")
        add_channel(refused, webhook=f"http://127.0.0.1:{free_port(set())}/nobody", edge=gone,
                    on="offline")
        send_test_message(watch)
        assert len(receiver.wait_for(lambda b: "test message" in b.get("text", ""), 1)) == 1
        with pytest.raises(EdgefleetError, match="could not deliver"):
            send_test_message(refused)

        relay.cut()
        offline = receiver.wait_for(kind("offline"), 1, timeout=90)  # the served sweeps
        assert len(offline) == 1 and gone in offline[0]["text"]
        relay.restore()
        online = receiver.wait_for(kind("online"), 1, timeout=90)
        assert len(online) == 1 and gone in online[0]["text"]
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            failed = {c["name"]: c["deliveries"] for c in list_channels()}[refused]
            if failed["failed"]:
                break
            time.sleep(1)
        assert failed["failed"] >= 1 and failed["last_failure"], failed
        assert len(receiver.matching(kind("offline"))) == 1  # once, though sweeps went on
    finally:
        relay.cut()
        for name in (watch, refused):
            with contextlib.suppress(NotFound):
                remove_channel(name)
        edgefleet.remove_edge(gone)


def completed_runs(api_url: str, name: str) -> int:
    """How many flow runs of that name the Prefect server has Completed."""
    with temporary_settings({PREFECT_API_URL: api_url}), get_client(sync_client=True) as client:
        runs = client.read_flow_runs(flow_run_filter=FlowRunFilter(
            name=FlowRunFilterName(any_=[name])))
    return sum(1 for run in runs if run.state is not None and run.state.is_completed())


def edge_status(name: str) -> str:
    return str(next(e.status for e in edgefleet.list_edges() if e.name == name))


def wait_until(test: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not test():
        assert time.monotonic() < deadline, f"timed out after {timeout:.0f}s waiting for {what}"
        time.sleep(0.5)


def test_bad_channel_requests_change_nothing(lab: Any, prefect_api: str) -> None:
    name = unique("bad")
    with pytest.raises(InvalidInput, match="unknown notification kind 'sometimes'"):
        add_channel(name, webhook="http://127.0.0.1:9/x", on="offline,sometimes")
    with pytest.raises(InvalidInput, match="exactly one of --webhook"):
        add_channel(name, on="offline")
    with pytest.raises(InvalidInput, match="not an http"):
        add_channel(name, webhook="file:///etc/passwd", on="offline")
    with pytest.raises(NotFound, match="no application"):
        add_channel(name, webhook="http://127.0.0.1:9/x", on="offline", application="nope")
    with pytest.raises(NotFound, match="no Prefect block"):
        add_channel(name, block="slack-webhook/nope", on="offline")
    with pytest.raises(InvalidInput, match="channel name"):
        add_channel("../etc", webhook="http://127.0.0.1:9/x", on="offline")
    assert name not in {c["name"] for c in list_channels()}
    add_channel(name, webhook="http://127.0.0.1:9/x", on="offline")
    with pytest.raises(InvalidInput, match="exists"):
        add_channel(name, webhook="http://127.0.0.1:9/y", on="online")
    remove_channel(name)
    with pytest.raises(NotFound, match="no notify channel"):
        remove_channel(name)
