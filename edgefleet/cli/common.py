"""What every CLI command shares: one-line errors on stderr, JSON output, rich tables.

Rich is imported on first use (a command printing JSON never needs it), so the consoles
here are stand-ins that create the real ``rich.console.Console`` when first printed to.
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import typer

from edgefleet.errors import EdgefleetError

if TYPE_CHECKING:
    from rich.console import Console

F = TypeVar("F", bound=Callable[..., Any])


class LazyConsole:
    """A ``rich.console.Console(**options)`` made when first used; attributes pass through."""

    def __init__(self, **options: Any) -> None:
        self._options = options
        self._console: Console | None = None

    @property
    def real(self) -> Console:
        if self._console is None:
            from rich.console import Console

            self._console = Console(**self._options)
        return self._console

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)

    def print(self, *objects: Any, **kwargs: Any) -> None:
        self.real.print(*objects, **kwargs)


console = LazyConsole()
err_console = LazyConsole(stderr=True, soft_wrap=True)


def escape(text: str) -> str:
    """``rich.markup.escape``: the text prints as written, never as markup."""
    from rich.markup import escape as rich_escape

    return rich_escape(text)


def handle_errors(func: F) -> F:
    """Turn an EdgefleetError into ``error: <message>`` on stderr and exit code 1."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except EdgefleetError as exc:
            # the message is text, not markup: "edgefleet[postgres]" or "['a']" print as is
            err_console.print(f"[bold red]error:[/] {escape(str(exc))}", markup=True,
                              highlight=False)
            raise typer.Exit(1) from exc
        except Exception as exc:
            from pydantic import ValidationError  # only on the way out: the CLI starts fast

            if not isinstance(exc, ValidationError) or exc.title != "Settings":
                raise  # a bug, not a bad setting: the traceback helps
            err_console.print(f"[bold red]error:[/] {escape(bad_settings(exc))}", markup=True,
                              highlight=False)
            raise typer.Exit(1) from exc

    return wrapper  # type: ignore[return-value]


def bad_settings(exc: Any) -> str:
    """Each bad ``EDGEFLEET_*`` variable by name, with pydantic's reason and the value given
    (IP-address fields fail once per IP version: told once)."""
    told: dict[str, str] = {}
    for error in exc.errors():
        name = f"EDGEFLEET_{str(error['loc'][0]).upper()}" if error["loc"] else "settings"
        why = ("not an IP address" if error["type"] in ("ip_v4_address", "ip_v6_address")
               else error["msg"])
        told.setdefault(name, f"{name}={error.get('input')!r}: {why}")
    return "bad setting: " + "; ".join(told.values())


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def print_table(title: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    for col in columns:
        table.add_column(col, overflow="fold")
    for row in rows:
        table.add_row(*("" if v is None else str(v) for v in row))
    console.print(table)
