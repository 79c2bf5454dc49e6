"""What changed between two versions of an application, as the publish notice says it.

Pure rules over plain data (``Definition``; ``version_notices`` builds one from a record):
images per service, parameter defaults (the version's declared and discovered defaults and
its own environment: what a deploy starts from), bundled files by name, named URLs, and
whatever else makes a container. A sensitive parameter's default is never shown, only
that it changed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from edgefleet.models.documents import load_yaml

SHOWN = 40  # characters of a value in a notice
LISTED = 6  # names listed per kind of change before "and N more"


@dataclass(frozen=True)
class Definition:
    """What a version is made of, as far as its operators care."""

    images: dict[str, str] = field(default_factory=dict)  # service -> image as written
    defaults: dict[str, str] = field(default_factory=dict)  # variable -> default
    sensitive: frozenset[str] = frozenset()  # defaults never shown
    files: dict[str, str] = field(default_factory=dict)  # bundled name -> content
    urls: dict[str, str] = field(default_factory=dict)
    other: dict[str, Any] = field(default_factory=dict)  # the rest of the container spec


def images_of(kind: str, image: str | None, compose: str | None,
              application: str = "app") -> dict[str, str]:
    """Each service's image as the version writes it (an image version: one service)."""
    if kind == "image" or compose is None:
        return {application: image} if image else {}
    try:
        doc = load_yaml(compose, what="file")
    except ValueError:
        return {}
    services = doc.get("services") if isinstance(doc, dict) else None
    if not isinstance(services, dict):
        return {}
    return {str(name): str(svc.get("image")) for name, svc in services.items()
            if isinstance(svc, dict) and svc.get("image") is not None}


def _value(text: str) -> str:
    shown = repr(text)
    return shown if len(shown) <= SHOWN else shown[: SHOWN - 4] + "...'"


def _listed(items: list[str]) -> str:
    more = f" and {len(items) - LISTED} more" if len(items) > LISTED else ""
    return ", ".join(items[:LISTED]) + more


def _image_changes(before: Mapping[str, str], after: Mapping[str, str]) -> list[str]:
    found = []
    for name in sorted(set(before) | set(after)):
        old, new = before.get(name), after.get(name)
        if old == new:
            continue
        if old is None:
            found.append(f"{name} added ({new})")
        elif new is None:
            found.append(f"{name} removed")
        else:
            found.append(f"{name} {old} → {new}")
    return found


def _default_changes(before: Definition, after: Definition) -> list[str]:
    found = []
    for name in sorted(set(before.defaults) | set(after.defaults)):
        old, new = before.defaults.get(name), after.defaults.get(name)
        if old == new:
            continue
        secret = name in before.sensitive or name in after.sensitive
        if old is None:
            found.append(f"{name} added" + ("" if secret else f" ({_value(str(new))})"))
        elif new is None:
            found.append(f"{name} removed")
        elif secret:
            found.append(f"{name} changed")
        else:
            found.append(f"{name} {_value(old)} → {_value(new)}")
    return found


def changes(before: Definition, after: Definition) -> list[str]:
    """Each kind of change, in a line of its own: images, parameters, files, URLs, and the
    rest of the definition."""
    found = []
    images = _image_changes(before.images, after.images)
    if images:
        found.append(f"images: {_listed(images)}")
    defaults = _default_changes(before, after)
    if defaults:
        found.append(f"parameter defaults: {_listed(defaults)}")
    files = sorted(n for n in set(before.files) | set(after.files)
                   if before.files.get(n) != after.files.get(n))
    if files:
        found.append("files: " + _listed([
            f"{n} added" if n not in before.files else f"{n} removed"
            if n not in after.files else n for n in files]))
    urls = sorted(n for n in set(before.urls) | set(after.urls)
                  if before.urls.get(n) != after.urls.get(n))
    if urls:
        found.append(f"URLs: {_listed(urls)}")
    other = sorted(k for k in set(before.other) | set(after.other)
                   if before.other.get(k) != after.other.get(k))
    if other and not (images or defaults or files):
        found.append(f"definition: {_listed(other)}")
    return found


def changes_note(before: Definition, after: Definition) -> str:
    """The notice's sentence on what changed; empty when nothing did."""
    found = changes(before, after)
    if not found:
        return ""
    return ". Changed: " + "; ".join(found)
