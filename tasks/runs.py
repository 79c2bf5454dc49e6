"""Tasks on the flow run itself: its name, once the flow knows what and where it changes,
and its recorded parameters, rid of sensitive values."""

from __future__ import annotations

from uuid import UUID

from prefect import get_run_logger, runtime, task
from prefect.cache_policies import NONE
from prefect.client.orchestration import get_client

from edgefleet.models.launch import masked as masked_values


@task(name="rename-run", retries=2, retry_delay_seconds=1, cache_policy=NONE)
def rename_run(flow_run_id: str, *, name: str, masked: dict[str, list[str]] | None = None
               ) -> None:
    """Rename the run and mask, in its recorded parameters, the entries ``masked`` names
    under each parameter: a mapping's keys, or a list of name/value entries' values."""
    with get_client(sync_client=True) as client:
        if not masked:
            client.update_flow_run(UUID(flow_run_id), name=name)
            return
        run = client.read_flow_run(UUID(flow_run_id))
        params = dict(run.parameters)
        for parameter, keys in masked.items():
            if parameter in params:
                params[parameter] = masked_values(params[parameter], set(keys))
        client.update_flow_run(run.id, name=name, parameters=params)


def name_run(name: str, *, placeholder: str) -> None:
    """Give the current run its readable name (``update hello 1.1.0 → lab-3``) unless its
    caller named it (a group rollout's ``roll back …``): only a run still called
    ``placeholder``, its flow's name before the records were read, is renamed."""
    run_id, current = runtime.flow_run.id, runtime.flow_run.name
    if run_id and current == placeholder and name != placeholder:
        try:
            rename_run(str(run_id), name=name)
        except Exception as exc:  # a name is for people: never the reason a change fails
            get_run_logger().warning("the run keeps its name %r: %s", current, exc)
