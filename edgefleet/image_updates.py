"""Image update detection: which running images have something newer in their registry.

A floating tag (``latest``) is new when its digest moved; a semantic-version tag when a
newer semantic-version tag exists and the deployment's update policy counts a release that
big. Pure rules here: the running images are read from the records by
``edgefleet.crud.running_images``, the registry is asked by ``edgefleet.tasks.registry``.
"""

from __future__ import annotations

import semver
from pydantic import BaseModel

from edgefleet.image_refs import parse_reference
from edgefleet.models.policies import Answer, UpdatePolicy, answer
from edgefleet.update_plan import short


class RunningImage(BaseModel):
    deployment_id: str
    application: str
    version: str
    service: str
    ref: str
    digest: str | None
    policy: UpdatePolicy = UpdatePolicy()
    registry_secret: str | None = None  # the login its version pulls with (a block name)


class RefCheck(BaseModel):
    """What the registry says about one reference (checked once per sweep)."""

    ref: str
    digest: str | None = None
    newer_tag: str | None = None
    requests: int = 0
    error: str | None = None


class Finding(BaseModel):
    deployment_id: str
    service: str
    key: str
    message: str
    command: str


def parse_tag(tag: str | None) -> semver.Version | None:
    if not tag:
        return None
    try:
        return semver.Version.parse(tag[1:] if tag.startswith("v") else tag)
    except ValueError:
        return None


def newest_tag(current: str, tags: list[str]) -> str | None:
    """The newest release tag above ``current`` in the same style (``v`` prefix or not)."""
    base = parse_tag(current)
    if base is None:
        return None
    prefix = current.startswith("v")
    best: tuple[semver.Version, str] | None = None
    for tag in tags:
        version = parse_tag(tag)
        if (version is None or tag.startswith("v") != prefix or version.prerelease
                or version <= base):
            continue
        if best is None or version > best[0]:
            best = (version, tag)
    return best[1] if best else None


def tag_is_news(policy: UpdatePolicy, running: str | None, newer: str) -> bool:
    """Whether the deployment's update policy wants to hear of the newer tag."""
    old, new = parse_tag(running), parse_tag(newer)
    if old is None or new is None:
        return True
    return answer(policy, str(old), str(new))[0] is Answer.NOTIFY


def is_checkable(ref: str) -> bool:
    """A reference pinned by digest cannot move: nothing to check."""
    return parse_reference(ref).digest is None


def findings(running: list[RunningImage], checks: dict[str, RefCheck]) -> list[Finding]:
    """One finding per deployment and changed image; keys make notifications unique."""
    found: list[Finding] = []
    for image in running:
        check = checks.get(image.ref)
        if check is None or check.error:
            continue
        ref = parse_reference(image.ref)
        if check.newer_tag:
            if not tag_is_news(image.policy, ref.tag, check.newer_tag):
                continue
            newer = f"{image.ref.rsplit(':', 1)[0]}:{check.newer_tag}"
            found.append(Finding(
                deployment_id=image.deployment_id, service=image.service, key=newer,
                message=(f"{image.application}: service {image.service} runs {image.ref}; "
                         f"the registry has a newer tag {check.newer_tag}"),
                command=(f"edgefleet app version {image.application} NEW_VERSION --image "
                         f"{newer} && edgefleet app publish {image.application} NEW_VERSION"),
            ))
        elif (parse_tag(ref.tag) is None and check.digest and image.digest
              and check.digest != image.digest):
            found.append(Finding(
                deployment_id=image.deployment_id, service=image.service, key=check.digest,
                message=(f"{image.application}: {image.ref} moved in the registry "
                         f"({short(image.digest)} -> {short(check.digest)})"),
                command=f"edgefleet update {image.deployment_id} --force",
            ))
    return found
