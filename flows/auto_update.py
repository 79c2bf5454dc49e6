"""Flow `auto-update-groups`: a published version rolled out by each group that admits it.

Run by the ``edgefleet.application.published`` event (for that application's groups) and on
an interval (every group: a lost event, or a version published while a group was busy, is
caught). Each group with ``--auto-update`` on is claimed by a compare-and-set to UPDATING
towards the newest version its level admits among those published since it last looked
(``crud.claim_auto_update``): one rollout per group at a time, and a version is never tried
twice by itself. A HALTED group is left for an operator. Each claimed group then gets its
own run of the served `rollout-group` deployment, with the group's stored rollout options.
"""

from __future__ import annotations

from typing import Annotated

from prefect import flow, get_run_logger, runtime

from edgefleet.models.forms import form
from edgefleet.tasks.groups import (
    announce_group_halt,
    claim_auto_updates,
    halt_unstarted_rollout,
    submit_group_rollout,
)


def _run_name() -> str:
    params = runtime.flow_run.parameters
    application, version = params.get("application"), params.get("version")
    if application:
        return f"auto-update {application} {version or ''}".rstrip()
    return "auto-update groups"


@flow(name="auto-update-groups", flow_run_name=_run_name)
def auto_update_groups(
    application: Annotated[str | None, form(
        "Application", "only the groups of this application; empty: every group")] = None,
    version: Annotated[str | None, form(
        "Version", "the version just published (names the run; each group takes the newest "
                   "its auto-update admits)")] = None,
) -> list[str]:
    """Start the rollouts auto-update admits (of ``application``'s groups, or of every
    group); returns the groups whose rollout was submitted. ``version``: the published one
    that ran this (for the run's name; each group takes the newest it admits)."""
    logger = get_run_logger()
    run_id = str(runtime.flow_run.id or "here")
    started = []
    for step in claim_auto_updates(application or None):
        logger.info("group %s: %s", step.group, step.reason)
        if not step.claimed:
            continue
        try:
            submit_group_rollout(step, f"{run_id}:{step.group}")
        except Exception as exc:
            reason = (f"the auto-update rollout to {step.to_version} did not start: "
                      f"{str(exc) or type(exc).__name__}")
            logger.error("group %s: %s", step.group, reason)
            halt_unstarted_rollout(step.group, reason)
            announce_group_halt(step.group, f"{run_id}:{step.group}", True, return_state=True)
            continue
        started.append(step.group)
    if version:
        logger.info("%s %s: %d group rollout(s) started", application, version, len(started))
    return started
