"""Files bundled with a version (``--file PATH[=NAME]``): named, limited, and sent along.

Pure rules. A compose file names a bundled file by a relative path: ``env_file: app.env``,
``configs: {x: {file: ./conf.txt}}`` or a bind mount ``./conf.txt:/etc/x:ro``. Compose runs
on the control plane against a remote engine, so only what travels with the API calls
reaches the edge: an ``env_file`` is read by compose where it runs (folded into the
service's ``environment``), but a ``file:`` config or a bind mount names a path on the
engine's host, which has no such file. When compose resolves the file, a second compose
file (``override``; the vendor's own is never rewritten) turns such references into
``configs: {x: {content: ...}}`` (compose copies the content into the container), so the
resolved model carries the content of the files each service uses, and a changed file
changes only the config hash of those services (``labels.hashed_spec``).

Files are UTF-8 text (env files and configs are text; compose's ``content:`` is a string):
anything else is refused when the version is created, and a file used as an ``env_file`` is
held to the limits of any env file (``check_env_files``).
"""

from __future__ import annotations

import hashlib
import posixpath
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import yaml

from edgefleet.errors import InvalidInput
from edgefleet.models.documents import Limits, env_file_keys
from edgefleet.models.privileges import bundled_name, split_volume

KIB = 1024
MAX_FILE_BYTES = 256 * KIB
MAX_TOTAL_BYTES = 1024 * KIB
MAX_FILES = 32
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
CONFIG_PREFIX = "edgefleet-file-"  # the config a bind mount of a bundled file becomes


@dataclass(frozen=True)
class FileLimits:
    """How much a version may bundle; ``from_settings()`` reads the EDGEFLEET_* settings."""

    max_file_bytes: int = MAX_FILE_BYTES
    max_total_bytes: int = MAX_TOTAL_BYTES
    max_files: int = MAX_FILES

    @classmethod
    def from_settings(cls) -> FileLimits:
        from edgefleet.settings import get_settings

        s = get_settings()
        return cls(max_file_bytes=s.max_bundled_file_bytes,
                   max_total_bytes=s.max_bundled_bytes, max_files=s.max_bundled_files)


def check_name(name: str) -> str:
    """A plain file name: letters, digits, ``.``, ``_``, ``-``; not starting with a dot."""
    if not isinstance(name, str) or not _NAME.fullmatch(name) or ".." in name:
        shown = repr(name) if len(repr(name)) <= 60 else repr(name)[:57] + "..."
        raise InvalidInput(
            f"bundled file name {shown} is not valid: a plain file name (letters, digits, "
            "'.', '_', '-'; no '/', no '..', not starting with '.'), at most 128 characters")
    return name


def split_arg(arg: str) -> tuple[str, str]:
    """``PATH[=NAME]`` → (path, name); the name defaults to the path's last part."""
    path, eq, name = arg.partition("=")
    if not path:
        raise InvalidInput(f"--file {arg!r}: give PATH or PATH=NAME")
    return path, check_name(name if eq else posixpath.basename(path.rstrip("/")))


def checked(files: Mapping[str, str | bytes] | None,
            limits: FileLimits | None = None) -> dict[str, str]:
    """The bundled files as text, each name checked, within the limits (refusals name the
    file and the limit)."""
    limits = limits or FileLimits()
    files = dict(files or {})
    if len(files) > limits.max_files:
        raise InvalidInput(f"{len(files)} bundled files: at most {limits.max_files} per version")
    out: dict[str, str] = {}
    total = 0
    for name, data in files.items():
        check_name(name)
        raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else bytes(data)
        if len(raw) > limits.max_file_bytes:
            raise InvalidInput(f"bundled file {name} is {len(raw)} bytes: at most "
                               f"{limits.max_file_bytes} bytes per file")
        total += len(raw)
        if total > limits.max_total_bytes:
            raise InvalidInput(f"bundled files reach {total} bytes with {name}: at most "
                               f"{limits.max_total_bytes} bytes per version")
        try:
            out[name] = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidInput(f"bundled file {name} is not UTF-8 text (byte "
                               f"0x{raw[exc.start]:02x} at offset {exc.start})") from exc
    return out


@dataclass(frozen=True)
class Reference:
    """A relative path of a compose file that must name a bundled file."""

    path: str  # as written
    where: str  # e.g. services.web.env_file

    @property
    def name(self) -> str | None:
        """The bundled name it resolves to (``./a.env`` → ``a.env``), None if it cannot be one
        (a path into a directory)."""
        return bundled_name(self.path)


def _relative(path: Any, *, bind: bool) -> bool:
    """A path compose resolves against the project directory (a bind mount's source is a
    path only when it starts with ``.``; otherwise it names a volume or is absolute)."""
    if not isinstance(path, str) or not path or "$" in path:  # interpolated: compose's part
        return False
    if bind:
        return path.startswith(".")
    return not path.startswith(("/", "~"))


def _env_files(service: Mapping[str, Any], *, optional: bool = True
               ) -> Iterator[tuple[int | None, str]]:
    """(index in the list or None, path) of each env file (``required: false`` ones only
    if ``optional``: compose goes on without them)."""
    value = service.get("env_file")
    if isinstance(value, str):
        yield None, value
    elif isinstance(value, list):
        for i, item in enumerate(value):
            path = item.get("path") if isinstance(item, dict) else item
            if isinstance(item, dict) and not optional and item.get("required") in (
                    False, "false", "False"):
                continue
            if isinstance(path, str):
                yield i, path


def _items(value: Any) -> list[Any]:
    """A list as written, else nothing: another shape is the model's to refuse (the
    references are read before the file is validated)."""
    return value if isinstance(value, list) else []


def _short_volume(spec: str) -> tuple[str, str | None]:
    fields = split_volume(spec)
    return fields[0], (fields[1] or None) if len(fields) > 1 else None


def references(doc: Any) -> list[Reference]:
    """Every relative file path of a (parsed, uninterpolated) compose file."""
    if not isinstance(doc, dict):
        return []
    found: list[Reference] = []
    services = doc.get("services") if isinstance(doc.get("services"), dict) else {}
    for sname, service in (services or {}).items():
        if not isinstance(service, dict):
            continue
        for _i, path in _env_files(service, optional=False):
            if _relative(path, bind=False):
                found.append(Reference(path, f"services.{sname}.env_file"))
        for volume in _items(service.get("volumes")):
            source: Any = None
            if isinstance(volume, str):
                source = _short_volume(volume)[0]
            elif isinstance(volume, dict) and volume.get("type", "volume") == "bind":
                source = volume.get("source")
            if _relative(source, bind=True):
                found.append(Reference(str(source), f"services.{sname}.volumes"))
    configs = doc.get("configs") if isinstance(doc.get("configs"), dict) else {}
    for cname, config in (configs or {}).items():
        if isinstance(config, dict) and _relative(config.get("file"), bind=False):
            found.append(Reference(config["file"], f"configs.{cname}.file"))
    return found


def missing(doc: Any, names: set[str] | Mapping[str, Any], *,
            host_paths_allowed: bool = False) -> list[Reference]:
    """The references that name no bundled file (``host_paths_allowed``: only env files,
    which compose reads on the control plane; a bind mount or ``file:`` config of a version
    created --allow-privileged may name a path of the engine's host)."""
    return [ref for ref in references(doc) if ref.name not in names
            and (not host_paths_allowed or ref.where.endswith(".env_file"))]


def check_references(doc: Any, files: Mapping[str, str], *, what: str,
                     host_paths_allowed: bool = False) -> None:
    """Refuse a file whose relative paths name files not bundled, naming each of them."""
    absent = missing(doc, files, host_paths_allowed=host_paths_allowed)
    if absent:
        shown = ", ".join(f"{ref.path} ({ref.where})" for ref in absent[:10])
        more = f" and {len(absent) - 10} more" if len(absent) > 10 else ""
        raise InvalidInput(
            f"{what} names files that are not bundled: {shown}{more}; bundle each with "
            "--file PATH[=NAME] (NAME: the plain file name the compose file uses)")


def check_env_files(doc: Any, files: Mapping[str, str], *,
                    limits: Limits | None = None) -> None:
    """Refuse a bundled file that a service reads as its ``env_file`` if it is over the
    limits of any env file (``documents.env_file_keys``: a NUL, a name set twice, too many
    variables); the refusal names the file and where it is used."""
    services = doc.get("services") if isinstance(doc, dict) else None
    checked_names: set[str] = set()
    for sname, service in _mapping(services).items():
        if not isinstance(service, dict):
            continue
        for _i, path in _env_files(service):
            name = _named(path, files, bind=False)
            if name is not None and name not in checked_names:
                checked_names.add(name)
                env_file_keys(files[name], what=f"env file {name} (services.{sname}.env_file)",
                              limits=limits)


def escaped(text: str) -> str:
    """``$`` doubled: compose interpolates a config's ``content`` like the rest of the file."""
    return text.replace("$", "$$")


def _named(path: Any, files: Mapping[str, str], *, bind: bool) -> str | None:
    """The bundled file a relative path names, if any."""
    if not _relative(path, bind=bind):
        return None
    name = bundled_name(str(path))
    return name if name is not None and name in files else None


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


class _Override(dict[str, Any]):
    """A mapping that replaces the one of the vendor's file (compose's ``!override``)."""


class _OverrideList(list[Any]):
    """A sequence that replaces the one of the vendor's file (compose's ``!override``)."""


class _Dumper(yaml.SafeDumper):
    pass


_Dumper.add_representer(_Override, lambda d, v: d.represent_mapping("!override", dict(v)))
_Dumper.add_representer(_OverrideList, lambda d, v: d.represent_sequence("!override", list(v)))


def override(doc: dict[str, Any], files: Mapping[str, str], *, folder: str) -> str | None:
    """A second compose file (``-f FILE -f OVERRIDE``) with which bundled files travel, the
    vendor's own file left as written (its YAML is compose's to read): ``env_file`` entries
    point into ``folder`` (where the caller wrote the files; compose reads them there and
    folds them into ``environment``), ``file:`` configs and bind mounts of bundled files
    become ``content:`` configs. None when the file names no bundled file."""
    configs: dict[str, Any] = {}
    for cname, config in _mapping(doc.get("configs")).items():
        name = _named(config.get("file"), files, bind=False) if isinstance(config, dict) else None
        if name is not None:
            kept = {k: _copy(v) for k, v in config.items() if k != "file"}
            configs[cname] = _Override({**kept, "content": escaped(files[name])})
    services: dict[str, Any] = {}
    for sname, service in _mapping(doc.get("services")).items():
        if not isinstance(service, dict):
            continue
        changes: dict[str, Any] = {}
        entries = service.get("env_file")
        listed = [entries] if isinstance(entries, str) else entries
        if isinstance(listed, list) and any(
                _named(path, files, bind=False) for _i, path in _env_files(service)):
            rewritten: list[Any] = []
            for item in listed:
                path = item.get("path") if isinstance(item, dict) else item
                name = _named(path, files, bind=False)
                where = posixpath.join(folder, name) if name else None
                if where is None:
                    rewritten.append(_copy(item))
                elif isinstance(item, dict):
                    rewritten.append({**_copy(item), "path": where})
                else:
                    rewritten.append(where)
            changes["env_file"] = _OverrideList(rewritten)
        kept_volumes: list[Any] = []
        added: list[dict[str, str]] = []
        for volume in _items(service.get("volumes")):
            source: Any = None
            target: Any = None
            if isinstance(volume, str):
                source, target = _short_volume(volume)
            elif isinstance(volume, dict) and volume.get("type", "volume") == "bind":
                source, target = volume.get("source"), volume.get("target")
            name = _named(source, files, bind=True)
            if name is None or not target:
                kept_volumes.append(_copy(volume))
                continue
            config_name = CONFIG_PREFIX + name
            configs[config_name] = {"content": escaped(files[name])}
            added.append({"source": config_name, "target": str(target)})
        if added:
            changes["volumes"] = _OverrideList(kept_volumes)
            changes["configs"] = added  # compose adds them to the service's own
        if changes:
            services[str(sname)] = changes
    if not configs and not services:
        return None
    out: dict[str, Any] = {}
    if services:
        out["services"] = services
    if configs:
        out["configs"] = configs
    return yaml.dump(out, Dumper=_Dumper, sort_keys=False, allow_unicode=True)


def _copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value


def summary(files: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    """Each bundled file's size and hash, as `app show` tells them."""
    return {name: {"bytes": len(text.encode()), "sha256": hashlib.sha256(
        text.encode()).hexdigest()[:16]} for name, text in sorted(files.items())}
