"""Host-level privileges a compose or stack file asks for, named key by key.

Whoever may publish a version reaches every edge it is deployed to: ``privileged: true``,
a host namespace, a bind mount of ``/``, an added capability, a device or a relaxed security
profile gives that person root on the edge. Such a version is refused unless it is created
with ``--allow-privileged``; the same check runs again on the file compose resolved at deploy
time, where variables have their values.

Also refused, whatever the allowance: a file that makes compose read files of the control
plane itself (``env_file``, ``extends``, ``include``, ``secrets``/``configs`` ``file:`` given
as an absolute path, ``~`` or ``..``): compose runs there, and edgefleet stores only the text.
"""

from __future__ import annotations

import json
import posixpath
import re
from collections.abc import Collection, Iterator
from typing import Any

HOST_NAMESPACES = ("pid", "ipc", "uts", "userns_mode", "cgroup", "network_mode")
LISTS = ("cap_add", "devices", "device_cgroup_rules")
PLAIN_KEY_RE = re.compile(r"^[A-Za-z0-9_.-]{1,40}\Z")
NAMED_VOLUME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*\Z")
DEFAULTED_RE = re.compile(r"^\$\{[A-Za-z_][A-Za-z0-9_]*:?-(?P<default>[^}]*)\}\Z")
FALSE = ("false", "no", "off", "0", "")
# security_opt entries that only take privileges away
HARMLESS_SECURITY = ("no-new-privileges", "no-new-privileges:true", "no-new-privileges=true")
PATH_WIDTH = 160  # a host path is shown whole (but never a page of it)
SHOWN = 10  # offending keys named in a refusal before "and N more"


def bundled_name(path: str) -> str | None:
    """The plain file name a relative path of a compose file resolves to (``./a.conf`` →
    ``a.conf``), None when it names no file beside the compose file."""
    norm = posixpath.normpath(path)
    return norm if BUNDLED_NAME_RE.match(norm) and ".." not in norm else None


BUNDLED_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}\Z")


def host_privileges(model: dict[str, Any], bundled: Collection[str] = ()) -> list[str]:
    """Each key of ``model`` (a parsed compose/stack file) that asks for host privileges,
    as ``services.NAME.KEY`` with what it asks; empty when the file needs no allowance.

    A relative bind mount or ``file:`` config naming a file in ``bundled`` (files of the
    version, sent with it as config content) asks for nothing of the host."""
    found: list[str] = []
    services = model.get("services")
    named = _host_networks(model.get("networks"))
    if isinstance(services, dict):
        for name, spec in services.items():
            if isinstance(spec, dict):
                found.extend(_service(f"services.{_key(name)}", spec, named, bundled))
    for kind in ("volumes", "secrets", "configs"):
        found.extend(_top_level(kind, model.get(kind), bundled if kind == "configs" else ()))
    return found


def control_plane_files(model: dict[str, Any]) -> list[str]:
    """Keys that would make compose read a file of the control plane outside the
    deployment's own folder (never allowed)."""
    found = []
    for key, path in _file_references(model):
        if _outside(path):
            found.append(f"{key}: {_value(path, width=PATH_WIDTH)}")
    return found


def described(found: list[str]) -> str:
    """The offending keys as one line (the first ``SHOWN``, then how many more)."""
    more = f" and {len(found) - SHOWN} more" if len(found) > SHOWN else ""
    return "; ".join(found[:SHOWN]) + more


def _is_bundled(source: Any, bundled: Collection[str]) -> bool:
    return (isinstance(source, str) and source.startswith(".")
            and bundled_name(source) in bundled) if bundled else False


def _service(where: str, spec: dict[str, Any], host_networks: set[str],
             bundled: Collection[str] = ()) -> Iterator[str]:
    if "privileged" in spec and not _false(spec["privileged"]):
        yield f"{where}.privileged: {_value(spec['privileged'])}"
    for key in HOST_NAMESPACES:
        value = spec.get(key)
        if isinstance(value, str) and (value.strip().lower() == "host" or "$" in value):
            yield f"{where}.{key}: {_value(value)}"
    for key in LISTS:
        if spec.get(key):
            yield f"{where}.{key}: {_value(spec[key])}"
    security = spec.get("security_opt")
    if security:
        entries = security if isinstance(security, list) else [security]
        risky = [e for e in entries if str(e).strip().lower() not in HARMLESS_SECURITY]
        if risky:
            yield f"{where}.security_opt: {_value(risky)}"
    volumes = spec.get("volumes")
    if isinstance(volumes, list):
        for i, volume in enumerate(volumes):
            source = _bind_source(volume)
            if source is not None and not _is_bundled(source, bundled):
                yield f"{where}.volumes[{i}]: bind mount of host path {_host_path(source)}"
    networks = spec.get("networks")
    names = list(networks) if isinstance(networks, dict | list) else []
    for net in names:
        if isinstance(net, str) and (net == "host" or net in host_networks):
            yield f"{where}.networks: {_value(net)} (the host's network)"


def _top_level(kind: str, entries: Any, bundled: Collection[str] = ()) -> Iterator[str]:
    if not isinstance(entries, dict):
        return
    for name, spec in entries.items():
        if not isinstance(spec, dict):
            continue
        if kind == "volumes":
            opts = spec.get("driver_opts")
            if isinstance(opts, dict) and (
                    "bind" in str(opts.get("o", "")) or str(opts.get("device", "")).startswith(
                        ("/", ".", "~", "$"))):
                device = _value(opts.get("device"), width=PATH_WIDTH)
                yield f"volumes.{_key(name)}.driver_opts: host path {device}"
        elif "file" in spec and not (isinstance(spec["file"], str) and not spec["file"].startswith(
                ("/", "~")) and bundled_name(spec["file"]) in bundled):
            # compose bind-mounts it from the host (a bundled one travels as content)
            yield f"{kind}.{_key(name)}.file: host file {_value(spec['file'], width=PATH_WIDTH)}"


def _bind_source(volume: Any) -> str | None:
    """The host path a service volume mounts, or None for a named or anonymous volume."""
    if isinstance(volume, dict):
        source = volume.get("source")
        kind = str(volume.get("type", "volume"))
        if kind in ("bind", "npipe"):
            return str(source)
        if kind == "volume" and isinstance(source, str) and not NAMED_VOLUME_RE.match(source):
            return source  # e.g. a path given with type volume: docker binds it
        return None
    if not isinstance(volume, str):
        return None
    parts = split_volume(volume)
    if len(parts) < 2:
        return None  # an anonymous volume: only a container path
    source = parts[0]
    return None if NAMED_VOLUME_RE.match(source) else source


def split_volume(spec: str) -> list[str]:
    """A short volume's fields (``SOURCE:TARGET[:MODE]``); a ``:`` inside ``${...}``
    (``${DATA:-/srv}``) stays in its field."""
    fields: list[str] = []
    start = depth = i = 0
    while i < len(spec):
        if spec.startswith("$$", i):  # an escaped dollar, never an interpolation
            i += 2
            continue
        if spec.startswith("${", i):
            depth += 1
            i += 2
            continue
        if spec[i] == "}" and depth:
            depth -= 1
        elif spec[i] == ":" and not depth:
            fields.append(spec[start:i])
            start = i + 1
        i += 1
    if depth:  # an unclosed ${: not interpolation (compose refuses it), split as written
        return spec.split(":")
    fields.append(spec[start:])
    return fields


def _host_path(source: str) -> str:
    """A bind's source as shown: ``${VAR:-/}`` is the host path ``/`` unless VAR is set."""
    match = DEFAULTED_RE.match(source)
    if match and match["default"].startswith(("/", ".", "~")):
        return f"{_value(match['default'], width=PATH_WIDTH)} (the default of {source})"
    return _value(source, width=PATH_WIDTH)


def _host_networks(networks: Any) -> set[str]:
    """Top-level networks that are the host's own network (``name: host``)."""
    if not isinstance(networks, dict):
        return set()
    return {key for key, spec in networks.items()
            if isinstance(spec, dict) and (str(spec.get("name", "")).strip() == "host"
                                           or "$" in str(spec.get("name", "")))}


def _file_references(model: dict[str, Any]) -> Iterator[tuple[str, Any]]:
    services = model.get("services")
    for name, spec in (services.items() if isinstance(services, dict) else []):
        if not isinstance(spec, dict):
            continue
        env_file = spec.get("env_file")
        for i, entry in enumerate(env_file if isinstance(env_file, list) else [env_file]):
            path = entry.get("path") if isinstance(entry, dict) else entry
            if path is not None:
                yield f"services.{_key(name)}.env_file[{i}]", path
        extends = spec.get("extends")
        if isinstance(extends, dict) and "file" in extends:
            yield f"services.{_key(name)}.extends.file", extends["file"]
    include = model.get("include")
    for i, entry in enumerate(include if isinstance(include, list) else [include]):
        paths = entry.get("path") if isinstance(entry, dict) else entry
        for path in paths if isinstance(paths, list) else [paths]:
            if path is not None:
                yield f"include[{i}]", path
    for kind in ("secrets", "configs"):
        entries = model.get(kind)
        for name, spec in (entries.items() if isinstance(entries, dict) else []):
            if isinstance(spec, dict) and "file" in spec:
                yield f"{kind}.{_key(name)}.file", spec["file"]


def _outside(path: Any) -> bool:
    text = str(path).replace("\\", "/")
    return (text.startswith(("/", "~", "$")) or ".." in text.split("/")
            or bool(re.match(r"^[A-Za-z]:", text)))


def _false(value: Any) -> bool:
    return value in (None, False) or (isinstance(value, str)
                                               and value.strip().lower() in FALSE)


def _key(name: Any) -> str:
    """A key as it appears in a path: plain names as is, anything else quoted."""
    text = str(name)
    return text if PLAIN_KEY_RE.match(text) else _value(text, quoted=True)


def _value(value: Any, quoted: bool = False, width: int = 40) -> str:
    """A value in one short line (json.dumps escapes newlines and control characters)."""
    text = value if isinstance(value, str) and not quoted else json.dumps(value, default=str)
    if isinstance(value, str) and not quoted and not text.isprintable():
        text = json.dumps(value)
    return text if len(text) <= width else text[:width - 3] + "..."
