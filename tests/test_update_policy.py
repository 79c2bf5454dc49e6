"""Update policies: which newly published versions a deployment's operator hears of."""

import pytest
from pydantic import ValidationError

from edgefleet.models.policies import Answer, Change, UpdatePolicy, answer, change_between


@pytest.mark.parametrize("running, newer, change", [
    ("1.2.3", "1.2.4", Change.PATCH),
    ("1.2.3", "1.3.0", Change.MINOR),
    ("1.2.3", "2.0.0", Change.MAJOR),
    ("1.2.3", "1.10.0", Change.MINOR),  # compared as numbers, not text
    ("2.0.0-rc.1", "2.0.0", Change.PATCH),  # the release of the prerelease that runs
    ("1.2.3", "1.2.3", None),
    ("1.2.3", "1.2.3-rc.1", None),  # a prerelease of the running version is older
    ("2.0.0", "1.9.9", None),
])
def test_the_size_of_a_step_between_versions(running: str, newer: str,
                                             change: Change | None) -> None:
    assert change_between(running, newer) is change


MINOR_OR_MORE = "(the policy notifies of minor and bigger)"
MAJOR_ONLY = "(the policy notifies of major and bigger)"


@pytest.mark.parametrize("policy, running, published, expected, why", [
    ({}, "1.0.0", "1.0.1", Answer.NOTIFY, "a patch release"),  # default: every newer release
    ({}, "1.0.0", "2.0.0", Answer.NOTIFY, "a major release"),
    ({}, "1.0.0", "1.0.0", Answer.SKIP, "1.0.0 is not newer than 1.0.0"),
    ({"notify": "minor"}, "1.0.0", "1.0.1", Answer.SKIP, f"a patch release {MINOR_OR_MORE}"),
    ({"notify": "minor"}, "1.0.0", "1.1.0", Answer.NOTIFY, "a minor release"),
    ({"notify": "minor"}, "1.0.0", "2.0.0", Answer.NOTIFY, "a major release"),
    ({"notify": "major"}, "1.0.0", "1.9.0", Answer.SKIP, f"a minor release {MAJOR_ONLY}"),
    ({"notify": "major"}, "1.0.0", "2.0.0", Answer.NOTIFY, "a major release"),
    ({}, "1.0.0", "1.1.0-rc.1", Answer.SKIP,  # prereleases are left out by default
     "1.1.0-rc.1 is a prerelease (the policy leaves them out)"),
    ({"prereleases": True}, "1.0.0", "1.1.0-rc.1", Answer.NOTIFY, "a minor release"),
    ({}, "1.1.0-rc.1", "1.1.0-rc.2", Answer.NOTIFY,  # it runs one: it hears of the next
     "a patch release"),
    ({"notify": "major", "prereleases": True}, "1.0.0", "1.1.0-rc.1", Answer.SKIP,
     f"a minor release {MAJOR_ONLY}"),
])
def test_what_a_policy_makes_of_a_published_version(policy: dict[str, object], running: str,
                                                    published: str, expected: Answer,
                                                    why: str) -> None:
    assert answer(UpdatePolicy.model_validate(policy), running, published) == (expected, why)


@pytest.mark.parametrize("bad", [{"notify": "huge"}, {"prereleases": "sometimes"},
                                 {"auto": "patch"}])
def test_a_bad_policy_is_refused(bad: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        UpdatePolicy.model_validate(bad)
