"""URL templates and edge addresses through the Python API on records alone (no engine):
refused input writes nothing; `status` renders the named URLs from what is recorded."""

from __future__ import annotations

import pytest

import edgefleet
from edgefleet.db import session_scope
from edgefleet.errors import InvalidInput
from edgefleet.models.records import ContainerStatus

ADMIN = "admin=http://${host}:${port:8080}/admin"
COMPOSE = ("services:\n  web:\n    image: x:1\n    ports: ['80']\n"
           "  db:\n    image: y:1\n    ports: ['5432', '80']\n")


@pytest.fixture(autouse=True)
def own_records(empty_records: str) -> str:
    return empty_records


def test_a_version_keeps_its_templates_and_status_renders_them() -> None:
    edgefleet.add_edge("e1", "tcp://127.0.0.1:1", check=False, address="plant-7.vpn")
    assert edgefleet.show_edge("e1").address == "plant-7.vpn"
    row = edgefleet.create_application("hello", "1.0.0", image="x:1", ports=["8080"],
                                       urls=[ADMIN])
    assert row.urls == {"admin": "http://${host}:${port:8080}/admin"}
    shown = edgefleet.show_application("hello")["versions"][0]
    assert shown["urls"] == row.urls
    dep = edgefleet.create_deployment("hello", "e1", allow_unpublished=True, version="1.0.0")
    assert edgefleet.deployment_status(dep.id)["named_urls"] == {}  # nothing published yet
    with session_scope() as session:
        session.add(ContainerStatus(deployment_id=dep.id, service="hello",
                                    container_id="abc", image="x:1", state="running",
                                    ports=["49200:8080/tcp"], urls=["http://plant-7.vpn:49200"]))
    status = edgefleet.deployment_status(dep.id)
    assert status["named_urls"] == {"admin": "http://plant-7.vpn:49200/admin"}
    assert status["urls"] == ["http://plant-7.vpn:49200"]  # today's list stays
    edgefleet.set_edge("e1", clear_address=True)  # back to the docker host's host
    assert edgefleet.deployment_status(dep.id)["named_urls"] == {
        "admin": "http://127.0.0.1:49200/admin"}
    edgefleet.set_edge("e1", address="10.8.0.7")
    assert edgefleet.deployment_status(dep.id)["named_urls"] == {
        "admin": "http://10.8.0.7:49200/admin"}


@pytest.mark.parametrize(("kwargs", "says"), [
    ({"image": "x:1", "ports": ["8080"], "urls": ["admin=http://${host}:${prt:8080}/"]},
     "unknown placeholder(s) ${prt:8080}"),
    ({"image": "x:1", "ports": ["8080"], "urls": ["admin=http://${host}:${port:9090}/"]},
     "publishes no container port 9090"),
    ({"image": "x:1", "urls": ["admin=http://${host}:${port:8080}/"]},
     "publishes no container port 8080"),
    ({"image": "x:1", "urls": ["bad name=http://${host}/"]}, "not a simple name"),
    ({"image": "x:1", "urls": ["admin=file:///etc/passwd"]}, "not an http://"),
    ({"compose": COMPOSE, "urls": ["web=http://${host}:${port:80}/"]},
     "more than one service (db, web)"),
    ({"compose": COMPOSE, "urls": ["db=tcp://${host}:${port:db:5433}"]},
     "service 'db' does not publish container port 5433"),
])
def test_bad_templates_write_nothing(kwargs: dict[str, object], says: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        edgefleet.create_application("bad-app", "1.0.0", **kwargs)  # type: ignore[arg-type]
    assert says in str(caught.value)
    assert edgefleet.list_applications() == []


def test_compose_templates_name_their_service() -> None:
    row = edgefleet.create_application("shop", "1.0.0", compose=COMPOSE, urls={
        "web": "http://${host}:${port:web:80}/", "db": "tcp://${host}:${port:5432}/${service}"})
    assert set(row.urls) == {"web", "db"}
    edgefleet.add_version("shop", "1.1.0", compose=COMPOSE, urls=["web=https://${host}/"])
    with pytest.raises(InvalidInput, match="no service 'api'"):
        edgefleet.add_version("shop", "1.2.0", compose=COMPOSE,
                              urls=["api=http://${host}:${port:api:80}/"])


@pytest.mark.parametrize("address", ["http://plant-7", "plant-7:2376", "plant 7", "a/b", ""])
def test_bad_addresses_write_nothing(address: str) -> None:
    with pytest.raises(InvalidInput):
        edgefleet.add_edge("e1", "tcp://127.0.0.1:1", check=False, address=address)
    assert edgefleet.list_edges() == []
    edgefleet.add_edge("e2", "tcp://127.0.0.1:1", check=False)
    with pytest.raises(InvalidInput):
        edgefleet.set_edge("e2", address=address)
    assert edgefleet.show_edge("e2").address is None


def test_the_publish_notice_says_when_only_urls_changed() -> None:
    from edgefleet.crud import get_application, get_version
    from edgefleet.version_notices import urls_note

    edgefleet.create_application("hello", "1.0.0", image="x:1", ports=["8080"], urls=[ADMIN])
    edgefleet.add_version("hello", "1.0.1", image="x:1", ports=["8080"],
                          urls=["admin=https://${host}:${port:8080}/admin"])
    edgefleet.add_version("hello", "1.0.2", image="x:2", ports=["8080"], urls=[ADMIN])
    edgefleet.add_version("hello", "1.0.3", image="x:3", ports=["8080"])
    with session_scope() as session:
        app = get_application(session, name="hello")
        v = {n: get_version(session, application=app, version=n)
             for n in ("1.0.0", "1.0.1", "1.0.2", "1.0.3")}
        assert urls_note(v["1.0.0"], v["1.0.1"]) == (
            ". Only its URLs changed: updating keeps the running containers")
        assert urls_note(v["1.0.0"], v["1.0.2"]) == ""
        assert urls_note(v["1.0.2"], v["1.0.3"]) == ". Its URLs changed too"
