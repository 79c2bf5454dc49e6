"""Deployments: create, run (as a job), inspect, stop and delete, plus their logs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import semver
from sqlmodel import Session, col, select

from edgefleet import parameters as P
from edgefleet import server
from edgefleet.crud import (
    check_launch,
    containers_of,
    delete_deployment_rows,
    get_version,
    latest_published,
)
from edgefleet.db import session_scope
from edgefleet.errors import InvalidInput, InvalidTransition, NotFound
from edgefleet.models.inputs import DeploymentCreate, check_semver
from edgefleet.models.policies import UpdatePolicy
from edgefleet.models.records import (
    Application,
    ApplicationVersion,
    AppliedSpec,
    Deployment,
    Edge,
    new_id,
)
from edgefleet.models.states import (
    DELETABLE,
    Action,
    DeploymentState,
    IllegalTransition,
    transition,
)
from edgefleet.record_views import deployment_view
from edgefleet.validation import validated

Progress = Callable[[str], None]


def find_deployment(session: Session, ref: str) -> Deployment:
    """A deployment by its id or a unique prefix of it (at least 4 characters)."""
    row = session.get(Deployment, ref)
    if row is not None:
        return row
    if len(ref) >= 4:
        rows = session.exec(select(Deployment).where(col(Deployment.id).startswith(ref))).all()
        if len(rows) == 1:
            return rows[0]
        if len(rows) > 1:
            raise InvalidInput(f"deployment id prefix {ref!r} is ambiguous; give more characters")
    raise NotFound(f"no deployment {ref!r} (see `edgefleet deployments`)")


def create_deployment(
    application: str,
    edge: str,
    *,
    version: str | None = None,
    env: list[str] | dict[str, str] | None = None,
    allow_unpublished: bool = False,
    policy: UpdatePolicy | dict[str, Any] | None = None,
) -> Deployment:
    """A CREATED deployment of ``application`` (newest published version by default), with
    its update policy (default: notified of every newer release but prereleases).

    Refused before anything is recorded: a required parameter of the version not set (each
    named, with its message) and an ``env`` key the version does not know (with the closest
    known name). A sensitive parameter's value goes to a Prefect Secret block; the record
    keeps the block's name.
    """
    spec = validated(DeploymentCreate, application=application, edge=edge, version=version,
                     env=env or {})
    rules = _policy(policy)
    with session_scope() as session:
        found = check_launch(session, application=spec.application, edges=[spec.edge],
                             version=spec.version, env=spec.env,
                             allow_unpublished=allow_unpublished)
        app, row, target, params = found.application, found.version, found.edges[0], found.params
        assert app.id is not None and row.id is not None and target.id is not None
        ids = (app.id, row.id, target.id)
    dep_id = new_id()
    secret = {k: v for k, v in spec.env.items() if k in P.sensitive_names(params)}
    env = dict(spec.env)
    saved: dict[str, str] = {}  # each block's name, from just before it is saved
    try:
        if secret:
            from edgefleet import parameter_secrets  # Prefect: only when there is a secret

            parameter_secrets.save_values(dep_id, secret, into=saved)
            env.update(saved)
        with session_scope() as session:
            dep = Deployment(id=dep_id, application_id=ids[0], version_id=ids[1],
                             edge_id=ids[2], env=env, policy=rules.model_dump(mode="json"))
            session.add(dep)
    except Exception:
        if saved:
            parameter_secrets.delete_values(saved, dep_id)
        raise
    return dep


def start_deployment(ref: str, *, wait: bool = True, progress: Progress | None = None
                     ) -> dict[str, Any]:
    """Run flow `deploy-application` for a CREATED or STOPPED deployment."""
    dep_id = _check_action(ref, Action.START)
    from edgefleet import jobs  # Prefect: only for the commands that run a flow

    jobs.run_flow("deploy-application", {"deployment_id": dep_id}, wait=wait,
                  deployment_id=dep_id, progress=progress)
    return deployment_status(dep_id)


def deploy(
    application: str,
    edge: str,
    *,
    version: str | None = None,
    env: list[str] | dict[str, str] | None = None,
    allow_unpublished: bool = False,
    policy: UpdatePolicy | dict[str, Any] | None = None,
    wait: bool = True,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Create a deployment and start it: the CLI's `edgefleet deploy`."""
    dep = create_deployment(application, edge, version=version, env=env,
                            allow_unpublished=allow_unpublished, policy=policy)
    return start_deployment(dep.id, wait=wait, progress=progress)


def _policy(given: UpdatePolicy | dict[str, Any] | None) -> UpdatePolicy:
    if isinstance(given, UpdatePolicy):
        return given
    return validated(UpdatePolicy, **(given or {}))


def set_policy(ref: str, **changes: Any) -> dict[str, Any]:
    """Change some of a deployment's update policy (``notify``, ``prereleases``); the rest
    stays. Returns the policy now."""
    with session_scope() as session:
        dep = find_deployment(session, ref)
        rules = _policy({**dep.policy, **changes})
        dep.policy = rules.model_dump(mode="json")
        session.add(dep)
        return dep.policy


def stop_deployment(ref: str, *, remove_volumes: bool = False, wait: bool = True,
                    progress: Progress | None = None) -> dict[str, Any]:
    """Run flow `stop-application`: containers removed, volumes only when asked."""
    dep_id = _check_action(ref, Action.STOP)
    from edgefleet import jobs

    jobs.run_flow("stop-application", {"deployment_id": dep_id,
                                       "remove_volumes": remove_volumes},
                  wait=wait, deployment_id=dep_id, progress=progress)
    return deployment_status(dep_id)


def update_deployment(
    ref: str,
    *,
    to: str | None = None,
    force: bool = False,
    allow_unpublished: bool = False,
    wait: bool = True,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Run flow `update-application` (to ``to``, default the newest published version).

    Refused, with nothing changed: an unknown or unpublished version (unless allowed), a
    change of application kind, a deployment not STARTED or ERROR (e.g. already updating),
    and an update to the version already running unless ``force`` (re-pull and restart what
    changed).
    """
    with session_scope() as session:
        dep = find_deployment(session, ref)
        try:
            transition(dep.state, Action.UPDATE)
        except IllegalTransition as exc:
            raise InvalidTransition(f"deployment {dep.id[:12]}: {exc}") from exc
        app = session.get(Application, dep.application_id)
        current = session.get(ApplicationVersion, dep.version_id)
        assert app is not None and current is not None
        if to is None:
            target = latest_published(session, application=app) or current
            if semver.Version.parse(target.version) < semver.Version.parse(current.version):
                target = current
        else:
            target = get_version(session, application=app, version=_semver(to))
            if not target.published and not allow_unpublished:
                raise InvalidInput(f"version {target.version} of {app.name!r} is not published: "
                                   "publish it or pass --allow-unpublished")
        if target.kind != current.kind:
            raise InvalidInput(f"cannot update a {current.kind} deployment to a {target.kind} "
                               f"version; deploy {app.name} {target.version} as a new deployment")
        if target.version == current.version and not force:
            raise InvalidInput(f"deployment {dep.id[:12]} already runs {app.name} "
                               f"{current.version}; pass --force to re-pull its images and "
                               "restart what changed")
        dep_id, version = dep.id, target.version
    from edgefleet import jobs

    jobs.run_flow("update-application",
                  {"deployment_id": dep_id, "version": version, "force": force},
                  wait=wait, deployment_id=dep_id, progress=progress)
    return deployment_status(dep_id)


def _semver(text: str) -> str:
    try:
        return check_semver(text)
    except ValueError as exc:
        raise InvalidInput(str(exc)) from exc


def delete_deployment(ref: str, *, force: bool = False) -> str | None:
    """Delete a CREATED or STOPPED deployment; ``force`` stops a running one first.

    When a forced stop fails (say the edge is gone for good) the record is still deleted and
    the returned warning says what may be left on the edge.
    """
    with session_scope() as session:
        dep = find_deployment(session, ref)
        dep_id, state = dep.id, DeploymentState(dep.state)
    warning: str | None = None
    deletable = {s.value for s in DELETABLE}
    if state not in DELETABLE:
        if not force:
            allowed = ", ".join(sorted(deletable))
            raise InvalidTransition(
                f"deployment {dep_id[:12]} is {state.value}; delete is allowed from {allowed}. "
                "Stop it first, or pass --force to stop and delete"
            )
        stop_deployment(dep_id, remove_volumes=True, wait=True)
        with session_scope() as session:
            stopped = find_deployment(session, dep_id)
            if stopped.state not in DELETABLE:
                deletable = {stopped.state}  # forced: as the failed stop left it, no other
                warning = (f"deployment {dep_id[:12]} could not be stopped "
                           f"({stopped.last_error}); "
                           f"its containers may remain on the edge (label "
                           f"io.edgefleet.deployment={dep_id})")
    with session_scope() as session:
        env = dict(find_deployment(session, dep_id).env)
        # compare-and-set: a run that started it meanwhile keeps it (and its rows)
        delete_deployment_rows(session, deployment_id=dep_id, states=deletable)
    if P.owned_references(env, dep_id):
        from edgefleet import parameter_secrets

        parameter_secrets.delete_values(env, dep_id)  # its sensitive values go with it
    from edgefleet.tasks.limits import update_limit_name

    left = forget_limit(update_limit_name(dep_id))
    return "; ".join(w for w in (warning, left) if w) or None


def forget_limit(name: str) -> str | None:
    """Delete Prefect concurrency limit ``name`` (one update per deployment, one rollout per
    group) with what it guarded, when a Prefect API answers: none is started for this. A
    limit left behind holds no slot; the warning returned says so."""
    api_url = server.reachable_api_url()
    if api_url is None:
        return None
    from edgefleet.tasks.limits import forget_limit as delete_limit

    try:
        delete_limit(name, api_url)
    except Exception as exc:  # noqa: BLE001 - the record is gone already; say what is left
        return f"the Prefect concurrency limit {name} is left ({exc}); it holds no slot"
    return None


def _check_action(ref: str, action: Action) -> str:
    with session_scope() as session:
        dep = find_deployment(session, ref)
        try:
            transition(dep.state, action)
        except IllegalTransition as exc:
            raise InvalidTransition(f"deployment {dep.id[:12]}: {exc}") from exc
        return dep.id


def deployment_status(ref: str) -> dict[str, Any]:
    with session_scope() as session:
        return _public(session, find_deployment(session, ref))


def list_deployments() -> list[dict[str, Any]]:
    with session_scope() as session:
        rows = session.exec(select(Deployment).order_by(col(Deployment.created_at))).all()
        return [_public(session, d) for d in rows]


def _public(session: Session, dep: Deployment) -> dict[str, Any]:
    app = session.get(Application, dep.application_id)
    version = session.get(ApplicationVersion, dep.version_id)
    edge = session.get(Edge, dep.edge_id)
    assert app is not None and version is not None and edge is not None
    applied = session.get(AppliedSpec, dep.spec_id) if dep.spec_id is not None else None
    return deployment_view(dep, application=app, version=version, edge=edge,
                           containers=containers_of(session, deployment_id=dep.id),
                           applied=applied)

