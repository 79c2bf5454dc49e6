"""Two homes that share only the records database (and the Prefect API), on the real lab.

A deploy from home A, an update from home B, then a failing update from A: the rollback
must restore what B applied (1.1.0), not what A applied last, and the record and the edge
must agree on it. A stop from a third home that never ran anything brings it down. A
home's disk is scratch: no home keeps a file a later run needs.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import pytest
from prefect.settings import PREFECT_API_URL, temporary_settings

import edgefleet
from edgefleet import db
from edgefleet import labels as L
from edgefleet.engine import engine_client
from edgefleet.lab.images import manifest_digest
from edgefleet.settings import get_settings
from tests.lab_helpers import containers_of, define_hello_versions, get_page, unique

pytestmark = pytest.mark.lab



@pytest.fixture
def homes(switch_home: Callable[[Path], AbstractContextManager[Path]], tmp_path: Path,
          prefect_api: str, local_runs: None, monkeypatch: pytest.MonkeyPatch
          ) -> Iterator[Callable[[str], AbstractContextManager[Path]]]:
    """``with homes("a"):`` runs a block as another machine would: its own EDGEFLEET_HOME,
    the session's database URL set explicitly, the lab's Prefect API, a short soak."""
    database_url = get_settings().database_url
    assert database_url.startswith("sqlite:///")
    monkeypatch.setenv("EDGEFLEET_SOAK_SECONDS", "3")
    monkeypatch.setenv("EDGEFLEET_DEPLOY_TIMEOUT", "25")

    @contextmanager
    def at(name: str) -> Iterator[Path]:
        with switch_home(tmp_path / name) as home:
            os.environ["EDGEFLEET_DATABASE_URL"] = database_url
            get_settings.cache_clear()
            db.get_engine.cache_clear()
            assert get_settings().home == tmp_path / name
            with temporary_settings({PREFECT_API_URL: prefect_api}):
                yield home

    yield at
    get_settings.cache_clear()
    db.get_engine.cache_clear()


@pytest.mark.parametrize("kind", ["compose", "image"])
def test_a_rollback_restores_what_another_home_applied(
        lab: Any, edges: dict[str, Any], homes: Callable[[str], AbstractContextManager[Path]],
        tmp_path: Path, kind: str) -> None:
    edge = edges["lab-2"]
    app = unique(f"homes-{kind}")
    with homes("a"):
        define_hello_versions(app, kind, lab.registry)
        first = edgefleet.deploy(app, "lab-2", version="1.0.0")
    assert first["state"] == "STARTED", first["last_error"]
    dep_id = first["id"]

    with homes("b"):
        second = edgefleet.update_deployment(dep_id, to="1.1.0")
    assert second["state"] == "STARTED", second["last_error"]
    assert second["version"] == "1.1.0" and second["applied_spec"]["version"] == "1.1.0"

    with homes("a"):
        after = edgefleet.update_deployment(dep_id, to="2.0.0")
    # the record: STARTED on 1.1.0, the failure kept, the 1.1.0 spec current again
    assert after["state"] == "STARTED", after["last_error"]
    assert after["version"] == "1.1.0"
    assert "rolled back" in after["last_error"]
    assert after["applied_spec"]["id"] == second["applied_spec"]["id"]
    # the edge: really serving 1.1.0, pinned by the digest the registry has for 1.1.0
    digest = manifest_digest(lab.registry, "edgefleet/hello", "1.1.0")
    assert digest
    (web,) = [c for c in after["containers"] if c["urls"]]
    assert "hello from edgefleet/hello 1.1.0" in get_page(web["urls"][0])
    live = [c for c in containers_of(edge.connection, dep_id) if c.status == "running"]
    assert len(live) == 1
    assert live[0].labels[L.VERSION] == "1.1.0"
    assert live[0].labels[L.IMAGE_DIGEST] == digest == web["digest"]
    assert live[0].attrs["Config"]["Image"].endswith(f"@{digest}")

    with homes("c"):  # a machine that never ran this deployment stops it
        stopped = edgefleet.stop_deployment(dep_id)
    assert stopped["state"] == "STOPPED", stopped["last_error"]
    assert containers_of(edge.connection, dep_id) == []
    with engine_client(edge.connection) as client:
        assert client.networks.list(names=[f"{L.project_name(dep_id)}_default"]) == []
    edgefleet.delete_deployment(dep_id)
    for name in ("a", "b", "c"):  # a home's disk is scratch: nothing a later run needs
        assert not (tmp_path / name / "deployments").exists()
