"""Turns pydantic validation errors into one readable ``InvalidInput`` line."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from pydantic import ValidationError

from edgefleet.errors import InvalidInput

T = TypeVar("T")


def validated(build: Callable[..., T], **fields: object) -> T:
    """``build(**fields)``, with any ValidationError re-raised as InvalidInput."""
    try:
        return build(**fields)
    except ValidationError as exc:
        raise InvalidInput(describe(exc)) from exc


def describe(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        msg = str(err.get("msg", "")).removeprefix("Value error, ")
        loc = ".".join(str(p) for p in err.get("loc", ()) if p != "__root__")
        parts.append(msg if (not loc or loc in msg) else f"{loc}: {msg}")
    return "; ".join(parts)
