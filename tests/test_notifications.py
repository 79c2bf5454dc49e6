"""Update detection on the real lab: moved images, newer tags, published versions."""

from __future__ import annotations

import time
from typing import Any

import pytest
from sqlmodel import select

import edgefleet
from edgefleet import jobs
from edgefleet.db import session_scope
from edgefleet.models.records import Application, ApplicationVersion
from tests.lab_helpers import retag, unique

pytestmark = pytest.mark.lab






def notes_for(ids: set[str], reason: str) -> list[dict[str, Any]]:
    return [n for n in edgefleet.list_notifications(include_acknowledged=True)
            if n["deployment_id"] in ids and n["reason"] == reason]


def test_moved_image_is_found_once_per_unique_reference(
        lab: Any, edges: dict[str, Any], local_runs: None) -> None:
    tag = unique("float")
    retag(edges["lab-1"].connection, lab.registry, "edgefleet/hello", "1.0.0", tag)
    app = unique("moving")
    edgefleet.create_application(app, "1.0.0", image=f"{lab.registry}/edgefleet/hello:{tag}")
    edgefleet.publish_version(app, "1.0.0")
    ids = {edgefleet.deploy(app, edge)["id"] for edge in ("lab-1", "lab-2")}

    first = jobs.run_here("check-image-updates")
    assert first["registry_requests"] == first["references"]
    assert notes_for(ids, "image") == []

    retag(edges["lab-1"].connection, lab.registry, "edgefleet/hello", "1.1.0", tag)
    second = jobs.run_here("check-image-updates")
    assert second["registry_requests"] == second["references"]
    notes = notes_for(ids, "image")
    assert sorted(n["deployment_id"] for n in notes) == sorted(ids)
    assert all(n["command"].endswith("--force") and "moved" in n["message"] for n in notes)
    for dep_id in ids:
        assert "moved" in edgefleet.deployment_status(dep_id)["update_available"]
    third = jobs.run_here("check-image-updates")
    assert third["registry_requests"] == third["references"]
    assert len(notes_for(ids, "image")) == 2

    updated = edgefleet.update_deployment(sorted(ids)[0], force=True)
    assert updated["state"] == "STARTED" and updated["update_available"] is None
    for dep_id in ids:
        edgefleet.delete_deployment(dep_id, force=True)


def test_newer_semver_tag_is_found(lab: Any, edges: dict[str, Any], local_runs: None) -> None:
    app = unique("semver")
    edgefleet.create_application(app, "1.0.0", image=f"{lab.registry}/edgefleet/hello:1.0.0")
    edgefleet.publish_version(app, "1.0.0")
    dep = edgefleet.deploy(app, "lab-2")
    result = jobs.run_here("check-image-updates")
    mine = [f for f in result["updates_available"] if f["deployment_id"] == dep["id"]]
    assert [f["key"] for f in mine] == [f"{lab.registry}/edgefleet/hello:2.0.0"]
    assert len(notes_for({dep["id"]}, "image")) == 1
    edgefleet.delete_deployment(dep["id"], force=True)


def _deploy_versions(app: str, other: str, registry: str) -> tuple[set[str], str, str]:
    image = f"{registry}/edgefleet/hello"
    edgefleet.create_application(app, "1.0.0", image=f"{image}:1.0.0")
    edgefleet.add_version(app, "1.1.0", image=f"{image}:1.1.0")
    edgefleet.create_application(other, "1.0.0", image=f"{image}:1.0.0")
    edgefleet.publish_version(app, "1.0.0")
    edgefleet.publish_version(other, "1.0.0")
    old = {edgefleet.deploy(app, edge, version="1.0.0")["id"] for edge in ("lab-1", "lab-2")}
    current = edgefleet.deploy(app, "lab-2", version="1.1.0", allow_unpublished=True)["id"]
    unrelated = edgefleet.deploy(other, "lab-2")["id"]
    return old, current, unrelated


def test_publish_notifies_through_the_real_trigger(lab: Any, edges: dict[str, Any],
                                                   prefect_api: str) -> None:
    """With `edgefleet up` running, publish emits the event and the trigger notifies every
    older deployment whose update policy wants to hear of the release."""
    app, other = unique("pub"), unique("other")
    old, current, unrelated = _deploy_versions(app, other, lab.registry)
    quiet = sorted(old)[1]
    edgefleet.set_policy(quiet, notify="major")  # a minor release is no news to it
    told = old - {quiet}
    edgefleet.publish_version(app, "1.1.0")
    deadline = time.monotonic() + 60
    while len(notes_for(told, "version")) < len(told):
        assert time.monotonic() < deadline, "the trigger never ran notify-application-update"
        time.sleep(0.5)
    notes = notes_for(old | {current, unrelated}, "version")
    assert sorted(n["deployment_id"] for n in notes) == sorted(told)
    for note in notes:
        assert (note["application"], note["from_version"], note["to_version"]) == (
            app, "1.0.0", "1.1.0")
        assert note["command"] == f"edgefleet update {note['deployment_id']} --to 1.1.0"
        assert note["link"].startswith("http://127.0.0.1:")
        assert not note["acknowledged"]
    assert edgefleet.deployment_status(sorted(told)[0])["update_available"]
    # (the served image check may flag the newer 2.0.0 tag meanwhile: a major is news to it)
    assert "1.1.0" not in (edgefleet.deployment_status(quiet)["update_available"] or "")

    edgefleet.publish_version(app, "1.1.0")  # again: the trigger fires, nothing is added
    jobs.run_here("reconcile-notifications")
    time.sleep(4)
    assert len(notes_for(old | {current, unrelated}, "version")) == len(told)
    edgefleet.acknowledge(notes[0]["id"])
    assert notes[0]["id"] not in [n["id"] for n in edgefleet.list_notifications()]
    for dep_id in old | {current, unrelated}:
        edgefleet.delete_deployment(dep_id, force=True)


def test_reconcile_catches_a_lost_publish_event(lab: Any, edges: dict[str, Any],
                                                local_runs: None) -> None:
    app, other = unique("lost"), unique("other")
    old, current, unrelated = _deploy_versions(app, other, lab.registry)
    with session_scope() as session:  # published, but no event ever emitted
        app_row = session.exec(select(Application).where(Application.name == app)).one()
        row = session.exec(select(ApplicationVersion).where(
            ApplicationVersion.application_id == app_row.id,
            ApplicationVersion.version == "1.1.0")).one()
        row.published = True
        session.add(row)
    assert notes_for(old, "version") == []
    jobs.run_here("reconcile-notifications")
    assert sorted(n["deployment_id"] for n in notes_for(old | {current, unrelated}, "version")) \
        == sorted(old)
    jobs.run_here("reconcile-notifications")
    assert len(notes_for(old, "version")) == len(old)
    for dep_id in old | {current, unrelated}:
        edgefleet.delete_deployment(dep_id, force=True)
