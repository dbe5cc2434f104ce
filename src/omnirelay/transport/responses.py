"""ASGI responses for the hot path.

`StreamResponse` relays an async iterator of bytes and, unlike a plain streaming response, watches
for the client going away: it then cancels the relay and closes the iterator at once, so the
upstream request is cancelled instead of running on until the next write fails.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from starlette.types import Receive, Scope, Send

SSE_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]


def raw_headers(headers: dict[str, str]) -> list[tuple[bytes, bytes]]:
    return [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]


class StreamResponse:
    def __init__(
        self, body: AsyncIterator[bytes], headers: list[tuple[bytes, bytes]], status: int = 200
    ) -> None:
        self.body = body
        self.headers = headers
        self.status = status
        self.on_close: Callable[[bool], Awaitable[None]] | None = None  # awaited once: "client went away?"
        self.failure: BaseException | None = None  # the relay's own error (a gateway bug), if any

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        relay = asyncio.create_task(self._relay(send))
        watch = asyncio.create_task(_wait_disconnect(receive))
        disconnected = False
        try:
            await asyncio.wait((relay, watch), return_when=asyncio.FIRST_COMPLETED)
            error = relay.exception() if relay.done() and not relay.cancelled() else None
            # A send to a client that has gone raises OSError; anything else is the relay's own bug.
            disconnected = not relay.done() or isinstance(error, OSError)
            if error is not None and not isinstance(error, OSError):
                self.failure = error
        finally:
            if not relay.done():
                relay.cancel()
            watch.cancel()
            # Its error is in `failure` (or was the client leaving): on_close must run regardless.
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await relay
            try:
                aclose = getattr(self.body, "aclose", None)
                if aclose is not None:
                    await aclose()
            finally:
                if self.on_close is not None:
                    await self.on_close(disconnected)

    async def _relay(self, send: Send) -> None:
        await send({"type": "http.response.start", "status": self.status, "headers": self.headers})
        async for chunk in self.body:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})


async def _wait_disconnect(receive: Receive) -> None:
    while True:
        message: Any = await receive()
        if message["type"] == "http.disconnect":
            return
