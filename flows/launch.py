"""Flow `launch-application`: the Prefect UI's launch form (the reference's launch modal).

check (`edgefleet deploy`'s refusals, nothing recorded) → ask for the required parameters
not given (the run pauses with a typed input form) → create one deployment per edge → run
deploy-application for each (subflows named ``deploy hello 1.1.0 → lab-1``) → a markdown
artifact with each deployment's state and URLs. The run renames itself
``launch hello 1.1.0 → lab-1, lab-2`` once the version and edges are resolved.
"""

from __future__ import annotations

from typing import Annotated, Any

from prefect import flow, get_run_logger, pause_flow_run, runtime
from prefect.input import RunInput
from pydantic import Field, SecretStr, create_model

from edgefleet.flows.deploy import deploy_application
from edgefleet.models.forms import form
from edgefleet.models.launch import LaunchPlan, SecretEntry, secret_values
from edgefleet.models.policies import UpdatePolicy
from edgefleet.models.run_names import deploy_run_name, launch_run_name
from edgefleet.tasks.launch import (
    check_launch_request,
    create_launch_deployments,
    forget_run_input,
    publish_launch_report,
    read_launched,
)
from edgefleet.tasks.runs import rename_run

INPUT_TIMEOUT = 3600  # seconds a launch waits for its missing parameters, then fails
INPUT_POLL = 2  # seconds between looks for the answer


def _run_name() -> str:
    params = runtime.flow_run.parameters
    return launch_run_name(str(params.get("application")), params.get("version"),
                           params.get("edges"), params.get("selector"))


@flow(name="launch-application", flow_run_name=_run_name)
def launch_application(
    application: Annotated[str, form(
        "Application", "the application's name (`edgefleet app list`)")],
    version: Annotated[str, form(
        "Version", "a version of it; empty: the newest published one")] = "",
    edges: Annotated[list[str], form(
        "Edges", "the edges to deploy to, by name (`edgefleet edge list`); "
                 "or leave empty and give a selector")] = [],  # noqa: B006 - copied
    selector: Annotated[str, form(
        "Edge selector", "the edges whose labels match, e.g. `site=plant-7,tier!=test`; "
                         "instead of a list of edges")] = "",
    env: Annotated[dict[str, str], form(
        "Parameters", "the version's parameter values by name (`edgefleet app show`); "
                      "a required one left out is asked for once the run starts")
    ] = {},  # noqa: B006 - copied below, never changed
    secrets: Annotated[list[SecretEntry], form(
        "Sensitive parameters", "one entry per parameter whose value is kept in a Prefect "
                                "Secret block, never shown: API keys, passwords")
    ] = [],  # noqa: B006 - copied below, never changed
    policy: Annotated[UpdatePolicy, form(
        "Update policy", "which newer published versions the operator is told of")
    ] = UpdatePolicy(),  # noqa: B008 - frozen: one shared default is safe
    allow_unpublished: Annotated[bool, form(
        "Allow unpublished", "deploy a version that is not published yet")] = False,
) -> list[dict[str, Any]]:
    """Launch ``application`` on a list of edges or those a selector matches; returns each
    deployment with its state and URLs. The run fails if any deployment did not start."""
    env, entries = dict(env or {}), list(secrets or [])
    given_secrets: dict[str, SecretStr] = {}
    run_id = _flow_run_id()
    plan: LaunchPlan | None = None
    try:
        given_secrets = secret_values(entries)
        plan = check_launch_request(application, version=version or None,
                                    edges=list(edges or []) or None, selector=selector or None,
                                    env=env, secrets=given_secrets,
                                    allow_unpublished=allow_unpublished)
    finally:  # refused or not, no sensitive value stays in the run's parameters (refused,
        # which of env's are sensitive may be unknown: none of its values stays)
        if run_id and (entries or plan or env):
            rename_run(
                run_id, masked={"secrets": [e.name for e in entries],
                                "env": plan.sensitive if plan else list(env)},
                name=(launch_run_name(plan.application, plan.version, plan.edges, None)
                      if plan else _run_name()))
    assert plan is not None
    if plan.missing:
        env, given_secrets = _ask(plan, env, given_secrets, run_id)
        plan = check_launch_request(plan.application, version=plan.version, edges=plan.edges,
                                    selector=None, env=env, secrets=given_secrets,
                                    allow_unpublished=allow_unpublished, ask_missing=False)
    ids = create_launch_deployments(plan, env=env, secrets=given_secrets, policy=policy,
                                    allow_unpublished=allow_unpublished)
    for edge, dep_id in zip(plan.edges, ids, strict=True):
        run = deploy_application.with_options(
            flow_run_name=deploy_run_name(plan.application, plan.version, edge))
        run(deployment_id=dep_id, return_state=True)  # a failed one: the next still runs
    rows = read_launched(ids)
    publish_launch_report(plan, rows)
    failed = [r for r in rows if r.state != "STARTED"]
    if failed:
        raise RuntimeError(f"{len(failed)} of {len(rows)} deployments did not start: " +
                           "; ".join(f"{r.edge}: {r.state} {r.last_error or ''}".strip()
                                     for r in failed))
    return [r.model_dump() for r in rows]


def input_form(plan: LaunchPlan) -> type[RunInput]:
    """The second step's form: one required field per missing parameter, named as the
    parameter (a password field where it is sensitive)."""
    fields: dict[str, Any] = {}
    for param in plan.missing:
        clash = param.name.startswith(("_", "model_")) or hasattr(RunInput, param.name)
        kind: type = SecretStr if param.name in plan.sensitive else str
        help_text = param.message or param.description or "required, no default"
        fields[f"param_{param.name}" if clash else param.name] = (kind, Field(
            ..., alias=param.name if clash else None, title=param.name,
            description=help_text))
    model = create_model("LaunchParameters", __base__=RunInput, **fields)
    named = ", ".join(p.name for p in plan.missing)
    return model.with_initial_data(
        description=f"**launch {plan.application} {plan.version}** needs {named}: "
                    "required parameters without a default.")


def _ask(plan: LaunchPlan, env: dict[str, str], secrets: dict[str, SecretStr],
         run_id: str | None) -> tuple[dict[str, str], dict[str, SecretStr]]:
    """Pause until someone gives the missing parameters; their values join ``env`` (or
    ``secrets``: the sensitive ones, whose answer is then deleted from the run)."""
    logger = get_run_logger()
    names = ", ".join(p.name for p in plan.missing)
    logger.info("launch %s %s waits for %s (resume the run with them)", plan.application,
                plan.version, names)
    answer = pause_flow_run(wait_for_input=input_form(plan), timeout=INPUT_TIMEOUT,
                            poll_interval=INPUT_POLL, key="parameters")
    env, secrets = dict(env), dict(secrets)
    for param in plan.missing:
        value = answer.model_dump(by_alias=True)[param.name]
        if isinstance(value, SecretStr):
            secrets[param.name] = value
        else:
            env[param.name] = str(value)
    if run_id and any(p.name in plan.sensitive for p in plan.missing):
        forget_run_input(run_id)
    logger.info("launch %s %s resumed with %s", plan.application, plan.version, names)
    return env, secrets


def _flow_run_id() -> str | None:
    value = runtime.flow_run.id
    return str(value) if value else None
