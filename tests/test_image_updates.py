"""Image update decisions (pure): newer tags, moved digests, pinned references."""

from edgefleet.image_updates import (
    Finding,
    RefCheck,
    RunningImage,
    findings,
    is_checkable,
    newest_tag,
)
from edgefleet.models.policies import Change, UpdatePolicy

A, B = "sha256:" + "a" * 64, "sha256:" + "b" * 64


def test_newest_tag_keeps_the_style_and_skips_prereleases() -> None:
    tags = ["1.0.0", "1.1.0", "2.0.0-rc.1", "v3.0.0", "latest", "1.0.10"]
    assert newest_tag("1.0.0", tags) == "1.1.0"
    assert newest_tag("v2.0.0", tags) == "v3.0.0"
    assert newest_tag("1.1.0", ["1.0.0", "1.1.0"]) is None
    assert newest_tag("latest", tags) is None


def running(ref: str, digest: str | None = A, dep: str = "d1") -> RunningImage:
    return RunningImage(deployment_id=dep, application="app", version="1.0.0", service="web",
                        ref=ref, digest=digest)


def test_moved_floating_tag_is_a_finding_keyed_by_digest() -> None:
    ref = "127.0.0.1:5000/app:latest"
    (found,) = findings([running(ref)], {ref: RefCheck(ref=ref, digest=B, requests=1)})
    assert isinstance(found, Finding)
    assert found.key == B and found.command == "edgefleet update d1 --force"
    assert findings([running(ref)], {ref: RefCheck(ref=ref, digest=A)}) == []


def test_newer_semver_tag_is_a_finding_keyed_by_reference() -> None:
    ref = "127.0.0.1:5000/app:1.0.0"
    (found,) = findings([running(ref)], {ref: RefCheck(ref=ref, newer_tag="1.2.0")})
    assert found.key == "127.0.0.1:5000/app:1.2.0"
    assert "newer tag 1.2.0" in found.message


def test_a_newer_tag_is_news_only_as_big_as_the_policy_asks() -> None:
    ref = "127.0.0.1:5000/app:v1.0.0"
    major_only = UpdatePolicy(notify=Change.MAJOR)
    quiet = running(ref).model_copy(update={"policy": major_only, "deployment_id": "d2"})
    for newer, heard in (("v1.3.0", ["d1"]), ("v2.0.0", ["d1", "d2"])):
        check = {ref: RefCheck(ref=ref, newer_tag=newer)}
        assert [f.deployment_id for f in findings([running(ref), quiet], check)] == heard


def test_failed_checks_and_pinned_references_give_nothing() -> None:
    ref = "127.0.0.1:5000/app:latest"
    assert findings([running(ref)], {ref: RefCheck(ref=ref, error="down")}) == []
    assert not is_checkable(f"127.0.0.1:5000/app:1@{A}")
    assert is_checkable("127.0.0.1:5000/app:1")
