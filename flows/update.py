"""Flow `update-application`: UPDATING → pull → recreate only what changed → soak → STARTED.

No user of ours loses a running service to an update: every new image is pulled before a
running container is touched, and if the new containers fail to start, crash-loop or stay
unhealthy during the soak, the previous spec and digests are restored and the deployment
ends STARTED on its previous version with the failure as its last error.
"""

from __future__ import annotations

from typing import Annotated, Any

from prefect import flow, get_run_logger, runtime
from prefect.concurrency.sync import concurrency

from edgefleet.errors import DeploymentFailed
from edgefleet.flows.deploy import log_allowance
from edgefleet.models.forms import form
from edgefleet.models.inputs import AppKind
from edgefleet.models.plans import DeployPlan, ObservedContainer, RenderedSpec
from edgefleet.models.run_names import update_run_name
from edgefleet.models.states import Action, DeploymentState
from edgefleet.settings import get_settings
from edgefleet.tasks.compose import (
    compose_restore,
    compose_up,
    render_compose,
    render_stack,
    resolve_compose,
    service_images,
    stack_deploy,
    stack_restore,
)
from edgefleet.tasks.containers import container_spec, observe_containers, wait_for_containers
from edgefleet.tasks.images import load_registry_login, pull_image
from edgefleet.tasks.limits import ensure_limit, update_limit_name
from edgefleet.tasks.records import (
    current_state,
    load_plan,
    move_state,
    notify_operator,
    record_containers,
    record_spec,
    restore_spec,
    set_version,
)
from edgefleet.tasks.runs import name_run
from edgefleet.tasks.updates import (
    confirm_replacement,
    publish_update_report,
    replace_container,
    restore_container,
    soak_containers,
)
from edgefleet.update_plan import (
    Operation,
    desired_services,
    kept_versions,
    plan_update,
    render,
    running_services,
)

RUN_NAME = "update {deployment_id}"  # until the records say what and where


@flow(name="update-application", flow_run_name=RUN_NAME)
def update_application(
    deployment_id: Annotated[str, form(
        "Deployment", "the deployment's id (`edgefleet deployments`)")],
    version: Annotated[str | None, form(
        "Version", "the version to update to; empty: the deployment's own, re-checked")
    ] = None,
    force: Annotated[bool, form(
        "Force", "re-pull the images and restart the containers whose image changed, even "
                 "at the same version")] = False,
) -> str:
    """Update a deployment to ``version`` (default: its own version, re-checked)."""
    limit = ensure_limit(update_limit_name(deployment_id))
    settings = get_settings()
    with concurrency(limit, occupy=1, strict=True, timeout_seconds=settings.update_lock_wait):
        return _update(deployment_id, version, force)


def _update(deployment_id: str, version: str | None, force: bool) -> str:
    logger = get_run_logger()
    settings = get_settings()
    current = load_plan(deployment_id)
    target = load_plan(deployment_id, version=version)
    name_run(update_run_name(target.application, target.version, target.edge.name),
             placeholder=RUN_NAME.format(deployment_id=deployment_id))
    log_allowance(target)
    run_id = str(runtime.flow_run.id) if runtime.flow_run.id else None
    was = DeploymentState(current_state(deployment_id))
    was_error = was is DeploymentState.ERROR
    move_state(deployment_id, Action.UPDATE, flow_run_id=run_id, expect=was)

    # 1. Pull everything first: nothing running is touched if a pull fails.
    try:
        model = resolve_compose(target) if target.kind is not AppKind.IMAGE else None
        refs = sorted(set(service_images(model).values())) if model else [str(target.image)]
        login = load_registry_login(target.registry_secret) if target.registry_secret else None
        futures = {ref: pull_image.submit(target.edge, ref, always=force, credentials=login)
                   for ref in refs}
        digests = {ref: fut.result() for ref, fut in futures.items()}
        observed = observe_containers(target.edge, deployment_id)
    except Exception as exc:
        reason = f"update to {target.version} not started, nothing was changed: {exc}"
        _give_up(deployment_id, reason, was_error)
        _tell_failed(deployment_id, target.version, reason)
        publish_update_report(deployment_id, [_row("(all)", "-", None, None, "failed", reason)],
                              reason)
        raise

    ops = plan_update(running_services(observed), desired_services(target, model, digests))
    logger.info("update plan of %s:\n%s", deployment_id, render(ops))
    changed = [op.service for op in ops if op.changes]
    if not changed:
        return _finish(deployment_id, target, ops, "unchanged", "nothing changed")
    # An image-kind update keeps the old container, stopped, until the new one has held.
    kept_old = [current.container_name] if target.kind is AppKind.IMAGE else None

    # 2. Apply; 3. wait and soak; on any failure, roll back to the previous spec and digests.
    try:
        _apply(target, model, digests, ops)
        wait_for_containers(target.edge, deployment_id, settings.deploy_timeout,
                            expected=len(ops) - sum(op.action == "remove" for op in ops),
                            exclude=kept_old)
        soak_containers(target.edge, deployment_id, changed, settings.soak_seconds,
                        exclude=kept_old)
        if target.kind is AppKind.IMAGE:
            confirm_replacement(target.edge, target.container_name)
    except Exception as exc:
        reason = f"update to {target.version} failed and was rolled back: {exc}"
        logger.error(reason)
        _roll_back(current, deployment_id, reason, ops, was_error)
        raise
    return _finish(deployment_id, target, ops, "updated", "")


def _apply(target: DeployPlan, model: dict[str, Any] | None, digests: dict[str, str | None],
           ops: list[Operation]) -> None:
    """Record the new spec as current (the previous one stays its rollback target), then
    apply it."""
    kept = kept_versions(ops)
    if target.kind is AppKind.COMPOSE:
        assert model is not None
        spec = record_spec(target.deployment_id, render_compose(target, model, digests, kept),
                           resolved=model)
        compose_up(target.edge, target.project, spec, get_settings().deploy_timeout)
    elif target.kind is AppKind.SWARM:
        assert model is not None
        spec = record_spec(target.deployment_id, render_stack(target, model, digests, kept),
                           resolved=model)
        stack_deploy(target.edge, target.project, spec)
    else:
        assert target.image is not None
        spec = record_spec(target.deployment_id,
                           container_spec(target, digests.get(target.image)))
        replace_container(target.edge, **spec.container())


def _roll_back(current: DeployPlan, deployment_id: str, reason: str, ops: list[Operation],
               was_error: bool) -> None:
    """Back to the spec the records held when the update began (``current.applied``),
    whichever machine applied it; the records say it is current again."""
    logger = get_run_logger()
    try:
        restored = reapply(current, deployment_id, current.applied,
                           expected=sum(op.action != "create" for op in ops))
    except Exception as exc:
        full = f"{reason}; the rollback failed too: {exc}"
        logger.error(full)
        record_containers(deployment_id, observe_containers(current.edge, deployment_id))
        move_state(deployment_id, Action.FAIL, error=full, expect=DeploymentState.UPDATING)
        publish_update_report(deployment_id, _rows(ops, None, "failed", full), full)
        _tell_failed(deployment_id, current.version, full)
        return
    record_containers(deployment_id, restored)
    move_state(deployment_id, Action.FAIL if was_error else Action.UPDATED, error=reason,
               expect=DeploymentState.UPDATING)
    after = {o.service: o.digest for o in restored}
    publish_update_report(deployment_id, _rows(ops, after, "rolled back", reason), reason)
    notify_operator(deployment_id, reason="rollback", key=str(runtime.flow_run.id or reason),
                    to_version=current.version, message=reason,
                    command=f"edgefleet status {deployment_id}")


def reapply(plan: DeployPlan, deployment_id: str, previous: RenderedSpec | None, *,
            expected: int) -> list[ObservedContainer]:
    """The edge back on ``previous`` (a spec from the records, pinned digests), whichever
    machine applied it, and the records saying it is current again; an image goes back to
    its old container, kept stopped. Waits for ``expected`` containers."""
    if previous is None and plan.kind is not AppKind.IMAGE:
        raise DeploymentFailed("no previous spec is recorded to roll back to")
    if previous is not None:
        restore_spec(deployment_id, previous)
    if plan.kind is AppKind.COMPOSE:
        assert previous is not None
        compose_restore(plan.edge, plan.project, previous, get_settings().deploy_timeout)
    elif plan.kind is AppKind.SWARM:
        assert previous is not None
        stack_restore(plan.edge, plan.project, previous)
    else:
        restore_container(plan.edge, plan.container_name)
    return list(wait_for_containers(plan.edge, deployment_id, get_settings().deploy_timeout,
                                    expected=expected))


def _tell_failed(deployment_id: str, version: str, reason: str) -> None:
    """The operator hears of an update that failed (and could not be rolled back, or never
    started) once per run: a notice, and its `edgefleet.update.failed` event."""
    notify_operator(deployment_id, reason="failed", key=str(runtime.flow_run.id or reason),
                    to_version=version, message=reason,
                    command=f"edgefleet status {deployment_id}")


def _give_up(deployment_id: str, reason: str, was_error: bool) -> None:
    """Back to where we were (STARTED, or ERROR) with the reason; nothing was touched."""
    move_state(deployment_id, Action.FAIL if was_error else Action.UPDATED, error=reason,
               expect=DeploymentState.UPDATING)


def _finish(deployment_id: str, target: DeployPlan, ops: list[Operation], outcome: str,
            note: str) -> str:
    observed = observe_containers(target.edge, deployment_id)
    record_containers(deployment_id, observed)
    set_version(deployment_id, target.version)
    state = move_state(deployment_id, Action.UPDATED)
    after = {o.service: o.digest for o in observed}
    summary = f"update of {deployment_id[:12]} to {target.version}: {outcome}"
    publish_update_report(deployment_id, _rows(ops, after, outcome, note), summary)
    return state


def _rows(ops: list[Operation], after: dict[str, str | None] | None, outcome: str,
          reason: str) -> list[dict[str, str]]:
    """Report rows: changed services get the run's outcome, the others "unchanged"."""
    return [_row(op.service, op.container_before or "-", op.digest_before,
                 (after or {}).get(op.service, op.digest_before),
                 outcome if op.changes else "unchanged",
                 (reason or op.cause) if op.changes else "unchanged")
            for op in ops]


def _row(service: str, container: str, before: str | None, after: str | None, outcome: str,
         reason: str) -> dict[str, str]:
    return {"service": service, "container before": container,
            "digest before": before or "-", "digest after": after or "-",
            "outcome": outcome, "reason": reason}


