"""Pooled upstream HTTP clients behind one small interface.

One client per provider, created inside the running event loop and reused for every request, so
connections stay alive. Two implementations (aiohttp and httpx) exist so that the benchmark in
`bench/` can compare them; aiohttp is the default because it measured faster (docs/performance.md).

Timeouts: `connect` (TCP/TLS set-up), `first_byte` (request sent → response headers), `idle`
(longest silence between two reads of the body). Failures surface as `TransportError` with a kind.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol

ErrorKind = Literal["connect", "first_byte_timeout", "idle_timeout", "broken"]


class TransportError(Exception):
    def __init__(self, kind: ErrorKind, detail: str) -> None:
        super().__init__(detail)
        self.kind = kind
        self.detail = detail


@dataclass(frozen=True, slots=True)
class Timeouts:
    connect: float = 10.0
    first_byte: float = 300.0
    idle: float = 300.0


class UpstreamResponse(Protocol):
    status: int

    @property
    def headers(self) -> Mapping[str, str]: ...

    async def read(self) -> bytes: ...

    def iter_bytes(self) -> AsyncIterator[bytes]: ...

    async def aclose(self) -> None: ...


class HttpClient(Protocol):
    async def send(
        self, method: str, url: str, headers: dict[str, str], body: bytes | None
    ) -> UpstreamResponse: ...

    async def close(self) -> None: ...


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text[:300]


# --- aiohttp ------------------------------------------------------------------------------------


class _AiohttpResponse:
    __slots__ = ("_idle", "_resp", "status")

    def __init__(self, resp: Any, idle: float) -> None:
        self._resp = resp
        self._idle = idle
        self.status: int = resp.status

    @property
    def headers(self) -> Mapping[str, str]:
        return self._resp.headers  # type: ignore[no-any-return]

    async def read(self) -> bytes:
        import aiohttp

        try:
            async with asyncio.timeout(self._idle):
                return await self._resp.read()  # type: ignore[no-any-return]
        except TimeoutError:
            raise TransportError("idle_timeout", "upstream body timed out") from None
        except aiohttp.ClientError as exc:
            raise TransportError("broken", _describe(exc)) from None
        finally:
            self._resp.release()

    async def iter_bytes(self) -> AsyncIterator[bytes]:
        import aiohttp

        content = self._resp.content
        try:
            while True:
                async with asyncio.timeout(self._idle):
                    chunk = await content.readany()
                if not chunk:
                    return
                yield chunk
        except TimeoutError:
            raise TransportError("idle_timeout", "upstream stream went idle") from None
        except aiohttp.ClientError as exc:
            raise TransportError("broken", _describe(exc)) from None

    async def aclose(self) -> None:
        if not self._resp.closed and self._resp.content.at_eof():
            self._resp.release()
        else:
            self._resp.close()


class AiohttpClient:
    def __init__(self, timeouts: Timeouts, max_connections: int = 512) -> None:
        self._timeouts = timeouts
        self._max = max_connections
        self._session: Any = None

    def _open(self) -> Any:
        import aiohttp

        connector = aiohttp.TCPConnector(
            limit=self._max, ttl_dns_cache=300, keepalive_timeout=60, enable_cleanup_closed=True
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=self._timeouts.connect),
            auto_decompress=False,
            skip_auto_headers=("User-Agent",),
        )
        return self._session

    async def send(
        self, method: str, url: str, headers: dict[str, str], body: bytes | None
    ) -> UpstreamResponse:
        import aiohttp

        session = self._session or self._open()
        try:
            async with asyncio.timeout(self._timeouts.first_byte):
                resp = await session.request(method, url, headers=headers, data=body, allow_redirects=False)
        except TimeoutError:
            raise TransportError("first_byte_timeout", "upstream sent no response in time") from None
        except aiohttp.ClientConnectionError as exc:
            kind: ErrorKind = "connect" if isinstance(exc, aiohttp.ClientConnectorError) else "broken"
            raise TransportError(kind, _describe(exc)) from None
        except aiohttp.ClientError as exc:
            raise TransportError("broken", _describe(exc)) from None
        return _AiohttpResponse(resp, self._timeouts.idle)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


# --- httpx --------------------------------------------------------------------------------------


class _HttpxResponse:
    __slots__ = ("_idle", "_resp", "status")

    def __init__(self, resp: Any, idle: float) -> None:
        self._resp = resp
        self._idle = idle
        self.status: int = resp.status_code

    @property
    def headers(self) -> Mapping[str, str]:
        return self._resp.headers  # type: ignore[no-any-return]

    async def read(self) -> bytes:
        import httpx

        try:
            return await self._resp.aread()  # type: ignore[no-any-return]
        except httpx.TimeoutException:
            raise TransportError("idle_timeout", "upstream body timed out") from None
        except httpx.HTTPError as exc:
            raise TransportError("broken", _describe(exc)) from None
        finally:
            await self._resp.aclose()

    async def iter_bytes(self) -> AsyncIterator[bytes]:
        import httpx

        try:
            async for chunk in self._resp.aiter_raw():
                yield chunk
        except httpx.TimeoutException:
            raise TransportError("idle_timeout", "upstream stream went idle") from None
        except httpx.HTTPError as exc:
            raise TransportError("broken", _describe(exc)) from None

    async def aclose(self) -> None:
        await self._resp.aclose()


class HttpxClient:
    def __init__(self, timeouts: Timeouts, max_connections: int = 512) -> None:
        import httpx

        self._timeouts = timeouts
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(
                connect=timeouts.connect, read=timeouts.idle, write=timeouts.idle, pool=None
            ),
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
            follow_redirects=False,
        )

    async def send(
        self, method: str, url: str, headers: dict[str, str], body: bytes | None
    ) -> UpstreamResponse:
        import httpx

        request = self._client.build_request(method, url, headers=headers, content=body)
        try:
            async with asyncio.timeout(self._timeouts.first_byte):
                resp = await self._client.send(request, stream=True)
        except TimeoutError:
            raise TransportError("first_byte_timeout", "upstream sent no response in time") from None
        except httpx.ConnectError as exc:
            raise TransportError("connect", _describe(exc)) from None
        except httpx.TimeoutException as exc:
            kind: ErrorKind = "connect" if isinstance(exc, httpx.ConnectTimeout) else "first_byte_timeout"
            raise TransportError(kind, _describe(exc)) from None
        except httpx.HTTPError as exc:
            raise TransportError("broken", _describe(exc)) from None
        return _HttpxResponse(resp, self._timeouts.idle)

    async def close(self) -> None:
        await self._client.aclose()


def make_client(kind: str, timeouts: Timeouts, max_connections: int) -> HttpClient:
    if kind == "httpx":
        return HttpxClient(timeouts, max_connections)
    return AiohttpClient(timeouts, max_connections)
