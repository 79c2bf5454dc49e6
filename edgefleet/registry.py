"""Thin client of the registry v2 API (distribution): manifest digests and tag lists.

One method per endpoint. Token auth (``WWW-Authenticate: Bearer``) and basic auth are
answered when the registry asks. Every request is counted, so a sweep can prove it asked
once per unique reference.
"""

from __future__ import annotations

import base64
import ipaddress
import re
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


class RegistryClient:
    """Registry v2 calls over one pooled httpx client; use it as a context manager."""

    def __init__(self, *, credentials: dict[str, Credentials] | None = None,
                 timeout: float = 10.0, transport: httpx.BaseTransport | None = None,
                 insecure: frozenset[str] = frozenset()) -> None:
        self.requests = 0
        self._credentials = credentials or {}
        self._tokens: dict[tuple[str, str], str] = {}
        self._insecure = insecure
        self._http = httpx.Client(timeout=timeout, transport=transport, trust_env=False,
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
        """``GET /v2/<repo>/tags/list`` (following ``Link`` pagination)."""
        image = parse_reference(ref)
        url: str | None = f"{self._base(image.registry)}/{image.repository}/tags/list"
        found: list[str] = []
        while url:
            resp = self._send("GET", url, image)
            found.extend(resp.json().get("tags") or [])
            url = _next_link(resp, self._base(image.registry).removesuffix("/v2"))
        return found

    def _send(self, method: str, url: str, image: ImageRef,
              headers: dict[str, str] | None = None) -> httpx.Response:
        headers = dict(headers or {})
        token = self._tokens.get((image.registry, image.repository))
        if token:
            headers["Authorization"] = token
        try:
            resp = self._http.request(method, url, headers=headers)
            if resp.status_code == 401:
                auth = self._authorize(resp, image)
                headers["Authorization"] = auth
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

    def _authorize(self, resp: httpx.Response, image: ImageRef) -> str:
        challenge = resp.headers.get("WWW-Authenticate", "")
        creds = self._credentials.get(image.registry)
        scheme, params = _parse_challenge(challenge)
        if scheme == "basic":
            if creds is None:
                raise RegistryError(f"registry {image.registry} needs credentials")
            pair = f"{creds.username}:{creds.password.get_secret_value()}".encode()
            header = f"Basic {base64.b64encode(pair).decode()}"
        elif scheme == "bearer" and "realm" in params:
            query = {"service": params.get("service", ""),
                     "scope": params.get("scope", f"repository:{image.repository}:pull")}
            auth = (httpx.BasicAuth(creds.username, creds.password.get_secret_value())
                    if creds else None)
            try:
                token_resp = self._http.get(params["realm"], params=query, auth=auth)
            except httpx.HTTPError as exc:
                raise RegistryError(f"token service of {image.registry} did not answer") from exc
            if token_resp.status_code >= 400:
                raise RegistryError(f"registry {image.registry} refused a token "
                                    f"({token_resp.status_code}): check the credentials")
            body: dict[str, Any] = token_resp.json()
            header = f"Bearer {body.get('token') or body.get('access_token')}"
        else:
            raise RegistryError(f"registry {image.registry} asked for unsupported auth "
                                f"{challenge!r}")
        self._tokens[(image.registry, image.repository)] = header
        return header


def _parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    scheme, _, rest = header.partition(" ")
    params = dict(re.findall(r'(\w+)="([^"]*)"', rest))
    return scheme.lower(), params


def _next_link(resp: httpx.Response, origin: str) -> str | None:
    link = resp.headers.get("Link")
    if not link:
        return None
    match = re.match(r"<([^>]+)>", link)
    if not match:
        return None
    target = match.group(1)
    return target if target.startswith("http") else origin + target
