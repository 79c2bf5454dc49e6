"""What the Prefect UI's run form shows for a flow parameter: its title and description.

Prefect titles a top-level flow parameter with its Python name and ignores ``Field(title=)``
on it; ``json_schema_extra`` reaches the form as given. Used as
``name: Annotated[str, form("Title", "What it is for")] = default``: the default stays a
plain value, so calling the flow from Python is unchanged.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field


def form(title: str, description: str) -> Any:
    """A ``pydantic.Field`` for ``Annotated``: the run form's title and help text."""
    return Field(json_schema_extra={"title": title, "description": description})
