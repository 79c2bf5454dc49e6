"""Named URL templates of an application version, checked when the version is created and
rendered per deployment from its edge's address and the ports its containers publish.

Pure: strings in, strings out; nothing here is ever run by a shell. A template is an
http(s) or tcp URL with placeholders:

- ``${host}``: the edge's ``--address`` (default: the host of its docker host);
- ``${port:N}``: the host port published for container port N (the one service that
  publishes N);
- ``${port:SERVICE:N}``: the same, for service SERVICE of a compose file or stack;
- ``${service}``: the name of the service whose port the template uses.

URLs are not part of a container's spec (never in the config hash): a version that changes
only its URLs recreates nothing.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping
from typing import Any

from edgefleet.errors import InvalidInput
from edgefleet.errors import shown as _shown

MAX_URLS = 32
MAX_TEMPLATE = 512
MAX_ADDRESS = 253
NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,31}\Z")
SCHEMES = ("http://", "https://", "tcp://")
PLACEHOLDER_RE = re.compile(r"\$\{([^{}$]*)\}")
PORT_RE = re.compile(
    r"^port:(?:(?P<service>[A-Za-z0-9][A-Za-z0-9_.-]{0,62}):)?(?P<port>[0-9]{1,5})\Z")
# RFC 3986 characters, less '$' (only as a placeholder) and the ones no URL needs here
URL_CHARS_RE = re.compile(r"^[A-Za-z0-9\-._~:/?#\[\]@!&'()*+,;=%]*\Z")
LABEL_RE = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\Z")
# per service: the container ports it publishes, or None where the file does not say
# (a port range, a variable): such a port is not refused before it runs
Published = Mapping[str, set[int] | None]


def parse_urls(pairs: Iterable[str] | Mapping[str, str] | None) -> dict[str, str]:
    """``["NAME=TEMPLATE", ...]`` (the CLI form) or a mapping, names and syntax checked."""
    if not pairs:
        return {}
    items: list[tuple[str, str]] = []
    if isinstance(pairs, Mapping):
        items = [(str(k), str(v)) for k, v in pairs.items()]
    else:
        for pair in pairs:
            if not isinstance(pair, str) or "=" not in pair:
                raise InvalidInput(f"--url {_shown(str(pair))} is not NAME=TEMPLATE")
            name, _, template = pair.partition("=")
            items.append((name, template))
    if len(items) > MAX_URLS:
        raise InvalidInput(f"{len(items)} URLs given; at most {MAX_URLS}")
    urls: dict[str, str] = {}
    for name, template in items:
        if not NAME_RE.match(name):
            raise InvalidInput(f"URL name {_shown(name)} is not a simple name: a letter, then "
                               "up to 31 letters, digits, '_' or '-'")
        if name in urls:
            raise InvalidInput(f"URL {name!r} is given twice")
        check_syntax(name, template)
        urls[name] = template
    return urls


def placeholders(template: str) -> list[str]:
    return PLACEHOLDER_RE.findall(template)


def check_syntax(name: str, template: str) -> None:
    """The template alone: size, scheme, characters, and only known placeholders."""
    if len(template) > MAX_TEMPLATE:
        raise InvalidInput(f"URL {name!r} is {len(template)} characters long; at most "
                           f"{MAX_TEMPLATE}")
    if not template.startswith(SCHEMES):
        raise InvalidInput(f"URL {name!r} ({_shown(template)}) is not an http://, https:// or "
                           "tcp:// URL")
    unknown = [f"${{{p}}}" for p in placeholders(template)
               if p not in ("host", "service") and not PORT_RE.match(p)]
    if unknown:
        raise InvalidInput(f"URL {name!r} has unknown placeholder(s) {', '.join(unknown)}: use "
                           "${host}, ${port:N}, ${port:SERVICE:N} or ${service}")
    rest = PLACEHOLDER_RE.sub("x", template)
    if not URL_CHARS_RE.match(rest):
        bad = sorted({c for c in rest if not URL_CHARS_RE.match(c)})
        raise InvalidInput(f"URL {name!r} has characters no URL may hold: "
                           f"{' '.join(repr(c) for c in bad[:10])} ('$' only as ${{...}})")
    authority = rest.split("://", 1)[1]
    if not authority or authority[0] in ":/?#":
        raise InvalidInput(f"URL {name!r} ({_shown(template)}) has no host: use ${{host}}")
    for placeholder in placeholders(template):
        port = PORT_RE.match(placeholder)
        if port and not 1 <= int(port.group("port")) <= 65535:
            raise InvalidInput(f"URL {name!r}: port {port.group('port')} is outside 1-65535")


def check_against(urls: Mapping[str, str], published: Published) -> None:
    """Each ``${port:...}`` names a port the version publishes (where its spec says), and
    ``${service}`` has exactly one service to name."""
    for name, template in urls.items():
        services = set()
        for placeholder in placeholders(template):
            port = PORT_RE.match(placeholder)
            if not port:
                continue
            services.add(_service_of(name, port.group("service"), int(port.group("port")),
                                     published))
        if "service" in placeholders(template) and len(services) != 1:
            raise InvalidInput(f"URL {name!r} uses ${{service}} but "
                               f"{'no' if not services else 'more than one'} service's port: "
                               "name exactly one with ${port:SERVICE:N}")


def _service_of(name: str, service: str | None, port: int, published: Published) -> str:
    if service is not None:
        if service not in published:
            raise InvalidInput(f"URL {name!r}: the version has no service {service!r} "
                               f"(services: {', '.join(sorted(published)) or 'none'})")
        ports = published[service]
        if ports is not None and port not in ports:
            raise InvalidInput(f"URL {name!r}: service {service!r} does not publish container "
                               f"port {port} (it publishes: {_ports(ports)})")
        return service
    maybe = [s for s, ports in published.items() if ports is None or port in ports]
    sure = [s for s, ports in published.items() if ports is not None and port in ports]
    if len(sure) > 1 or (not sure and len(maybe) > 1):
        raise InvalidInput(f"URL {name!r}: container port {port} is published by more than "
                           f"one service ({', '.join(sorted(sure or maybe))}): say which with "
                           f"${{port:SERVICE:{port}}}")
    if not maybe:
        known = {p for ports in published.values() for p in ports or ()}
        raise InvalidInput(f"URL {name!r}: the version publishes no container port {port} "
                           f"(it publishes: {_ports(known)}); add --port {port}, or a ports "
                           "entry to the file")
    return (sure or maybe)[0]


def _ports(ports: Iterable[int]) -> str:
    return ", ".join(str(p) for p in sorted(ports)) or "none"


def image_published(service: str, ports: Iterable[str]) -> dict[str, set[int] | None]:
    """The container ports of ``--port [HOST:]CONTAINER[/PROTO]`` entries."""
    return {service: {int(p.split("/")[0].rsplit(":", 1)[-1]) for p in ports}}


def compose_published(model: Mapping[str, Any]) -> dict[str, set[int] | None]:
    """The container ports each service of a parsed compose/stack file publishes (None where
    a ports entry is not a plain number: a range, a variable)."""
    found: dict[str, set[int] | None] = {}
    for service, spec in (model.get("services") or {}).items():
        entries = spec.get("ports") if isinstance(spec, dict) else None
        numbers = [_container_port(e) for e in (entries if isinstance(entries, list) else [])]
        found[str(service)] = (None if None in numbers
                               else {n for n in numbers if n is not None})
    return found


def _container_port(entry: Any) -> int | None:
    if isinstance(entry, dict):
        target = entry.get("target")
        return target if isinstance(target, int) else (
            int(target) if isinstance(target, str) and target.isdigit() else None)
    if isinstance(entry, int):
        return entry
    if isinstance(entry, str):
        container = entry.split("/")[0].rsplit(":", 1)[-1]
        return int(container) if container.isdigit() else None
    return None


def check_address(address: str) -> str:
    """A host name or an IP address the edge's users reach: no scheme, path, port or space."""
    if not address or len(address) > MAX_ADDRESS:
        raise InvalidInput(f"address {_shown(address)} must be 1-{MAX_ADDRESS} characters")
    try:
        return str(ipaddress.ip_address(address))
    except ValueError:
        pass
    name = address.removesuffix(".")
    labels = name.split(".")
    if not name or not all(LABEL_RE.match(label) for label in labels) or labels[-1].isdigit():
        raise InvalidInput(f"address {_shown(address)} is not a host name or an IP address "
                           "(no scheme, port, path or spaces), e.g. plant-7.vpn or 10.8.0.7")
    return address


def url_host(address: str) -> str:
    """An address as the host part of a URL (an IPv6 address in brackets)."""
    return f"[{address}]" if ":" in address and not address.startswith("[") else address


def render(urls: Mapping[str, str], *, address: str,
           published: Mapping[str, Mapping[int, str]]) -> dict[str, str]:
    """Each template with the edge's address and the host ports the containers publish now
    (service -> container port -> host port). A URL whose port is not published now (the
    container is gone, or not yet recorded) is left out."""
    rendered: dict[str, str] = {}
    for name, template in urls.items():
        values: dict[str, str] = {"host": url_host(address)}
        services: set[str] = set()
        for placeholder in placeholders(template):
            port = PORT_RE.match(placeholder)
            if not port:
                continue
            found = _host_port(published, port.group("service"), int(port.group("port")))
            if found is None:
                break
            services.add(found[0])
            values[placeholder] = found[1]
        else:
            if len(services) == 1:
                values["service"] = services.pop()
            text = _substitute(template, values)
            if "${" not in text:
                rendered[name] = text
    return rendered


def _substitute(template: str, values: Mapping[str, str]) -> str:
    return PLACEHOLDER_RE.sub(lambda m: values.get(m.group(1), m.group(0)), template)


def _host_port(published: Mapping[str, Mapping[int, str]], service: str | None, port: int
               ) -> tuple[str, str] | None:
    for name in sorted(published):
        if service is not None and name != service and not name.endswith(f"_{service}"):
            continue
        host_port = published[name].get(port)
        if host_port is not None:
            return (service or name), host_port
    return None


def published_now(rows: Iterable[tuple[str, Iterable[str]]]) -> dict[str, dict[int, str]]:
    """Service -> container port -> host port, from recorded ``HOST:CONTAINER/PROTO``
    strings (tcp preferred over udp)."""
    found: dict[str, dict[int, str]] = {}
    for service, ports in rows:
        mine = found.setdefault(service, {})
        for entry in sorted(ports, key=lambda p: not p.endswith("/tcp")):
            host, _, container = entry.partition(":")
            number = container.split("/")[0]
            if host.isdigit() and number.isdigit():
                mine.setdefault(int(number), host)
    return found
