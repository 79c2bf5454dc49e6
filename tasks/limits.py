"""Prefect global concurrency limits of one slot: one update per deployment, one rollout per
group, whoever starts them (a command, the UI, an automation, a reconcile).

Prefect skips a ``concurrency()`` on a limit that does not exist, so each run creates its
limit first (``ensure_limit``); the records' compare-and-set moves still refuse a second run
up front, the slot is what holds if two get past them at once. A limit goes when what it
guards is deleted (``forget_limit``, best effort: a leftover limit holds no slot).
"""

from __future__ import annotations

import contextlib

from prefect import task
from prefect.cache_policies import NONE
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
from prefect.exceptions import ObjectNotFound


def update_limit_name(deployment_id: str) -> str:
    """The limit that keeps one update per deployment at a time."""
    return f"edgefleet-update-{deployment_id}"


def group_limit_name(group: str) -> str:
    """The limit that keeps one rollout per deployment group at a time."""
    return f"edgefleet-group-{group}"


@task(name="ensure-limit", retries=2, retry_delay_seconds=1, cache_policy=NONE,
      task_run_name="lock {name}")
def ensure_limit(name: str) -> str:
    """Create limit ``name`` (1 slot) if missing; returns its name."""
    with get_client(sync_client=True) as client:
        try:
            client.read_global_concurrency_limit_by_name(name)
        except ObjectNotFound:
            client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=name,
                                                                                limit=1))
    return name


def forget_limit(name: str, api_url: str) -> None:
    """Delete limit ``name`` on the Prefect API at ``api_url`` if it is there."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: api_url}), get_client(sync_client=True) as client, \
            contextlib.suppress(ObjectNotFound):
        client.delete_global_concurrency_limit_by_name(name)
