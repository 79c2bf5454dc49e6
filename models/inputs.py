"""Validated input at the boundary: every CLI and API call builds one of these first.

A ``pydantic.ValidationError`` here means nothing has been written; the API turns it into
``InvalidInput`` with a message that names the field and what to do.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Any, Literal

import semver
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from edgefleet.models.documents import Limits, load_yaml, shown, text_of
from edgefleet.models.privileges import control_plane_files, described, host_privileges

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,62}\Z")
# [registry[:port]/]path[:tag][@sha256:hex] — the reference grammar of distribution, simplified.
IMAGE_RE = re.compile(
    r"^(?:(?P<registry>[a-zA-Z0-9.-]+(?::[0-9]+)?)/)?"
    r"(?P<path>[a-z0-9]+(?:[._-][a-z0-9]+)*(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*)"
    r"(?::(?P<tag>[\w][\w.-]{0,127}))?"
    r"(?:@(?P<digest>sha256:[a-f0-9]{64}))?\Z"
)
PORT_RE = re.compile(r"^(?:(?P<host>\d{1,5}):)?(?P<container>\d{1,5})(?:/(?P<proto>tcp|udp))?\Z")
# a Prefect block document name: lowercase letters, digits and dashes only (Prefect's own
# rule, prefect.types.names.BlockDocumentName); secret and channel names become one
SECRET_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}\Z")
ENV_KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*\Z")
# Shortest heartbeat interval accepted: the one the served sweep is tested to honour under
# load (a reachable edge is never OFFLINE); below it a busy machine could not keep up.
MIN_HEARTBEAT_SECONDS = 2
PARSED = "parsed_compose"  # VersionCreate's validation context: the file's loaded YAML
MAX_INTERVAL_SECONDS = 86400


class AppKind(StrEnum):
    IMAGE = "image"
    COMPOSE = "compose"
    SWARM = "swarm"


def check_name(value: str, what: str) -> str:
    if not isinstance(value, str) or not NAME_RE.match(value):
        raise ValueError(
            f"{what} name {shown(value)} is not valid: use 1-63 lowercase letters, digits, '.', "
            "'_' or '-', starting with a letter or digit"
        )
    return value


def check_block_name(value: str, what: str) -> str:
    """A name that ends up in a Prefect block document's name, which takes no '.' or '_':
    refused here, with the rule, rather than by Prefect's validation halfway through."""
    if not isinstance(value, str) or not SECRET_RE.match(value):
        raise ValueError(
            f"{what} name {shown(value)} is not valid: use 1-63 lowercase letters, digits or "
            "'-', starting with a letter or digit (it names a Prefect block, which allows no "
            "'.' or '_')"
        )
    return value


def check_interval(value: object, what: str, minimum: int = 1) -> int:
    """Seconds between ``minimum`` and a day; the refusal says the range."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{what} {shown(value)} is not a whole number of seconds")
    if not minimum <= value <= MAX_INTERVAL_SECONDS:
        why = (f": {MIN_HEARTBEAT_SECONDS} s is the shortest heartbeat a busy control plane "
               "keeps without calling a reachable edge OFFLINE"
               if what == "heartbeat interval" and value < minimum else "")
        raise ValueError(f"{what} {value} is outside {minimum}-{MAX_INTERVAL_SECONDS} "
                         f"seconds{why}")
    return value


def check_semver(value: str) -> str:
    text = value[1:] if isinstance(value, str) and value.startswith("v") else value
    try:
        semver.Version.parse(text)
    except (ValueError, TypeError) as exc:
        raise ValueError(
            f"version {shown(value)} is not a semantic version (expected MAJOR.MINOR.PATCH, "
            "e.g. 1.2.3 or 1.2.3-rc.1)"
        ) from exc
    return text


def check_image(value: str) -> str:
    if not IMAGE_RE.match(value):
        raise ValueError(
            f"image reference {shown(value)} is not valid "
            "(expected [registry/]name[:tag][@sha256:...])"
        )
    return value


def check_port(value: str) -> str:
    match = PORT_RE.match(value)
    if not match:
        raise ValueError(f"port {shown(value)} is not valid (expected [HOST:]CONTAINER[/tcp|/udp])")
    for part in ("host", "container"):
        number = match.group(part)
        if number is not None and not 1 <= int(number) <= 65535:
            raise ValueError(f"port {shown(value)}: {number} is outside 1-65535")
    return value


def parse_env(pairs: list[str] | dict[str, str] | None) -> dict[str, str]:
    """``["K=V", ...]`` (the CLI form) or a mapping, checked key by key."""
    if not pairs:
        return {}
    items: list[tuple[str, str]] = []
    if isinstance(pairs, dict):
        items = [(str(k), _env_value(v)) for k, v in pairs.items()]
    elif isinstance(pairs, list | tuple):
        for pair in pairs:
            if not isinstance(pair, str) or "=" not in pair:
                raise ValueError(f"environment entry {shown(pair)} is not KEY=VALUE")
            key, _, val = pair.partition("=")
            items.append((key, val))
    else:
        raise ValueError("environment must be KEY=VALUE entries or a mapping")
    limit = Limits.from_settings().max_env_entries
    if len(items) > limit:
        raise ValueError(f"more than {limit} environment entries "
                         "(setting EDGEFLEET_MAX_ENV_ENTRIES)")
    env: dict[str, str] = {}
    for key, val in items:
        if not ENV_KEY_RE.match(key):
            raise ValueError(f"environment name {shown(key)} is not valid (letters, digits, '_')")
        if "\x00" in val:
            raise ValueError(f"environment value of {key} contains a NUL character")
        env[key] = val
    return env


def _env_value(value: object) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ValueError(f"environment value {shown(value)} is not text or a number")
    return str(value)


def parse_compose(text: str | bytes, *, what: str = "compose file",
                  limits: Limits | None = None) -> dict[str, Any]:
    """Parse a compose/stack file far enough to know it is a mapping of services with images,
    within the limits of ``models.documents`` (size, UTF-8, depth, aliases, duplicate keys,
    services count).

    Full validation and interpolation stay the compose binary's job.
    """
    limits = limits or Limits.from_settings()
    return checked_compose(load_yaml(text, what=what, limits=limits), what=what, limits=limits)


def checked_compose(data: Any, *, what: str = "compose file",
                    limits: Limits | None = None) -> dict[str, Any]:
    """``parse_compose`` of a file already loaded (``load_yaml``): a file is parsed once."""
    limits = limits or Limits.from_settings()
    if data is None:  # no YAML at all: blank, or comments only
        raise ValueError(f"{what} is empty: give a mapping with a 'services' key")
    if not isinstance(data, dict):
        raise ValueError(f"{what} must be a mapping with a 'services' key")
    services = data.get("services")
    if not isinstance(services, dict) or not services:
        raise ValueError(f"{what} must have 'services': a mapping of service names")
    if len(services) > limits.max_services:
        raise ValueError(f"{what} has {len(services)} services, more than "
                         f"{limits.max_services} (setting EDGEFLEET_MAX_SERVICES)")
    for name, spec in services.items():
        if not isinstance(spec, dict):
            raise ValueError(f"compose service {shown(name)} must be a mapping")
        if "image" not in spec:
            raise ValueError(
                f"compose service {shown(name)} has no 'image': edgefleet deploys published "
                "images, build them and push them to a registry first"
            )
        check_image(str(spec["image"]))
    outside = control_plane_files(data)
    if outside:
        raise ValueError(f"{what} reads files of the control plane, where compose runs "
                         f"(only the file's text is stored): {described(outside)}")
    return data


class EdgeCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    docker_host: str
    address: str | None = None  # checked by url_templates.check_address in the API
    labels: dict[str, str] = Field(default_factory=dict)  # checked by selectors.parse_labels
    tls_ca: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    telemetry_interval: int = 60
    heartbeat_interval: int = 20
    mode: Literal["push", "pull"] = "push"

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return check_name(v, "edge")

    @field_validator("telemetry_interval", "heartbeat_interval")
    @classmethod
    def _interval(cls, v: int, info: ValidationInfo) -> int:
        if info.field_name == "heartbeat_interval":
            return check_interval(v, "heartbeat interval", MIN_HEARTBEAT_SECONDS)
        return check_interval(v, "telemetry interval")

    @field_validator("docker_host")
    @classmethod
    def _host(cls, v: str) -> str:
        if not re.match(r"^(tcp|unix|ssh)://.+", v):
            raise ValueError(
                f"docker host {shown(v)} is not a URL: use tcp://HOST:PORT or unix:///path/docker.sock"
            )
        return v

    @model_validator(mode="after")
    def _tls_complete(self) -> EdgeCreate:
        given = [self.tls_ca, self.tls_cert, self.tls_key]
        if any(given) and not all(given):
            raise ValueError("TLS needs all three of --tls-ca, --tls-cert and --tls-key")
        if self.mode == "pull" and any(given):
            raise ValueError("a pull edge's agent reaches its engine locally: give no TLS "
                             "files (they are for push edges)")
        if self.mode == "pull" and not self.docker_host.startswith("unix://"):
            raise ValueError(f"a pull edge's engine is reached by its agent on a local "
                             f"socket: --docker-host unix:///path/docker.sock, not "
                             f"{shown(self.docker_host)}")
        return self


class VersionCreate(BaseModel):
    """A new application version; exactly one of image / compose text, per kind.

    Validated with ``context={PARSED: load_yaml(compose)}`` (what the API does), the file
    already loaded is checked instead of being parsed again.
    """

    model_config = ConfigDict(extra="forbid")

    version: str
    kind: AppKind
    image: str | None = None
    compose: str | None = None
    env: dict[str, str] = Field(default_factory=dict)
    ports: list[str] = Field(default_factory=list)
    registry_secret: str | None = None
    # host-level privileges (models.privileges) the file asks for; refused unless allowed
    allow_privileged: bool = False
    privileges: list[str] = Field(default_factory=list)
    # named URL templates, checked by url_templates in the API (it knows the published ports)
    urls: dict[str, str] = Field(default_factory=dict)
    # files bundled with it (name -> text), checked by edgefleet.bundled_files in the API
    files: dict[str, str] = Field(default_factory=dict)

    @field_validator("registry_secret")
    @classmethod
    def _secret(cls, v: str | None) -> str | None:
        if v is not None and not SECRET_RE.match(v):
            raise ValueError(f"registry secret name {shown(v)} is not valid: use lowercase "
                             "letters, digits and '-' (a Prefect Secret block name)")
        return v

    @field_validator("version")
    @classmethod
    def _version(cls, v: str) -> str:
        return check_semver(v)

    @field_validator("compose", mode="before")
    @classmethod
    def _file_text(cls, v: Any, info: ValidationInfo) -> Any:
        """A file given as bytes (as read from disk) is checked as such: size, then UTF-8."""
        if isinstance(v, bytes | bytearray):
            what = "stack file" if info.data.get("kind") is AppKind.SWARM else "compose file"
            return text_of(bytes(v), what=what)
        return v

    @field_validator("env", mode="before")
    @classmethod
    def _env(cls, v: Any) -> dict[str, str]:
        return parse_env(v)

    @field_validator("ports")
    @classmethod
    def _ports(cls, v: list[str]) -> list[str]:
        return [check_port(p) for p in v]

    @model_validator(mode="after")
    def _spec_matches_kind(self, info: ValidationInfo) -> VersionCreate:
        self.privileges = []  # found below, never taken from the caller
        if self.kind is AppKind.IMAGE:
            if not self.image or self.compose:
                raise ValueError("an image application needs --image REF (and no compose file)")
            check_image(self.image)
        else:
            if not self.compose or self.image:
                flag = "--compose" if self.kind is AppKind.COMPOSE else "--stack"
                raise ValueError(f"a {self.kind.value} application needs {flag} FILE (no --image)")
            if self.ports:
                raise ValueError("--port is for image applications; put ports in the compose file")
            what = "compose file" if self.kind is AppKind.COMPOSE else "stack file"
            context = info.context or {}
            doc = (checked_compose(context[PARSED], what=what) if PARSED in context
                   else parse_compose(self.compose, what=what))
            found = host_privileges(doc, bundled=self.files)
            if found and not self.allow_privileged:
                raise ValueError(
                    f"{what} asks for host-level privileges ({described(found)}): its "
                    "containers would control every edge it runs on; create the version with "
                    "--allow-privileged if that is intended")
            self.privileges = found
        return self


class DeploymentCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    application: str
    edge: str
    version: str | None = None
    env: dict[str, str] = Field(default_factory=dict)

    @field_validator("version")
    @classmethod
    def _version(cls, v: str | None) -> str | None:
        return None if v is None else check_semver(v)

    @field_validator("env", mode="before")
    @classmethod
    def _env(cls, v: Any) -> dict[str, str]:
        return parse_env(v)
