"""Which services `compose up --wait` can wait for (compose refuses a switched-off check)."""

from __future__ import annotations

import json

from edgefleet.tasks.compose import without_healthcheck


def test_switched_off_healthchecks_are_told_apart_from_the_others() -> None:
    spec = json.dumps({"services": {
        "a": {"image": "x", "healthcheck": {"disable": True}},
        "b": {"image": "x", "healthcheck": {"test": ["NONE"]}},
        "c": {"image": "x", "healthcheck": {"test": "NONE"}},
        "d": {"image": "x", "healthcheck": {"test": ["CMD", "true"], "disable": False}},
        "e": {"image": "x"},
    }})
    assert without_healthcheck(spec) == (["a", "b", "c"], ["d", "e"])


def test_a_spec_that_is_not_a_compose_model_has_no_services() -> None:
    assert without_healthcheck("not json") == ([], [])
    assert without_healthcheck("[1, 2]") == ([], [])
    assert without_healthcheck(json.dumps({"services": None})) == ([], [])
