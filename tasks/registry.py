"""Tasks of the image-update check: the images deployments run, and one registry check per
unique reference."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NONE

from edgefleet import crud, image_updates
from edgefleet.db import session_scope
from edgefleet.image_refs import parse_reference
from edgefleet.registry import RegistryClient


@task(name="collect-running-images", retries=2, retry_delay_seconds=1, cache_policy=NONE)
def collect_running_images() -> list[image_updates.RunningImage]:
    with session_scope() as session:
        return crud.running_images(session)


@task(name="check-reference", retries=2, retry_delay_seconds=2, cache_policy=NONE,
      task_run_name="check {ref}")
def check_reference(ref: str) -> image_updates.RefCheck:
    """A semantic-version tag: list the tags; any other tag: HEAD its manifest."""
    tag = parse_reference(ref).tag
    with RegistryClient() as client:
        if image_updates.parse_tag(tag) is not None:
            assert tag is not None
            newer = image_updates.newest_tag(tag, client.tags(ref))
            return image_updates.RefCheck(ref=ref, newer_tag=newer, requests=client.requests)
        digest = client.manifest_digest(ref)
        return image_updates.RefCheck(ref=ref, digest=digest, requests=client.requests)
