"""Tasks of flow `launch-application`: check a launch as `edgefleet deploy` does, create its
deployments, keep sensitive values out of the run's parameters, and report.

Sensitive values arrive as ``SecretStr`` (the run form's password fields, or a value of a
sensitive parameter typed in ``env``): they go to Prefect Secret blocks, one per deployment
and parameter, exactly as `edgefleet deploy --env` does; the run's own parameters
(``tasks.runs.rename_run``) and the input it asked for are then rewritten with the mask.
"""

from __future__ import annotations

import re
from uuid import UUID

from prefect import task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NONE
from prefect.client.orchestration import get_client
from pydantic import SecretStr

from edgefleet import parameters as P
from edgefleet.crud import check_launch, containers_of, ui_link
from edgefleet.db import session_scope
from edgefleet.errors import InvalidInput
from edgefleet.models.inputs import DeploymentCreate
from edgefleet.models.launch import LaunchedDeployment, LaunchPlan, report
from edgefleet.models.policies import UpdatePolicy
from edgefleet.models.records import ApplicationVersion, Deployment, Edge, new_id
from edgefleet.models.run_names import launch_run_name
from edgefleet.record_views import named_urls
from edgefleet.selectors import parse_selector
from edgefleet.tasks.retry import unless_final
from edgefleet.validation import validated

TARGETS = ("give the edges either as a list (edges) or as a selector (selector), exactly one "
           "of them")


def _values(env: dict[str, str], secrets: dict[str, SecretStr]) -> dict[str, str]:
    """Every value given, in clear (only inside a task), refused as `deploy` refuses
    ``--env`` entries (names, NULs, how many)."""
    twice = sorted(set(env) & set(secrets))
    if twice:
        raise InvalidInput(f"{', '.join(twice)} given both in env and in secrets: give each "
                           "parameter once")
    given = {**env, **{k: v.get_secret_value() for k, v in secrets.items()}}
    return validated(DeploymentCreate, application="-", edge="-", env=given).env


@task(name="check-launch", task_run_name="check launch of {application}", retries=2,
      retry_delay_seconds=1, cache_policy=NONE, retry_condition_fn=unless_final)
def check_launch_request(application: str, *, version: str | None, edges: list[str] | None,
                         selector: str | None, env: dict[str, str],
                         secrets: dict[str, SecretStr], allow_unpublished: bool = False,
                         ask_missing: bool = True) -> LaunchPlan:
    """Refuse a launch with `edgefleet deploy`'s own refusals (``crud.check_launch``), before
    anything is recorded; a required parameter not set is returned to be asked for."""
    listed = list(dict.fromkeys(edges)) if edges else None
    if (listed is None) == (not selector):
        raise InvalidInput(TARGETS)
    spec = validated(DeploymentCreate, application=application, edge=(listed or ["-"])[0],
                     version=version, env=_values(env, secrets))
    with session_scope() as session:
        found = check_launch(session, application=spec.application, edges=listed or [],
                             selector=parse_selector(selector) if selector else None,
                             version=spec.version, env=spec.env,
                             allow_unpublished=allow_unpublished, ask_missing=ask_missing)
        return LaunchPlan(application=found.application.name, version=found.version.version,
                          edges=[e.name for e in found.edges],
                          sensitive=sorted(P.sensitive_names(found.params)),
                          missing=found.missing)


@task(name="create-launch-deployments",
      task_run_name="create {plan.application} {plan.version} deployments", cache_policy=NONE)
def create_launch_deployments(plan: LaunchPlan, *, env: dict[str, str],
                              secrets: dict[str, SecretStr], policy: UpdatePolicy,
                              allow_unpublished: bool = False) -> list[str]:
    """One CREATED deployment per edge of ``plan``, all or none: checked again in the
    session that records them. Values given as secrets, and those of sensitive parameters,
    go to Secret blocks; the records keep the blocks' names. Not retried: a second try
    could record twice."""
    given = _values(env, secrets)
    hidden = {k: v for k, v in given.items() if k in secrets or k in plan.sensitive}
    ids = {edge: new_id() for edge in plan.edges}
    refs: dict[str, dict[str, str]] = {}  # per deployment, each block from just before saved
    try:
        if hidden:
            from edgefleet import parameter_secrets

            for dep_id in ids.values():
                parameter_secrets.save_values(dep_id, hidden, into=refs.setdefault(dep_id, {}))
        with session_scope() as session:
            found = check_launch(session, application=plan.application, edges=plan.edges,
                                 version=plan.version, env=given,
                                 allow_unpublished=allow_unpublished)
            row = found.version
            assert found.application.id is not None and row.id is not None
            for edge in found.edges:
                assert edge.id is not None
                dep_id = ids[edge.name]
                record_env = {**given, **(refs[dep_id] if hidden else {})}
                session.add(Deployment(id=dep_id, application_id=found.application.id,
                                       version_id=row.id, edge_id=edge.id, env=record_env,
                                       policy=policy.model_dump(mode="json")))
    except Exception:  # nothing recorded: the blocks saved so far go, every deployment's
        if any(refs.values()):
            from edgefleet import parameter_secrets

            for dep_id, refs_of_one in refs.items():
                parameter_secrets.delete_values(refs_of_one, dep_id)
        raise
    return [ids[edge] for edge in plan.edges]


@task(name="forget-run-input", retries=2, retry_delay_seconds=1, cache_policy=NONE)
def forget_run_input(flow_run_id: str) -> int:
    """Delete the answers this run was resumed with (they may hold sensitive values, now in
    Secret blocks); their schemas stay. Returns how many were deleted."""
    gone = 0
    with get_client(sync_client=True) as client:
        for item in client.filter_flow_run_input(UUID(flow_run_id), key_prefix="", limit=100,
                                                 exclude_keys=set()):
            if item.key.endswith("-response"):
                client.delete_flow_run_input(UUID(flow_run_id), item.key)
                gone += 1
    return gone


@task(name="read-launched", cache_policy=NONE, retries=2, retry_delay_seconds=1)
def read_launched(deployment_ids: list[str]) -> list[LaunchedDeployment]:
    """Each deployment as its run left it: state, URLs (named ones first), last error."""
    rows: list[LaunchedDeployment] = []
    with session_scope() as session:
        for dep_id in deployment_ids:
            dep = session.get(Deployment, dep_id)
            if dep is None:
                continue
            edge = session.get(Edge, dep.edge_id)
            version = session.get(ApplicationVersion, dep.version_id)
            assert edge is not None and version is not None
            containers = containers_of(session, deployment_id=dep_id)
            urls = list(named_urls(version, edge, containers).values())
            urls += [u for c in containers for u in c.urls if u not in urls]
            rows.append(LaunchedDeployment(
                deployment_id=dep_id, edge=edge.name, state=dep.state, urls=urls,
                last_error=dep.last_error, run_url=ui_link(dep) if dep.flow_run_id else None))
    return rows


@task(name="publish-launch-report", retries=2, retry_delay_seconds=1, cache_policy=NONE)
def publish_launch_report(plan: LaunchPlan, rows: list[LaunchedDeployment]) -> str:
    """The launch's markdown artifact (key ``launch-<application>``): each deployment with
    its state, URLs and run, readable without the CLI."""
    key = "launch-" + re.sub(r"[^a-z0-9-]+", "-", plan.application.lower()).strip("-")
    create_markdown_artifact(markdown=report(plan, rows), key=key,
                             description=launch_run_name(plan.application, plan.version,
                                                         plan.edges, None))
    return key
