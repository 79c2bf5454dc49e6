"""Flow `check-image-updates`: one registry check per unique image reference, fleet-wide.

Deployments whose image moved (or has a newer semantic-version tag) are marked "update
available" and their operator is notified once per (deployment, digest or tag).
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger

from edgefleet import image_updates
from edgefleet.errors import EdgefleetError
from edgefleet.tasks.records import notify_operator
from edgefleet.tasks.registry import check_reference, collect_running_images


@flow(name="check-image-updates")
def check_image_updates() -> dict[str, Any]:
    """One sweep; returns counts (references, registry requests, new notifications)."""
    logger = get_run_logger()
    running = collect_running_images()
    refs = sorted({image.ref for image in running})
    logins = {image.ref: image.registry_secret for image in running if image.registry_secret}
    futures = {ref: check_reference.submit(ref, logins.get(ref)) for ref in refs}
    checks: dict[str, image_updates.RefCheck] = {}
    errors: list[str] = []
    for ref, future in futures.items():
        try:
            checks[ref] = future.result()
        except EdgefleetError as exc:  # refused, unreachable, or its login is gone: this
            errors.append(str(exc))    # reference only, the others are still checked
            checks[ref] = image_updates.RefCheck(ref=ref, error=str(exc))
    found = image_updates.findings(running, checks)
    created = 0
    for item in found:
        created += notify_operator(item.deployment_id, reason="image", key=item.key,
                                   to_version=_version_of(running, item),
                                   message=item.message, command=item.command,
                                   flag=item.message)
    summary = {
        "references": len(refs),
        "registry_requests": sum(c.requests for c in checks.values()),
        "updates_available": [f.model_dump() for f in found],
        "notifications": created,
        "errors": errors,
    }
    logger.info("checked %d reference(s) with %d registry request(s): %d update(s), %d new "
                "notification(s)", summary["references"], summary["registry_requests"],
                len(found), created)
    return summary


def _version_of(running: list[image_updates.RunningImage],
                          item: image_updates.Finding) -> str:
    """An image update keeps the application version: from and to are the same."""
    return next(r.version for r in running if r.deployment_id == item.deployment_id)
