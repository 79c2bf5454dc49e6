"""Image references (``[registry/]repo[:tag][@digest]``) split the way the registry API
wants them. Pure: the registry client and the update rules both parse with it.
"""

from __future__ import annotations

from dataclasses import dataclass

DOCKER_HUB = "registry-1.docker.io"


@dataclass(frozen=True)
class ImageRef:
    """An image reference split the way the registry API wants it."""

    registry: str
    repository: str
    tag: str | None
    digest: str | None

    @property
    def reference(self) -> str:
        """What goes after ``/manifests/``: the digest when pinned, else the tag."""
        return self.digest or self.tag or "latest"


def parse_reference(ref: str) -> ImageRef:
    """``[registry/]repo[:tag][@digest]`` with Docker Hub's defaults (``library/``)."""
    name, _, digest = ref.partition("@")
    first, _, rest = name.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        registry, path = first, rest
    else:
        registry, path = DOCKER_HUB, name
    tag = None
    if ":" in path.rsplit("/", 1)[-1]:
        path, tag = path.rsplit(":", 1)
    if registry in (DOCKER_HUB, "docker.io", "index.docker.io"):
        registry = DOCKER_HUB
        if "/" not in path:
            path = f"library/{path}"
    if not tag and not digest:
        tag = "latest"
    return ImageRef(registry=registry, repository=path, tag=tag, digest=digest or None)
