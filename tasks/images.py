"""Images on an edge: pull (streamed, failing on an error chunk), skip what is cached."""

from __future__ import annotations

import docker.errors
from prefect import get_run_logger, task
from prefect.cache_policies import NONE

from edgefleet import registry_secrets
from edgefleet.edge_calls import on_edge
from edgefleet.engine import engine_client
from edgefleet.errors import EdgeUnreachable, ImagePullError
from edgefleet.models.connections import EngineConnection
from edgefleet.registry import Credentials
from edgefleet.settings import get_settings
from edgefleet.tasks.retry import unless_final


@task(name="load-registry-login", retries=2, retry_delay_seconds=1, cache_policy=NONE,
      retry_condition_fn=unless_final, task_run_name="registry login {name}")
def load_registry_login(name: str) -> Credentials:
    """The login in Prefect Secret block ``name`` (the password stays a SecretStr)."""
    return registry_secrets.load_registry_login(name)


def split_reference(ref: str) -> tuple[str, str]:
    """``repo[:tag][@digest]`` → (repo, tag or digest) for the pull endpoint."""
    if "@" in ref:
        repo, digest = ref.split("@", 1)
        return repo, digest
    last = ref.rsplit("/", 1)[-1]
    if ":" in last:
        repo, tag = ref.rsplit(":", 1)
        return repo, tag
    return ref, "latest"


def repo_digest(attrs: dict[str, object], ref: str) -> str | None:
    """The registry digest (sha256:...) of a local image, for the repository of ``ref``."""
    repo = split_reference(ref)[0]
    digests = attrs.get("RepoDigests") or []
    assert isinstance(digests, list)
    for item in digests:
        name, _, digest = str(item).partition("@")
        if name == repo:
            return digest
    return str(digests[0]).partition("@")[2] if digests else None


@task(name="pull-image", retries=2, retry_delay_seconds=3, cache_policy=NONE,
      task_run_name="pull {ref} on {conn.name}")
@on_edge
def pull_image(
    conn: EngineConnection,
    ref: str,
    always: bool = False,
    credentials: Credentials | None = None,
) -> str | None:
    """Make ``ref`` present on the edge and return its registry digest.

    Skipped when the image is cached, unless ``always``. The streamed pull is read to the end
    and any error chunk fails the task (the SDK's high-level pull can swallow those).
    """
    logger = get_run_logger()
    timeout = get_settings().pull_timeout
    with engine_client(conn, timeout=timeout) as client:
        if not always:
            try:
                image = client.images.get(ref)
            except docker.errors.ImageNotFound:
                pass
            else:
                logger.info("%s is cached on %s; not pulled", ref, conn.name)
                return repo_digest(image.attrs, ref)
        repo, tag = split_reference(ref)
        auth = credentials.auth_config() if credentials else None
        try:
            for chunk in client.api.pull(repo, tag=tag, stream=True, decode=True,
                                         auth_config=auth):
                if "error" in chunk:
                    raise ImagePullError(_pull_error(ref, conn, str(chunk["error"])))
        except docker.errors.APIError as exc:
            raise ImagePullError(_pull_error(ref, conn, exc.explanation or str(exc))) from exc
        except docker.errors.DockerException as exc:
            raise EdgeUnreachable(f"edge {conn.name}: pulling {ref} failed: {exc}") from exc
        digest = repo_digest(client.images.get(ref).attrs, ref)
        logger.info("pulled %s on %s (%s)", ref, conn.name, digest)
        return digest


def _pull_error(ref: str, conn: EngineConnection, detail: str) -> str:
    hint = ""
    low = detail.lower()
    if "not found" in low or "manifest unknown" in low:
        hint = " (is the image pushed under that name and tag? fix the version's image reference)"
    elif "unauthorized" in low or "denied" in low:
        hint = " (the registry refused: check the registry credentials)"
    elif "connection refused" in low or "no such host" in low or "timeout" in low:
        hint = " (the registry did not answer the edge: is it running and reachable from there?)"
    return f"cannot pull {ref} on edge {conn.name}: {detail.strip()}{hint}"
