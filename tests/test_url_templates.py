"""URL templates: checked at the door (names, schemes, placeholders, ports, hostile text),
rendered from the edge's address and the ports published now. Pure: no records, no engine."""

from __future__ import annotations

import pytest

from edgefleet import url_templates as U
from edgefleet.errors import InvalidInput

ADMIN = "http://${host}:${port:8080}/admin"


def test_a_template_renders_with_the_address_and_the_published_port() -> None:
    urls = U.parse_urls(["admin=" + ADMIN, "api=https://${host}:${port:8080}/api?x=1&y=2"])
    published = U.published_now([("hello", ["49153:8080/tcp"])])
    assert U.render(urls, address="plant-7.vpn", published=published) == {
        "admin": "http://plant-7.vpn:49153/admin",
        "api": "https://plant-7.vpn:49153/api?x=1&y=2"}


def test_ipv6_addresses_are_bracketed_and_tcp_preferred() -> None:
    published = U.published_now([("hello", ["5000:8080/udp", "5001:8080/tcp"])])
    assert U.render({"a": ADMIN}, address="fd00::7", published=published) == {
        "a": "http://[fd00::7]:5001/admin"}


def test_service_ports_and_the_service_placeholder() -> None:
    urls = U.parse_urls({"db": "tcp://${host}:${port:db:5432}/${service}",
                         "web": "http://${host}:${port:web:80}/"})
    published = U.published_now([("db", ["6000:5432/tcp"]), ("web", ["6001:80/tcp"])])
    assert U.render(urls, address="10.8.0.7", published=published) == {
        "db": "tcp://10.8.0.7:6000/db", "web": "http://10.8.0.7:6001/"}
    # a stack's containers are named after STACK_SERVICE
    published = U.published_now([("ef-abc_web", ["6001:80/tcp"])])
    assert U.render(urls, address="h", published=published) == {"web": "http://h:6001/"}


def test_a_url_whose_port_is_not_published_now_is_left_out() -> None:
    assert U.render({"a": ADMIN, "b": "http://${host}/"}, address="h", published={}) == {
        "b": "http://h/"}


@pytest.mark.parametrize(("pair", "says"), [
    ("admin", "not NAME=TEMPLATE"),
    ("=http://${host}/", "not a simple name"),
    ("9admin=http://${host}/", "not a simple name"),
    ("ad min=http://${host}/", "not a simple name"),
    ("a.b=http://${host}/", "not a simple name"),
    ("x" * 40 + "=http://${host}/", "not a simple name"),
    ("admin=ftp://${host}/", "not an http://, https:// or tcp:// URL"),
    ("admin=javascript:alert(1)", "not an http://, https:// or tcp:// URL"),
    ("admin=${host}:8080", "not an http://, https:// or tcp:// URL"),
    ("admin=http:///path", "has no host"),
    ("admin=http://${host}:${prot:8080}/", "unknown placeholder(s) ${prot:8080}"),
    ("admin=http://${hostname}:${user}/", "${hostname}, ${user}"),
    ("admin=http://${host}:${port:0}/", "outside 1-65535"),
    ("admin=http://${host}:${port:70000}/", "outside 1-65535"),
    ("admin=http://${host}:${port:-1}/", "unknown placeholder"),
    ("admin=http://${host}/$(rm -rf /)", "characters no URL may hold"),
    ("admin=http://${host}/`id`", "characters no URL may hold"),
    ("admin=http://${host}/a b", "characters no URL may hold"),
    ("admin=http://${host}/a\nb", "characters no URL may hold"),
    ("admin=http://${host}/$HOME", "characters no URL may hold"),
    ("admin=http://${host/", "characters no URL may hold"),
    ("admin=http://${host}/<script>", "characters no URL may hold"),
    ("admin=http://${host}/" + "a" * 600, "at most 512"),
])
def test_hostile_templates_are_refused_naming_the_problem(pair: str, says: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        U.parse_urls([pair])
    assert says in str(caught.value)
    assert len(str(caught.value)) < 400  # a huge value never floods the message


def test_too_many_or_repeated_names_are_refused() -> None:
    with pytest.raises(InvalidInput, match="at most 32"):
        U.parse_urls([f"u{i}=http://${{host}}/" for i in range(33)])
    with pytest.raises(InvalidInput, match="given twice"):
        U.parse_urls(["a=http://${host}/", "a=http://${host}/x"])


def test_shell_metacharacters_that_urls_allow_stay_literal_text() -> None:
    urls = U.parse_urls(["q=http://${host}/a;b&c='d'"])
    assert U.render(urls, address="h", published={}) == {"q": "http://h/a;b&c='d'"}


def test_ports_must_be_published_by_the_version() -> None:
    image = U.image_published("hello", ["8080", "9000:9090/tcp"])
    assert image == {"hello": {8080, 9090}}
    U.check_against({"a": ADMIN, "b": "http://${host}:${port:hello:9090}/"}, image)
    with pytest.raises(InvalidInput, match="publishes no container port 8081 .*8080, 9090"):
        U.check_against({"a": "http://${host}:${port:8081}/"}, image)
    with pytest.raises(InvalidInput, match="no service 'db'"):
        U.check_against({"a": "http://${host}:${port:db:8080}/"}, image)


def test_compose_ports_ambiguity_and_unknowable_ports() -> None:
    model = {"services": {
        "web": {"image": "a", "ports": ["8080:80", {"target": 443, "published": 8443}]},
        "admin": {"image": "b", "ports": ["127.0.0.1:9000:80/tcp"]},
        "db": {"image": "c"},
        "odd": {"image": "d", "ports": ["${PORT}:5000", "7000-7001:7000-7001"]},
        "var": {"image": "e", "ports": ["${HOST_PORT}:3000"]}}}
    published = U.compose_published(model)
    assert published == {"web": {80, 443}, "admin": {80}, "db": set(), "odd": None,
                         "var": {3000}}
    U.check_against({"a": "https://${host}:${port:443}/"}, published)
    U.check_against({"a": "http://${host}:${port:odd:5000}/"}, published)  # unknowable
    with pytest.raises(InvalidInput, match=r"more than one service \(admin, web\).*port:SERVICE"):
        U.check_against({"a": "http://${host}:${port:80}/"}, published)
    with pytest.raises(InvalidInput, match="service 'db' does not publish container port 5432"):
        U.check_against({"a": "tcp://${host}:${port:db:5432}"}, published)
    with pytest.raises(InvalidInput, match=r"\$\{service\} but no service"):
        U.check_against({"a": "http://${host}/${service}"}, published)
    with pytest.raises(InvalidInput, match=r"\$\{service\} but more than one"):
        U.check_against({"a": "http://${host}:${port:443}/${port:admin:80}/${service}"},
                        published)


@pytest.mark.parametrize("address", ["plant-7", "plant-7.vpn.example.com", "10.8.0.7",
                                     "fd00::7", "PLANT-7.local."])
def test_good_addresses(address: str) -> None:
    assert U.check_address(address)


@pytest.mark.parametrize("address", ["", "http://plant-7", "plant-7:8080", "plant-7/x",
                                     "plant 7", "-plant", "a..b", "1.2.3.999", "a" * 300,
                                     "plant_7", "$(id)", "a;b"])
def test_bad_addresses(address: str) -> None:
    with pytest.raises(InvalidInput):
        U.check_address(address)
