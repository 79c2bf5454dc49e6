"""Retry conditions: retry what may pass next time, never a request that can only fail again."""

from __future__ import annotations

from typing import Any

from edgefleet.errors import InvalidInput, InvalidTransition, NotFound

FINAL = (InvalidInput, InvalidTransition, NotFound)


def unless_final(task: Any, task_run: Any, state: Any) -> bool:
    """Prefect ``retry_condition_fn``: False for bad requests (no retry), True otherwise."""
    try:
        state.result()
    except FINAL:
        return False
    except Exception:
        return True
    return True
