"""Update policy of a deployment: which newer published versions its operator hears of.

Semantic versions say how big a change is. An operator can ask to hear only of minor or
major releases (``notify``), and whether prereleases count at all; a version that is not
newer than the running one is never news, and a deployment that runs a prerelease already
hears of the next ones. Pure logic, no records.
"""

from __future__ import annotations

from enum import StrEnum

import semver
from pydantic import BaseModel, ConfigDict, Field


class Change(StrEnum):
    """How big the step from the running version to a newer one is."""

    PATCH = "patch"
    MINOR = "minor"
    MAJOR = "major"


class Answer(StrEnum):
    SKIP = "skip"  # below the policy's notify level, a prerelease not wanted, or not newer
    NOTIFY = "notify"


SIZE = {Change.PATCH: 0, Change.MINOR: 1, Change.MAJOR: 2}


class UpdatePolicy(BaseModel):
    """Defaults: hear of every newer release, ignore prereleases."""

    model_config = ConfigDict(extra="forbid", frozen=True, title="Update policy")

    notify: Change = Field(
        default=Change.PATCH, title="Notify of",
        description="tell the operator of newer published releases at least this big "
                    "(patch: every release; minor: minor and major; major: major only)")
    prereleases: bool = Field(
        default=False, title="Prereleases",
        description="also tell of prereleases (1.2.0-rc.1); a deployment that runs a "
                    "prerelease hears of the next ones anyway")

    def describe(self) -> str:
        pre = "including" if self.prereleases else "leaving out"
        return f"notified of {self.notify.value} releases and bigger, {pre} prereleases"


def change_between(running: str, newer: str) -> Change | None:
    """The size of the step ``running`` → ``newer``; None when ``newer`` is not newer."""
    old, new = semver.Version.parse(running), semver.Version.parse(newer)
    if new <= old:
        return None
    if new.major != old.major:
        return Change.MAJOR
    if new.minor != old.minor:
        return Change.MINOR
    return Change.PATCH  # a patch, or a release of the prerelease that runs


def answer(policy: UpdatePolicy, running: str, published: str) -> tuple[Answer, str]:
    """What the policy does when ``published`` appears for a deployment on ``running``."""
    change = change_between(running, published)
    if change is None:
        return Answer.SKIP, f"{published} is not newer than {running}"
    if (semver.Version.parse(published).prerelease and not policy.prereleases
            and not semver.Version.parse(running).prerelease):  # one on a prerelease hears
        return Answer.SKIP, f"{published} is a prerelease (the policy leaves them out)"
    if SIZE[change] >= SIZE[policy.notify]:
        return Answer.NOTIFY, f"a {change.value} release"
    return Answer.SKIP, (f"a {change.value} release (the policy notifies of "
                         f"{policy.notify.value} and bigger)")
