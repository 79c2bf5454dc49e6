"""The newest schema revision, read from the migration scripts' text.

Neither Alembic nor the scripts are imported: a database already at head is recognised by
comparing its ``alembic_version`` row with this, which keeps read-only commands fast.
"""

from __future__ import annotations

import ast
import re
from functools import lru_cache
from pathlib import Path

MIGRATIONS = Path(__file__).parent / "migrations"
# ``revision: str = '0006'`` / ``down_revision: str | None = '0005'`` in a migration script
_REVISION_LINE = re.compile(r"^(revision|down_revision)\b[^=\n]*=(.*)$", re.MULTILINE)


@lru_cache(maxsize=1)
def script_heads() -> frozenset[str] | None:
    """The head revision(s) of the migration scripts, read from their text (no import of
    Alembic or of the scripts); None when a script is not in the plain form read here, and
    then Alembic itself decides."""
    revisions: set[str] = set()
    parents: set[str] = set()
    for path in (MIGRATIONS / "versions").glob("*.py"):
        if path.name == "__init__.py":
            continue
        found = {}
        for match in _REVISION_LINE.finditer(path.read_text()):
            try:
                found[match.group(1)] = ast.literal_eval(match.group(2).strip())
            except (ValueError, SyntaxError):
                return None
        revision, down = found.get("revision"), found.get("down_revision")
        if not isinstance(revision, str) or revision in revisions:
            return None
        revisions.add(revision)
        downs = (down,) if down is None or isinstance(down, str) else down
        if not isinstance(downs, tuple | list):
            return None
        parents.update(d for d in downs if d is not None)
    heads = frozenset(revisions - parents)
    return heads or None
