"""Flow `edge-operation`: one step of a control-plane flow, run by a pull edge's agent.

The control plane submits it to the edge's queue (``edgefleet.edge_calls``); the agent runs
the step against its local engine and leaves what came of it as an artifact of this run,
the only way back (the agent has no database credentials). A step that failed fails the run
too, so the Prefect UI shows it where it happened.
"""

from __future__ import annotations

from typing import Annotated, Any

from prefect import flow, get_run_logger, runtime

from edgefleet.edge_calls import RESULT_TYPE, run_here
from edgefleet.errors import EdgefleetError
from edgefleet.models.forms import form


def _run_name() -> str:
    """``<step> on <edge>``: the step's function name, not its module path."""
    params = runtime.flow_run.parameters
    return f"{str(params.get('operation', '?')).rsplit(':', 1)[-1]} on {params.get('edge', '?')}"


@flow(name="edge-operation", flow_run_name=_run_name, retries=0)
def edge_operation(
    edge: Annotated[str, form(
        "Edge", "the pull edge whose agent runs the step (its queue: edge-NAME)")],
    operation: Annotated[str, form(
        "Operation", "the step: an `@on_edge` function as `module:name`, one the control "
                     "plane submits")],
    arguments: Annotated[dict[str, Any], form(
        "Arguments", "the step's arguments but the engine connection, as JSON")],
    address: Annotated[str | None, form(
        "Edge address", "the host in the URLs of the edge's published ports; "
                        "empty: the engine's host")] = None,
) -> None:
    """Run ``operation`` (an ``@on_edge`` function) with ``arguments`` on this agent's edge."""
    outcome = run_here(operation, edge, address, arguments)
    _hand_back(outcome, operation)
    if "error" in outcome:
        error = outcome["error"]
        get_run_logger().error("%s on %s failed: %s", operation, edge, error["message"])
        raise EdgefleetError(f"{error['type']}: {error['message']}")


def _hand_back(outcome: dict[str, Any], operation: str) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import ArtifactCreate

    with get_client(sync_client=True) as client:
        client.create_artifact(ArtifactCreate(
            type=RESULT_TYPE, data=outcome, flow_run_id=runtime.flow_run.id,
            description=f"what {operation.rsplit(':', 1)[-1]} returned to the control plane"))
