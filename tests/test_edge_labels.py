"""Edge labels and selectors through the Python API and the CLI, on records alone (no
engine): labels are kept, changed and picked by a selector; refused input writes nothing."""

from __future__ import annotations

import json
import threading

import pytest
from typer.testing import CliRunner

import edgefleet
from edgefleet.api.edges import edge_public
from edgefleet.cli.main import app
from edgefleet.errors import InvalidInput, NotFound
from edgefleet.selectors import MAX_LABELS, parse_selector


@pytest.fixture(autouse=True)
def own_records(empty_records: str) -> str:
    """Each test gets an empty database of its own (SQLite, then PostgreSQL)."""
    return empty_records


def fleet() -> None:
    edgefleet.add_edge("plant-7", "tcp://127.0.0.1:1", check=False,
                       labels=["site=plant-7", "tier=canary", "example.com/zone=eu-1"])
    edgefleet.add_edge("plant-8", "tcp://127.0.0.1:2", check=False,
                       labels={"site": "plant-8", "retired": ""})
    edgefleet.add_edge("spare", "tcp://127.0.0.1:3", check=False)


def names(selector: str | None = None) -> list[str]:
    return [e.name for e in edgefleet.list_edges(selector=selector)]


def labels_of(name: str) -> dict[str, str]:
    return dict(edgefleet.show_edge(name).labels)


def test_labels_are_kept_and_picked_by_a_selector() -> None:
    fleet()
    assert labels_of("plant-7") == {"example.com/zone": "eu-1", "site": "plant-7",
                                    "tier": "canary"}
    assert labels_of("spare") == {}
    assert edge_public(edgefleet.show_edge("plant-8"))["labels"] == {"retired": "",
                                                                     "site": "plant-8"}
    assert names() == ["plant-7", "plant-8", "spare"]
    assert names("site") == ["plant-7", "plant-8"]
    assert names("!site") == ["spare"]
    assert names("site=plant-7") == ["plant-7"]
    assert names("tier!=canary") == ["plant-8", "spare"]
    assert names("site,!retired") == ["plant-7"]
    assert names("site=plant-7,tier!=canary") == []
    assert names("example.com/zone=eu-1, tier=canary") == ["plant-7"]
    selector = parse_selector("retired")  # a parsed selector is taken as it is
    assert [e.name for e in edgefleet.list_edges(selector=selector)] == ["plant-8"]


def test_set_adds_replaces_and_removes_labels() -> None:
    fleet()
    edge = edgefleet.set_edge("plant-7", labels=["tier=stable", "gpu=a100"], unlabel=["site"])
    assert edge.labels == {"example.com/zone": "eu-1", "gpu": "a100", "tier": "stable"}
    assert labels_of("plant-7") == edge.labels
    # removing a label the edge does not have is harmless: the same command twice is too
    edgefleet.set_edge("plant-7", unlabel=["site", "never-there"])
    assert labels_of("plant-7") == edge.labels
    edgefleet.set_edge("plant-8", unlabel="retired")  # a single key
    assert names("retired") == []
    # other settings change alone, the labels stay
    edgefleet.set_edge("plant-7", heartbeat_interval=5)
    assert labels_of("plant-7") == edge.labels
    assert edgefleet.show_edge("plant-7").heartbeat_interval == 5


@pytest.mark.parametrize(("kwargs", "says"), [
    ({"labels": ["site"]}, "label 'site' is not KEY=VALUE"),
    ({"labels": ["site=plant 7"]}, "the value 'plant 7' is not valid"),
    ({"labels": ["ok=1", "-bad=1"]}, "label key '-bad' is not valid"),
    ({"labels": {"floor": 3}}, "is not text"),
    ({"labels": [f"k{i}=" for i in range(MAX_LABELS + 1)]}, "65 labels given"),
])
def test_bad_labels_add_no_edge(kwargs: dict[str, object], says: str) -> None:
    with pytest.raises(InvalidInput, match=says):
        edgefleet.add_edge("e1", "tcp://127.0.0.1:1", check=False, **kwargs)  # type: ignore[arg-type]
    assert edgefleet.list_edges() == []


@pytest.mark.parametrize(("kwargs", "says"), [
    ({"labels": ["tier=canary", "site"]}, "label 'site' is not KEY=VALUE"),
    ({"labels": ["tier=x;reboot"]}, "the value 'x;reboot' is not valid: it holds ';'"),
    ({"unlabel": ["site=plant-7"]}, "'site=plant-7' is not a label key"),
    ({"unlabel": ["tier", "a b"]}, "label key 'a b' is not valid"),
    ({"labels": ["tier=stable"], "unlabel": ["tier"]}, "label 'tier' is both set and removed"),
    ({"labels": [f"k{i}=" for i in range(MAX_LABELS - 2)]},
     "edge 'plant-7' would have 65 labels, more than 64"),
])
def test_a_refused_change_changes_nothing(kwargs: dict[str, object], says: str) -> None:
    fleet()
    before = edge_public(edgefleet.show_edge("plant-7"))
    with pytest.raises(InvalidInput, match=says):
        edgefleet.set_edge("plant-7", heartbeat_interval=5, address="plant-7.vpn",
                           **kwargs)  # type: ignore[arg-type]
    assert edge_public(edgefleet.show_edge("plant-7")) == before  # no half-applied change


def test_unknown_edges_and_bad_selectors_are_refused() -> None:
    fleet()
    with pytest.raises(NotFound, match="no edge named 'ghost'"):
        edgefleet.set_edge("ghost", labels=["a=1"])
    for bad in ("a==b", "", "site,,tier", "!a=b", "=x", "a=$(id)", "x" * 5000):
        with pytest.raises(InvalidInput, match="selector"):
            edgefleet.list_edges(selector=bad)


def test_labels_set_at_once_on_one_edge_are_all_kept() -> None:
    """Two writers merging labels into one edge: each change is read and written under the
    edge's lock, so neither drops the other's."""
    fleet()
    failures: list[BaseException] = []

    def writer(prefix: str) -> None:
        try:
            for i in range(8):
                edgefleet.set_edge("spare", labels=[f"{prefix}{i}=x"])
        except BaseException as exc:  # pragma: no cover - shown by the assertion below
            failures.append(exc)

    threads = [threading.Thread(target=writer, args=(p,)) for p in ("a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert failures == []
    assert sorted(labels_of("spare")) == sorted(f"{p}{i}" for p in "ab" for i in range(8))


def cli(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_the_cli_labels_edges_and_lists_by_selector() -> None:
    code, out, _ = cli("edge", "add", "plant-7", "--docker-host", "tcp://127.0.0.1:1",
                       "--no-check", "--label", "site=plant-7", "--label", "tier=canary")
    assert code == 0 and "labels site=plant-7,tier=canary" in out
    code, out, _ = cli("edge", "add", "plant-8", "--docker-host", "tcp://127.0.0.1:2",
                       "--no-check", "--label", "site=plant-8", "--json")
    assert code == 0 and json.loads(out)["labels"] == {"site": "plant-8"}
    assert cli("edge", "add", "spare", "--docker-host", "tcp://127.0.0.1:3", "--no-check")[0] == 0

    code, out, _ = cli("edge", "list", "--selector", "site,tier!=canary", "--json")
    assert code == 0
    assert [(e["name"], e["labels"]) for e in json.loads(out)] == [
        ("plant-8", {"site": "plant-8"})]
    code, out, _ = cli("edge", "list", "--selector", "!site", "--json")
    assert [(e["name"], e["labels"]) for e in json.loads(out)] == [("spare", {})]
    code, out, _ = cli("edge", "list", "--json")
    assert [e["name"] for e in json.loads(out)] == ["plant-7", "plant-8", "spare"]
    assert all("labels" in e for e in json.loads(out))

    code, out, err = cli("edge", "set", "plant-7", "--label", "tier=stable", "--unlabel", "site",
                         "--unlabel", "gone")
    assert code == 0 and "labels tier=stable" in out
    assert "edge plant-7 had no label gone; nothing to remove" in err
    code, out, _ = cli("edge", "show", "plant-7", "--json")
    assert json.loads(out)["labels"] == {"tier": "stable"}
    code, out, _ = cli("edge", "list", "--selector", "tier=stable")
    assert code == 0 and "plant-7" in out and "plant-8" not in out


@pytest.mark.parametrize(("args", "says"), [
    (["edge", "add", "e9", "--docker-host", "tcp://127.0.0.1:9", "--no-check", "--label",
      "site"], "label 'site' is not KEY=VALUE"),
    (["edge", "set", "plant-7", "--label", "tier"], "label 'tier' is not KEY=VALUE"),
    (["edge", "set", "plant-7", "--unlabel", "tier=canary"], "is not a label key"),
    (["edge", "list", "--selector", "tier==canary", "--json"],
     "selector term 'tier==canary' is not valid: '==' is not an operator"),
    (["edge", "list", "--selector", "site;reboot"], "selector term 'site;reboot'"),
])
def test_the_cli_refuses_bad_labels_and_selectors_in_one_line(args: list[str],
                                                              says: str) -> None:
    fleet()
    before = [edge_public(e) for e in edgefleet.list_edges()]
    code, out, err = cli(*args)
    assert code == 1 and out == ""
    assert err.startswith("error: ") and says in " ".join(err.split())
    assert [edge_public(e) for e in edgefleet.list_edges()] == before
