"""A throw-away home for one benchmark run: its own edgefleet records, lab and Prefect
database in a temporary folder, removed after. A benchmark never reads a user's records,
lab or Prefect server (a user's edge record of a lab that is down made a sweep fail).

Standard library only, and entered before edgefleet or Prefect is imported: Prefect reads
its home when it is imported.
"""

from __future__ import annotations

import os
import socket
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

# what would point a run at a user's records, lab or Prefect server
DROPPED = ("EDGEFLEET_HOME", "EDGEFLEET_DATABASE_URL", "EDGEFLEET_LAB_DIR",
           "EDGEFLEET_PREFECT_PORT", "EDGEFLEET_RUN_MODE", "PREFECT_HOME",
           "PREFECT_PROFILES_PATH", "PREFECT_API_URL", "PREFECT_API_KEY", "PREFECT_UI_API_URL",
           "PREFECT_API_DATABASE_CONNECTION_URL", "PREFECT_SERVER_DATABASE_CONNECTION_URL")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def throwaway_home(prefix: str) -> Iterator[Path]:
    """Point edgefleet and Prefect at a new temporary folder for the ``with`` block; the
    environment is restored and the folder removed after."""
    saved = dict(os.environ)
    with tempfile.TemporaryDirectory(prefix=prefix, ignore_cleanup_errors=True) as tmp:
        folder = Path(tmp)
        for key in DROPPED:
            os.environ.pop(key, None)
        os.environ.update({
            "EDGEFLEET_HOME": str(folder / "edgefleet"),
            "EDGEFLEET_PREFECT_PORT": str(_free_port()),  # if `edgefleet up` is started
            "PREFECT_HOME": str(folder / "prefect"),
        })
        # Prefect's temporary server starts slowly on a busy machine (default: 20 s)
        os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
        try:
            yield folder
        finally:
            os.environ.clear()
            os.environ.update(saved)
