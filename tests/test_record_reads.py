"""The list, show and status commands' reads without the ORM (``edgefleet.record_reads``)
give exactly what the API gives, and step aside (None) wherever they cannot."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

import edgefleet
from edgefleet import parameters as P
from edgefleet import record_reads
from edgefleet.api.edges import edge_public
from edgefleet.db import session_scope
from edgefleet.models.records import AppliedSpec, ContainerStatus, Deployment, Edge
from edgefleet.settings import Settings

COMPOSE = ("services:\n  web:\n    image: x:1\n    ports: ['80']\n"
           "    environment:\n      GREETING: ${GREETING:-hello}\n"
           "  db:\n    image: y:1\n")


def _seed() -> list[str]:
    """Edges of both modes with labels and contacts, and deployments with containers, an
    applied spec, URL templates, a sensitive value and a policy: every field the views map."""
    edgefleet.add_edge("e1", "tcp://127.0.0.1:1", check=False, address="plant-7.vpn",
                       labels=["site=plant-7", "tier=canary"])
    edgefleet.add_edge("e2", "tcp://127.0.0.1:2", check=False, labels=["site=plant-8"])
    edgefleet.add_edge("p1", "unix:///run/edge.sock", check=False, mode="pull")
    edgefleet.create_application("hello", "1.0.0", image="x:1", ports=["8080:80"],
                                 urls=["admin=http://${host}:${port:80}/admin"])
    edgefleet.publish_version("hello", "1.0.0")
    edgefleet.create_application("web", "2.0.0", compose=COMPOSE)
    edgefleet.publish_version("web", "2.0.0")
    edgefleet.add_version("hello", "1.0.0-rc.1", image="x:0")  # older by semver, newer row
    edgefleet.add_version("hello", "1.10.0", image="x:3")  # 1.10 after 1.9, not after 1.1
    edgefleet.add_version("hello", "1.9.0", image="x:2")
    ids = [edgefleet.create_deployment("hello", "e1", policy={"notify": "minor"}).id,
           edgefleet.create_deployment("web", "e2").id,
           edgefleet.create_deployment("hello", "p1").id]
    now = datetime.now(UTC)
    with session_scope() as session:
        edge = session.get(Edge, 1)
        assert edge is not None
        edge.last_contact, edge.last_heartbeat_at = now, now - timedelta(seconds=5)
        session.add(edge)
        dep = session.get(Deployment, ids[0])
        assert dep is not None
        spec = AppliedSpec(deployment_id=dep.id, version="1.0.0", kind="image", text="{}",
                           digests={"hello": "sha256:" + "a" * 64}, outcome="applied")
        session.add(spec)
        session.flush()
        dep.spec_id, dep.state, dep.last_error = spec.id, "STARTED", "an old error"
        dep.env = {"TOKEN": P.secret_block_name(dep.id, "TOKEN"), "PLAIN": "shown"}
        session.add(dep)
        for service in ("web", "db"):
            session.add(ContainerStatus(deployment_id=ids[1], service=service,
                                        container_id=f"c-{service}", image="x:1",
                                        state="running", ports=["49200:80/tcp"],
                                        urls=["http://127.0.0.1:49200"]))
        session.add(ContainerStatus(deployment_id=ids[0], service="hello", container_id="c0",
                                    image="x:1", digest="sha256:" + "b" * 64, health="healthy",
                                    state="running", ports=["49300:80/tcp"],
                                    urls=["http://plant-7.vpn:49300"]))
    return ids


def _as_the_api(url: str, fast: list[Any] | None, api: list[Any]) -> list[Any] | None:
    """The fast read, checked equal to the API's; None (checked) where the API must read."""
    if not url.startswith("sqlite"):
        assert fast is None  # PostgreSQL records: the API reads
        return None
    assert fast == api
    return fast


def test_edges_read_without_the_orm_are_the_apis(empty_records: str) -> None:
    _seed()
    fast = _as_the_api(empty_records, record_reads.edge_views(),
                       [edge_public(e) for e in edgefleet.list_edges()])
    if fast is None:
        return
    assert [e["status"] for e in fast] == ["ONLINE", "OFFLINE", "OFFLINE"]
    assert "agent_command" in fast[2] and fast[0]["labels"] == {"site": "plant-7",
                                                                 "tier": "canary"}
    assert record_reads.edge_views("tier!=canary") == [
        edge_public(e) for e in edgefleet.list_edges(selector="tier!=canary")]
    assert record_reads.edge_views(name="e2") == [edge_public(edgefleet.show_edge("e2"))]
    assert record_reads.edge_views(name="nope") is None  # the API says "no edge named"


def test_deployments_read_without_the_orm_are_the_apis(empty_records: str) -> None:
    ids = _seed()
    fast = _as_the_api(empty_records, record_reads.deployment_views(),
                       edgefleet.list_deployments())
    if fast is None:
        return
    first = fast[0]
    assert first["env"] == {"TOKEN": P.MASK, "PLAIN": "shown"}  # masked on both paths
    assert first["named_urls"] == {"admin": "http://plant-7.vpn:49300/admin"}
    assert first["applied_spec"] is not None and first["policy"]["notify"] == "minor"
    assert [c["service"] for c in fast[1]["containers"]] == ["db", "web"]
    for ref in (ids[1], ids[1][:6]):  # an id, a unique prefix
        assert record_reads.deployment_views(ref) == [edgefleet.deployment_status(ref)]
    assert record_reads.deployment_views("abc") is None  # too short a prefix: the API says
    assert record_reads.deployment_views("f" * 32) is None


def test_applications_read_without_the_orm_are_the_apis(empty_records: str) -> None:
    _seed()
    fast = _as_the_api(empty_records, record_reads.application_views(),
                       edgefleet.list_applications())
    if fast is None:
        return
    hello = fast[0]
    assert [v["version"] for v in hello["versions"]] == ["1.0.0-rc.1", "1.0.0", "1.9.0",
                                                          "1.10.0"]
    assert hello["latest_published"] == "1.0.0"
    assert [p["name"] for p in fast[1]["versions"][0]["parameters"]] == ["GREETING"]
    assert record_reads.application_views("web") == [edgefleet.show_application("web")]
    assert record_reads.application_views("nope") is None  # the API says "no application"


def test_records_not_at_head_are_left_to_the_api(empty_records: str) -> None:
    if not empty_records.startswith("sqlite"):
        pytest.skip("SQLite records only: others are always read by the API")
    _seed()
    path = record_reads.records_file()
    assert path is not None and path.is_file()
    with sqlite3.connect(path) as conn:
        (head,) = conn.execute("SELECT version_num FROM alembic_version").fetchone()
        conn.execute("UPDATE alembic_version SET version_num = '0001'")
    try:
        assert record_reads.edge_views() is None and record_reads.deployment_views() is None
        assert record_reads.application_views() is None
    finally:
        with sqlite3.connect(path) as conn:
            conn.execute("UPDATE alembic_version SET version_num = ?", (head,))
    assert record_reads.edge_views() is not None  # at head again: read here


@pytest.mark.parametrize("environ", [
    {},
    {"EDGEFLEET_HOME": "/srv/fleet"},
    {"edgefleet_home": "/srv/fleet"},  # any case, as the settings match names
    {"EDGEFLEET_HOME": "rel/home"},
    {"EDGEFLEET_DATABASE_URL": "sqlite:////srv/records.db"},
    {"EDGEFLEET_DATABASE_URL": "", "EDGEFLEET_HOME": "/srv/x"},
])
def test_the_records_file_is_the_one_the_settings_name(
        environ: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("EDGEFLEET_HOME", "EDGEFLEET_DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    url = Settings().database_url
    assert url.startswith("sqlite:///")
    assert record_reads.records_file() == Path(url.removeprefix("sqlite:///"))


@pytest.mark.parametrize("url", ["postgresql://u@h/db", "postgresql+psycopg://u@h/db",
                                 "sqlite:///:memory:"])
def test_other_databases_are_left_to_the_api(url: str) -> None:
    assert record_reads.records_file({"EDGEFLEET_DATABASE_URL": url}) is None
