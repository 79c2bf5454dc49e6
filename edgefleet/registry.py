"""Thin client of the registry v2 API (distribution): manifest digests and tag lists.

One method per endpoint. Token auth (``WWW-Authenticate: Bearer``) and basic auth are
answered when the registry asks, by an ``httpx.Auth`` (:class:`RegistryAuth`); tag lists
follow the ``Link`` header (``Response.links``). Every request is counted (token requests
too), so a sweep can prove it asked once per unique reference.
"""

from __future__ import annotations

import base64
import ipaddress
import re
from collections.abc import Generator
from typing import Any

import httpx
from pydantic import BaseModel, SecretStr

from edgefleet.errors import RegistryError
from edgefleet.image_refs import ImageRef, parse_reference

MANIFEST_TYPES = ", ".join([
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
])
def is_insecure(registry: str) -> bool:
    """Loopback registries speak plain HTTP (as Docker itself allows them to)."""
    host = registry.rsplit(":", 1)[0] if registry.count(":") == 1 else registry
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class Credentials(BaseModel):
    """A registry login; the password never reaches a log line or a record."""

    username: str
    password: SecretStr
    registry: str | None = None

    def auth_config(self) -> dict[str, str]:
        """The form the Engine's pull endpoint takes."""
        return {"username": self.username, "password": self.password.get_secret_value()}


class RegistryAuth(httpx.Auth):
    """The registry's challenge answered: ``Basic`` with the registry's credentials, or the
    ``Bearer`` token dance (a token from the realm it names, for the scope it names, asked
    with the credentials when there are some). A token is kept per registry and repository
    and sent up front next time, so a repository costs one challenge per client."""

    requires_response_body = True  # the token service's answer is read in the flow

    def __init__(self, credentials: dict[str, Credentials]) -> None:
        self._credentials = credentials
        self._tokens: dict[tuple[str, str], str] = {}

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response,
                                                             None]:
        registry = request.url.netloc.decode()
        repository = _repository_of(request.url.path)
        key = (registry, repository)
        if key in self._tokens:
            request.headers["Authorization"] = self._tokens[key]
        response = yield request
        if response.status_code != 401:
            return
        challenge = response.headers.get("WWW-Authenticate", "")
        scheme, params = _parse_challenge(challenge)
        creds = self._credentials.get(registry)
        if scheme == "basic":
            if creds is None:
                raise RegistryError(f"registry {registry} needs credentials")
            header = _basic(creds)
        elif scheme == "bearer" and "realm" in params:
            query = {"service": params.get("service", ""),
                     "scope": params.get("scope", f"repository:{repository}:pull")}
            ask = httpx.Request("GET", params["realm"], params=query,
                                headers={"Authorization": _basic(creds)} if creds else None)
            token_response = yield ask
            if token_response.status_code >= 400:
                raise RegistryError(f"registry {registry} refused a token "
                                    f"({token_response.status_code}): check the credentials")
            body: dict[str, Any] = token_response.json()
            header = f"Bearer {body.get('token') or body.get('access_token')}"
        else:
            raise RegistryError(f"registry {registry} asked for unsupported auth "
                                f"{challenge!r}")
        self._tokens[key] = header
        request.headers["Authorization"] = header
        yield request


class RegistryClient:
    """Registry v2 calls over one pooled httpx client; use it as a context manager."""

    def __init__(self, *, credentials: dict[str, Credentials] | None = None,
                 timeout: float = 10.0, transport: httpx.BaseTransport | None = None,
                 insecure: frozenset[str] = frozenset()) -> None:
        self.requests = 0
        self._insecure = insecure
        self._http = httpx.Client(timeout=timeout, transport=transport, trust_env=False,
                                  auth=RegistryAuth(credentials or {}),
                                  event_hooks={"request": [self._count]},
                                  follow_redirects=True)

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self._http.close()

    def _count(self, request: httpx.Request) -> None:
        self.requests += 1

    def _base(self, registry: str) -> str:
        scheme = "http" if registry in self._insecure or is_insecure(registry) else "https"
        return f"{scheme}://{registry}/v2"

    def manifest_digest(self, ref: str) -> str:
        """``HEAD /v2/<repo>/manifests/<tag>`` → the digest the tag points at now."""
        image = parse_reference(ref)
        url = f"{self._base(image.registry)}/{image.repository}/manifests/{image.reference}"
        resp = self._send("HEAD", url, image, headers={"Accept": MANIFEST_TYPES})
        digest = resp.headers.get("Docker-Content-Digest")
        if not digest:
            raise RegistryError(f"registry {image.registry} sent no digest for {ref}")
        return digest

    def tags(self, ref: str) -> list[str]:
        """``GET /v2/<repo>/tags/list``, following the ``Link: <...>; rel="next"`` pages."""
        image = parse_reference(ref)
        url: httpx.URL | None = httpx.URL(
            f"{self._base(image.registry)}/{image.repository}/tags/list")
        found: list[str] = []
        while url is not None:
            resp = self._send("GET", url, image)
            found.extend(resp.json().get("tags") or [])
            following = resp.links.get("next", {}).get("url")
            url = resp.url.join(following) if following else None
        return found

    def _send(self, method: str, url: str | httpx.URL, image: ImageRef,
              headers: dict[str, str] | None = None) -> httpx.Response:
        try:
            resp = self._http.request(method, url, headers=headers)
        except httpx.HTTPError as exc:
            raise RegistryError(
                f"registry {image.registry} did not answer for {image.repository}: {exc}"
            ) from exc
        if resp.status_code == 404:
            raise RegistryError(f"{image.repository}:{image.reference} not found in registry "
                                f"{image.registry}")
        if resp.status_code >= 400:
            raise RegistryError(f"registry {image.registry} answered {resp.status_code} for "
                                f"{image.repository}:{image.reference}")
        return resp


def _basic(creds: Credentials) -> str:
    pair = f"{creds.username}:{creds.password.get_secret_value()}".encode()
    return f"Basic {base64.b64encode(pair).decode()}"


def _repository_of(path: str) -> str:
    """``/v2/<repository>/manifests/<ref>`` (or ``/tags/list``, ``/blobs/...``) → repository."""
    match = re.match(r"^/v2/(.+?)/(?:manifests|tags|blobs)/", path)
    return match.group(1) if match else ""


def _parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    scheme, _, rest = header.partition(" ")
    params = dict(re.findall(r'(\w+)="([^"]*)"', rest))
    return scheme.lower(), params
