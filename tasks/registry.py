"""Tasks of the image-update check: the images deployments run, and one registry check per
unique reference."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NONE

from edgefleet import crud, image_updates, registry_secrets
from edgefleet.db import session_scope
from edgefleet.image_refs import parse_reference
from edgefleet.registry import RegistryClient
from edgefleet.tasks.retry import unless_final


@task(name="collect-running-images", retries=2, retry_delay_seconds=1, cache_policy=NONE)
def collect_running_images() -> list[image_updates.RunningImage]:
    with session_scope() as session:
        return crud.running_images(session)


@task(name="check-reference", retries=2, retry_delay_seconds=2, cache_policy=NONE,
      retry_condition_fn=unless_final, task_run_name="check {ref}")
def check_reference(ref: str, registry_secret: str | None = None) -> image_updates.RefCheck:
    """A semantic-version tag: list the tags; any other tag: HEAD its manifest. A private
    registry is asked with the login the version pulls with (``registry_secret``, the name
    of its Secret block: the password is read here and never passed around)."""
    image = parse_reference(ref)
    tag = image.tag
    credentials = ({image.registry: registry_secrets.load_registry_login(registry_secret)}
                   if registry_secret else {})
    with RegistryClient(credentials=credentials) as client:
        if image_updates.parse_tag(tag) is not None:
            assert tag is not None
            newer = image_updates.newest_tag(tag, client.tags(ref))
            return image_updates.RefCheck(ref=ref, newer_tag=newer, requests=client.requests)
        digest = client.manifest_digest(ref)
        return image_updates.RefCheck(ref=ref, digest=digest, requests=client.requests)
