"""Registry client: reference parsing, media types, token and basic auth (MockTransport)."""

from __future__ import annotations

import base64

import httpx
import pytest
from pydantic import SecretStr

from edgefleet.errors import RegistryError
from edgefleet.image_refs import parse_reference
from edgefleet.registry import MANIFEST_TYPES, Credentials, RegistryClient, is_insecure

DIGEST = "sha256:" + "a" * 64


@pytest.mark.parametrize(
    ("ref", "registry", "repo", "tag", "digest"),
    [
        ("nginx", "registry-1.docker.io", "library/nginx", "latest", None),
        ("nginx:1.25", "registry-1.docker.io", "library/nginx", "1.25", None),
        ("user/app:2", "registry-1.docker.io", "user/app", "2", None),
        ("127.0.0.1:5000/edgefleet/hello:1.0.0", "127.0.0.1:5000", "edgefleet/hello", "1.0.0",
         None),
        (f"ghcr.io/o/app@{DIGEST}", "ghcr.io", "o/app", None, DIGEST),
        (f"localhost/app:1@{DIGEST}", "localhost", "app", "1", DIGEST),
    ],
)
def test_parse_reference(ref: str, registry: str, repo: str, tag: str | None,
                         digest: str | None) -> None:
    image = parse_reference(ref)
    assert (image.registry, image.repository, image.tag, image.digest) == (
        registry, repo, tag, digest)


def test_loopback_registries_are_plain_http() -> None:
    assert is_insecure("127.0.0.1:5000") and is_insecure("localhost:5000")
    assert not is_insecure("ghcr.io") and not is_insecure("10.0.0.5:5000")


def test_head_manifest_accepts_docker_and_oci_types_and_counts_requests() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, headers={"Docker-Content-Digest": DIGEST})

    with RegistryClient(transport=httpx.MockTransport(handler)) as client:
        assert client.manifest_digest("127.0.0.1:5000/edgefleet/hello:latest") == DIGEST
        assert client.requests == 1
    (request,) = seen
    assert request.method == "HEAD"
    assert str(request.url) == "http://127.0.0.1:5000/v2/edgefleet/hello/manifests/latest"
    for media in ("application/vnd.oci.image.index.v1+json",
                  "application/vnd.docker.distribution.manifest.v2+json"):
        assert media in request.headers["Accept"]
    assert request.headers["Accept"] == MANIFEST_TYPES


def test_bearer_token_flow_with_credentials_and_cached_token() -> None:
    calls: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(f"{request.method} {request.url.path}")
        if request.url.host == "auth.example":
            expected = base64.b64encode(b"bob:s3cret").decode()
            assert request.headers["Authorization"] == f"Basic {expected}"
            assert request.url.params["scope"] == "repository:team/app:pull"
            return httpx.Response(200, json={"token": "T0K"})
        if request.headers.get("Authorization") != "Bearer T0K":
            return httpx.Response(401, headers={"WWW-Authenticate": (
                'Bearer realm="https://auth.example/token",service="reg.example",'
                'scope="repository:team/app:pull"')})
        if request.url.path.endswith("/tags/list"):
            return httpx.Response(200, json={"name": "team/app", "tags": ["1.0.0", "1.1.0"]})
        return httpx.Response(200, headers={"Docker-Content-Digest": DIGEST})

    creds = {"reg.example": Credentials(username="bob", password=SecretStr("s3cret"))}
    with RegistryClient(credentials=creds, transport=httpx.MockTransport(handler)) as client:
        assert client.manifest_digest("reg.example/team/app:1.0.0") == DIGEST
        assert client.tags("reg.example/team/app:1.0.0") == ["1.0.0", "1.1.0"]
    assert calls == ["HEAD /v2/team/app/manifests/1.0.0", "GET /token",
                     "HEAD /v2/team/app/manifests/1.0.0", "GET /v2/team/app/tags/list"]


def test_tags_follow_pagination() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.params.get("last") == "b":
            return httpx.Response(200, json={"tags": ["c"]})
        return httpx.Response(200, json={"tags": ["a", "b"]},
                              headers={"Link": '</v2/app/tags/list?n=2&last=b>; rel="next"'})

    with RegistryClient(transport=httpx.MockTransport(handler)) as client:
        assert client.tags("localhost:5000/app:1") == ["a", "b", "c"]


@pytest.mark.parametrize(
    ("status", "message"),
    [(404, "not found in registry"), (500, "answered 500")],
)
def test_errors_name_the_image(status: int, message: str) -> None:
    transport = httpx.MockTransport(lambda _r: httpx.Response(status))
    with RegistryClient(transport=transport) as client, pytest.raises(RegistryError,
                                                                         match=message):
        client.manifest_digest("127.0.0.1:5000/edgefleet/nope:1")


def test_unreachable_registry_is_a_registry_error() -> None:
    with RegistryClient(timeout=2) as client, pytest.raises(RegistryError, match="did not answer"):
        client.manifest_digest("127.0.0.1:1/edgefleet/hello:1.0.0")
