"""Flow `stop-application`: STOPPING → remove containers (volumes only if asked) → STOPPED."""

from __future__ import annotations

from typing import Annotated

from prefect import flow, runtime

from edgefleet.models.forms import form
from edgefleet.models.inputs import AppKind
from edgefleet.models.run_names import stop_run_name
from edgefleet.models.states import Action, DeploymentState
from edgefleet.tasks.compose import compose_down, stack_remove
from edgefleet.tasks.containers import remove_containers
from edgefleet.tasks.records import (
    load_applied_spec,
    load_plan,
    move_state,
    record_containers,
)
from edgefleet.tasks.runs import name_run

RUN_NAME = "stop {deployment_id}"  # until the records say what and where


@flow(name="stop-application", flow_run_name=RUN_NAME)
def stop_application(
    deployment_id: Annotated[str, form(
        "Deployment", "the deployment's id (`edgefleet deployments`)")],
    remove_volumes: Annotated[bool, form(
        "Remove volumes", "also remove the deployment's volumes (its data): gone for good")
    ] = False,
) -> str:
    plan = load_plan(deployment_id)
    name_run(stop_run_name(plan.application, plan.version, plan.edge.name),
             placeholder=RUN_NAME.format(deployment_id=deployment_id))
    run_id = runtime.flow_run.id
    move_state(deployment_id, Action.STOP, flow_run_id=str(run_id) if run_id else None)
    try:
        if plan.kind is AppKind.COMPOSE:
            compose_down(plan.edge, plan.project, load_applied_spec(deployment_id),
                         remove_volumes=remove_volumes)
        elif plan.kind is AppKind.SWARM:
            stack_remove(plan.edge, plan.project)
        remove_containers(plan.edge, deployment_id, remove_volumes=remove_volumes)
    except Exception as exc:
        move_state(deployment_id, Action.FAIL, error=f"stop failed: {exc}",
                   expect=DeploymentState.STOPPING)
        raise
    record_containers(deployment_id, [])
    return move_state(deployment_id, Action.STOPPED)
