"""Opt-in request/response body logging.

Off unless the operator turns it on (`logging.bodies`) or a key says so (`log_bodies`, which wins
either way). For a logged request, `BodyCapture` copies the request body as the handler reads it
and the response body as it leaves (for a stream: the bytes streamed), each cut at
`logging.max_body_bytes`; headers are never looked at. The finished capture goes to a background
`BatchWriter` like the usage record, so nothing is written on the request path. `BodyLog` also
deletes bodies older than the retention period, at start and then periodically.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Message

from omnirelay.accounting.recorder import BatchWriter
from omnirelay.storage.base import Store
from omnirelay.storage.records import KeyRecord, LoggedBody
from omnirelay.transport.responses import StreamResponse

log = logging.getLogger("omnirelay.bodies")
PURGE_INTERVAL_SECONDS = 3600.0


class BodyCapture:
    """The (capped) bodies of one request in flight."""

    __slots__ = ("content_type", "limit", "request", "request_bytes", "response", "response_bytes")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.request = bytearray()
        self.response = bytearray()
        self.request_bytes = 0
        self.response_bytes = 0
        self.content_type: str | None = None

    def _keep(self, into: bytearray, chunk: bytes) -> None:
        room = self.limit - len(into)
        if room > 0:
            into += chunk[:room]

    def tee_request(self, request: Request) -> Request:
        """The same request, whose body is copied here as the handler reads it."""
        receive = request.receive

        async def teeing() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                chunk = message.get("body", b"")
                self.request_bytes += len(chunk)
                self._keep(self.request, chunk)
            return message

        return Request(request.scope, teeing)

    def tee_response(self, response: Response | StreamResponse) -> None:
        """Copy the response body: at once for a plain response, as it streams for a stream."""
        if isinstance(response, StreamResponse):
            self.content_type = next(
                (v.decode("latin-1") for k, v in response.headers if k.lower() == b"content-type"), None
            )
            response.body = self._tee(response.body)
            return
        raw = getattr(response, "body", None)  # a Response subclass that streams has none
        if not isinstance(raw, bytes | bytearray | memoryview):
            return
        body = bytes(raw)
        self.content_type = response.headers.get("content-type")
        self.response_bytes = len(body)
        self._keep(self.response, body)

    async def _tee(self, inner: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        try:
            async for chunk in inner:
                self.response_bytes += len(chunk)
                self._keep(self.response, chunk)
                yield chunk
        finally:
            aclose: Any = getattr(inner, "aclose", None)
            if aclose is not None:
                await aclose()

    def logged(self, request_id: str, ts: float) -> LoggedBody:
        return LoggedBody(
            request_id=request_id,
            ts=ts,
            request=bytes(self.request),
            response=bytes(self.response),
            request_bytes=self.request_bytes,
            response_bytes=self.response_bytes,
            response_content_type=self.content_type[:256] if self.content_type else None,
        )


# At most this many captured requests wait for the database (each holds up to twice max_bytes).
MAX_PENDING_BODIES = 2000


class BodyLog:
    """Whether a request's bodies are logged, their background writer, and the retention purge."""

    def __init__(
        self,
        store: Store,
        enabled: bool,
        max_bytes: int,
        retention_days: float,
        flush_interval: float,
    ) -> None:
        self.enabled = enabled
        self.max_bytes = max_bytes
        self.retention_seconds = retention_days * 86400
        self.store = store
        self.writer: BatchWriter[LoggedBody] = BatchWriter(
            store.add_bodies, flush_interval, name="logged bodies"
        )
        self._purger: asyncio.Task[None] | None = None
        self.dropped = 0  # bodies not logged because the backlog was full

    def capture_for(self, key: KeyRecord | None) -> BodyCapture | None:
        """A capture when this key's requests are logged (its own setting, else the gateway's)."""
        wanted = key.log_bodies if key is not None and key.log_bodies is not None else self.enabled
        return BodyCapture(self.max_bytes) if wanted else None

    def record(self, request_id: str, ts: float, capture: BodyCapture) -> None:
        # Usage records are never dropped; logged bodies are optional and large, so while the
        # database cannot keep up (or is down) the newest ones are dropped rather than memory grown.
        if self.writer.pending >= MAX_PENDING_BODIES:
            self.dropped += 1
            if self.dropped % 1000 == 1:
                log.warning("body log backlog is full; %d bodies not logged so far", self.dropped)
            return
        self.writer.record(capture.logged(request_id, ts))

    async def purge(self) -> int:
        """Delete the bodies older than the retention period now; returns how many went."""
        removed = await self.store.purge_bodies(time.time() - self.retention_seconds)
        if removed:
            log.info("deleted %d logged bodies past their retention", removed)
        return removed

    def start(self) -> None:
        self.writer.start()
        self._purger = asyncio.create_task(self._purge_loop(), name="purge: logged bodies")

    async def _purge_loop(self) -> None:
        # Short retention periods (tests, strict policies) are honoured within a quarter of them.
        interval = max(min(PURGE_INTERVAL_SECONDS, self.retention_seconds / 4), 0.05)
        while True:
            try:
                await self.purge()
            except Exception:
                log.exception("deleting logged bodies past their retention failed; will retry")
            await asyncio.sleep(interval)

    async def close(self) -> None:
        if self._purger is not None:
            self._purger.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._purger
        await self.writer.close()
