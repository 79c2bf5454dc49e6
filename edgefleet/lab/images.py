"""Sample application images, built from Debian's busybox-static and pushed to the lab registry.

No image can be pulled from the internet here, so: a rootfs tar holding ``/bin/busybox`` and
its applet links is imported as a base image, and each sample is a classic-builder Dockerfile
``FROM`` that base. Images:

- ``edgefleet/hello`` 1.0.0, 1.1.0, 2.0.0 and ``latest`` (= 2.0.0, same digest): busybox
  httpd on port 8080 serving a page that names the version, with a HEALTHCHECK. Env
  ``HELLO_CRASH=1`` makes it exit 1 at once; ``HELLO_UNHEALTHY=1`` keeps it serving while
  its healthcheck fails (both for failure and rollback tests).
- ``edgefleet/ticker:1.0.0``: a worker printing ``tick 1``, ``tick 2``, ... once a second.
"""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import tarfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker
import docker.errors
import httpx
import requests.exceptions

from edgefleet.engine import engine_client
from edgefleet.errors import LabError
from edgefleet.models.connections import EngineConnection

BUSYBOX = Path("/bin/busybox")
BASE_IMAGE = "edgefleet-lab/busybox:base"
HELLO_VERSIONS = ("1.0.0", "1.1.0", "2.0.0")
HELLO_LATEST = "2.0.0"
BUILD_TIMEOUT = 300.0
MANIFEST_ACCEPT = ", ".join(
    [
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.oci.image.index.v1+json",
    ]
)
FIXED_MTIME = 1_700_000_000  # a fixed time makes the base layer byte-identical on every build

HELLO_SH = """\
#!/bin/sh
# edgefleet/hello: busybox httpd serving a page that names this image's version.
if [ "$HELLO_CRASH" = "1" ]; then
  echo "hello $HELLO_VERSION: HELLO_CRASH=1, exiting with status 1" >&2
  exit 1
fi
if [ "$HELLO_UNHEALTHY" = "1" ]; then
  echo "hello $HELLO_VERSION: HELLO_UNHEALTHY=1, the healthcheck will fail"
fi
echo "hello $HELLO_VERSION: serving /www on port 8080"
trap 'kill "$pid" 2>/dev/null; exit 0' TERM INT
busybox httpd -f -p 8080 -h /www &
pid=$!
wait "$pid"
"""

TICKER_SH = """\
#!/bin/sh
# edgefleet/ticker: a worker that logs one numbered line per second.
trap 'exit 0' TERM INT
i=0
while true; do
  i=$((i + 1))
  echo "tick $i"
  sleep 1 &
  wait $!
done
"""

HEALTHCHECK = (
    "HEALTHCHECK --interval=2s --timeout=2s --retries=3 "
    'CMD [ "$HELLO_UNHEALTHY" != "1" ] && wget -q -O /dev/null http://127.0.0.1:8080/ '
    "|| exit 1"
)  # no `wget -T`: busybox-static 1.35's wget segfaults with it; --timeout bounds the check


@dataclass(frozen=True)
class SampleImage:
    """One image to build: its repository, version, the tags to push, its build context."""

    repo: str
    version: str
    tags: tuple[str, ...]
    files: dict[str, str] = field(default_factory=dict)  # path in context -> text

    def ref(self, registry: str, tag: str | None = None) -> str:
        return f"{registry}/{self.repo}:{tag or self.version}"


def hello_page(version: str) -> str:
    return (
        "<!doctype html>\n<html><head><title>edgefleet/hello</title></head><body>\n"
        f"<h1>hello from edgefleet/hello {version}</h1>\n</body></html>\n"
    )


def sample_images(base: str = BASE_IMAGE) -> list[SampleImage]:
    """What the lab builds (pure: the Dockerfiles and files, no engine needed)."""
    images = []
    for version in HELLO_VERSIONS:
        dockerfile = "\n".join(
            [
                f"FROM {base}",
                "COPY index.html /www/index.html",
                "COPY hello.sh /hello.sh",
                f"ENV HELLO_VERSION={version}",
                'LABEL org.opencontainers.image.title="edgefleet/hello" '
                f'org.opencontainers.image.version="{version}"',
                "EXPOSE 8080",
                HEALTHCHECK,
                'ENTRYPOINT ["/bin/sh", "/hello.sh"]',
                "",
            ]
        )
        tags = (version, "latest") if version == HELLO_LATEST else (version,)
        images.append(
            SampleImage(
                "edgefleet/hello", version, tags,
                {"Dockerfile": dockerfile, "index.html": hello_page(version),
                 "hello.sh": HELLO_SH},
            )
        )
    ticker = "\n".join(
        [
            f"FROM {base}",
            "COPY ticker.sh /ticker.sh",
            'LABEL org.opencontainers.image.title="edgefleet/ticker" '
            'org.opencontainers.image.version="1.0.0"',
            'ENTRYPOINT ["/bin/sh", "/ticker.sh"]',
            "",
        ]
    )
    images.append(
        SampleImage("edgefleet/ticker", "1.0.0", ("1.0.0",),
                    {"Dockerfile": ticker, "ticker.sh": TICKER_SH})
    )
    return images


# ---------------------------------------------------------------- registry look-ups


def manifest_digest(registry: str, repo: str, tag: str, timeout: float = 10.0) -> str | None:
    """The registry's digest for ``repo:tag`` (``Docker-Content-Digest``), None if absent."""
    try:
        resp = httpx.head(
            f"http://{registry}/v2/{repo}/manifests/{tag}",
            headers={"Accept": MANIFEST_ACCEPT}, timeout=timeout, trust_env=False,
        )
    except httpx.HTTPError as exc:
        raise LabError(f"the lab registry {registry} did not answer: {exc}") from exc
    if resp.status_code == 404:
        return None
    if resp.status_code != 200:
        raise LabError(f"the lab registry {registry} answered {resp.status_code} for {repo}:{tag}")
    return resp.headers.get("Docker-Content-Digest")


def samples_hash(images: list[SampleImage]) -> str:
    """A hash of every sample's build context: when the definitions change, rebuild."""
    digest = hashlib.sha256()
    for image in images:
        digest.update(json.dumps([image.repo, image.version, image.tags, image.files],
                                 sort_keys=True).encode())
    return digest.hexdigest()[:16]


def missing_images(registry: str, images: list[SampleImage]) -> list[SampleImage]:
    """Images with at least one tag the registry does not have yet."""
    return [
        image for image in images
        if any(manifest_digest(registry, image.repo, tag) is None for tag in image.tags)
    ]


# ---------------------------------------------------------------- building and pushing


def busybox_applets(busybox: Path = BUSYBOX) -> list[str]:
    try:
        out = subprocess.run(
            [str(busybox), "--list"], capture_output=True, text=True, timeout=10, check=True
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise LabError(
            f"{busybox} --list failed ({exc}); apt-get install -y busybox-static"
        ) from exc
    return [a for a in out.stdout.split() if a and "/" not in a and a != "busybox"]


def rootfs_tar(busybox: Path = BUSYBOX) -> bytes:
    """A minimal root filesystem: /bin/busybox, a link per applet, /etc/passwd, /tmp, /www."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:

        def add_dir(name: str, mode: int = 0o755) -> None:
            info = tarfile.TarInfo(name)
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, mode, FIXED_MTIME
            tar.addfile(info)

        def add_file(name: str, data: bytes, mode: int = 0o644) -> None:
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), mode, FIXED_MTIME
            tar.addfile(info, io.BytesIO(data))

        for name in ("bin", "etc", "root", "proc", "sys", "dev", "var", "www"):
            add_dir(name, 0o700 if name == "root" else 0o755)
        add_dir("tmp", 0o1777)
        add_file("bin/busybox", busybox.read_bytes(), 0o755)
        for applet in busybox_applets(busybox):
            link = tarfile.TarInfo(f"bin/{applet}")
            link.type, link.linkname, link.mode, link.mtime = (
                tarfile.SYMTYPE, "busybox", 0o777, FIXED_MTIME,
            )
            tar.addfile(link)
        add_file("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\n"
                 b"nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n")
        add_file("etc/group", b"root:x:0:\nnogroup:x:65534:\n")
    return buf.getvalue()


def context_tar(files: dict[str, str]) -> io.BytesIO:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, text in sorted(files.items()):
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, FIXED_MTIME
            tar.addfile(info, io.BytesIO(data))
    buf.seek(0)
    return buf


def ensure_base(client: docker.DockerClient) -> str:
    """Import the busybox base image on this engine once."""
    try:
        client.images.get(BASE_IMAGE)
        return BASE_IMAGE
    except docker.errors.ImageNotFound:
        pass
    repo, tag = BASE_IMAGE.rsplit(":", 1)
    result = client.api.import_image_from_data(rootfs_tar(), repository=repo, tag=tag)
    for chunk in _json_chunks(result):
        if "error" in chunk:
            raise LabError(f"importing the busybox base image failed: {chunk['error']}")
    client.images.get(BASE_IMAGE)
    return BASE_IMAGE


def _json_chunks(result: Any) -> Iterator[dict[str, Any]]:
    text = result.decode() if isinstance(result, bytes) else str(result or "")
    for line in text.splitlines():
        line = line.strip()
        if line:
            try:
                value = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(value, dict):
                yield value


def push(client: docker.DockerClient, repository: str, tag: str) -> str:
    """Push with the streamed API, failing on an error chunk; return the pushed digest."""
    digest = ""
    stream = client.api.push(repository, tag=tag, stream=True, decode=True, auth_config={})
    for chunk in stream:
        if chunk.get("error") or chunk.get("errorDetail"):
            detail = chunk.get("error") or chunk.get("errorDetail", {}).get("message")
            raise LabError(f"pushing {repository}:{tag} failed: {detail}")
        aux = chunk.get("aux")
        if isinstance(aux, dict) and aux.get("Digest"):
            digest = str(aux["Digest"])
    if not digest:
        raise LabError(f"pushing {repository}:{tag} reported no digest; see the edge's log")
    return digest


def build_and_push(
    client: docker.DockerClient, registry: str, image: SampleImage
) -> dict[str, str]:
    """Build one sample image and push all its tags; ``{tag: digest}``."""
    ref = image.ref(registry)
    try:
        client.images.build(
            fileobj=context_tar(image.files), custom_context=True, tag=ref, rm=True,
            forcerm=True, pull=False, timeout=int(BUILD_TIMEOUT),
        )
    except docker.errors.BuildError as exc:
        raise LabError(f"building {ref} failed: {exc.msg}") from exc
    digests = {}
    repository = f"{registry}/{image.repo}"
    for tag in image.tags:
        if tag != image.version:
            client.api.tag(ref, repository, tag=tag)
        digests[tag] = push(client, repository, tag)
    if len(set(digests.values())) != 1:
        raise LabError(f"tags of {ref} were pushed with different digests: {digests}")
    return digests


def ensure_sample_images(
    conn: EngineConnection, registry: str, progress: Callable[[str], None],
    built: str | None = None,
) -> str:
    """Build on ``conn`` and push what the registry lacks; return the samples' hash.

    ``built`` is the hash of what was pushed before: when the definitions changed since,
    everything is rebuilt (the registry's tags would otherwise be stale).
    """
    wanted = sample_images()
    current = samples_hash(wanted)
    todo = wanted if built not in (None, current) else missing_images(registry, wanted)
    if not todo:
        progress("sample images: already in the registry")
        return current
    try:
        with engine_client(conn, timeout=BUILD_TIMEOUT) as client:
            ensure_base(client)
            for image in todo:
                digests = build_and_push(client, registry, image)
                tags = ", ".join(image.tags)
                progress(f"sample image {image.repo} ({tags}) pushed: {digests[image.version]}")
    except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
        raise LabError(f"building sample images on {conn.name} failed: {exc}") from exc
    return current
