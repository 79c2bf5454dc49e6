"""The telemetry sweep's Engine API client on ``httpx.AsyncClient``, for comparison only.

edgefleet reads edges through its own h11 client (:mod:`edgefleet.engine_api`); this is
the same client with httpx doing the HTTP (one ``AsyncClient`` per edge, its own TLS
context from the edge's CA, certificate and key, one keep-alive connection, ``trust_env``
off, the same timeouts), so ``bench/telemetry_sweep.py --client both`` measures both on the
same fake engine in one run. Measured here it costs four to five times the CPU per request
(httpx's URL and header models, anyio's TLS stream and cancel scopes on every read), which
is why edgefleet keeps h11.
"""

from __future__ import annotations

from typing import Any

import httpx

from edgefleet.engine_api import KEEP_ALIVE, AsyncEngine
from edgefleet.models.connections import EngineConnection


class HttpxEngine(AsyncEngine):
    """:class:`edgefleet.engine_api.AsyncEngine`'s endpoints, over ``httpx.AsyncClient``."""

    def __init__(self, conn: EngineConnection, timeout: float) -> None:
        super().__init__(conn, timeout)  # checks the address, loads the TLS context
        url = self._url
        if url.scheme == "unix":
            base = "http://docker"
        else:
            port = url.port or (2376 if self._tls else 2375)
            base = f"{'https' if self._tls else 'http'}://{url.hostname}:{port}"
        transport = httpx.AsyncHTTPTransport(
            verify=self._tls or False, trust_env=False,
            uds=url.path if url.scheme == "unix" else None,
            limits=httpx.Limits(max_connections=1, max_keepalive_connections=1,
                                keepalive_expiry=KEEP_ALIVE))
        backend = transport._pool._network_backend  # counted: a connection is a handshake
        transport._pool._network_backend = _Counting(backend, self)  # type: ignore[assignment]
        self._client = httpx.AsyncClient(base_url=base, transport=transport, trust_env=False,
                                         timeout=timeout, headers={"User-Agent": "edgefleet"})

    def _idle(self) -> bool:
        return False  # httpx replaces a connection the engine closed by itself

    async def _exchange(self, target: str) -> tuple[int, bytes]:
        try:
            resp = await self._client.get(target, timeout=self.timeout)
        except httpx.TimeoutException as exc:
            raise TimeoutError("timed out") from exc
        except httpx.TransportError as exc:
            cause: BaseException = exc
            while cause.__cause__ is not None or cause.__context__ is not None:
                cause = cause.__cause__ or cause.__context__  # type: ignore[assignment]
            raise ConnectionError(str(cause) or str(exc)) from exc
        return resp.status_code, resp.content

    async def close(self) -> None:
        await self._client.aclose()


class _Counting:
    """httpcore's network backend, counting the connections it opens."""

    def __init__(self, backend: Any, engine: AsyncEngine) -> None:
        self._backend = backend
        self._engine = engine

    async def connect_tcp(self, *args: Any, **kwargs: Any) -> Any:
        self._engine.connections += 1
        return await self._backend.connect_tcp(*args, **kwargs)

    async def connect_unix_socket(self, *args: Any, **kwargs: Any) -> Any:
        self._engine.connections += 1
        return await self._backend.connect_unix_socket(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._backend, name)
