"""One client request in flight: what its usage record and response headers need."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Mapping

from starlette.responses import Response

from omnirelay.accounting.bodies import BodyCapture
from omnirelay.accounting.metering import off_loop
from omnirelay.canonical.usage import Usage
from omnirelay.policy.auth import Principal
from omnirelay.routing.router import Deployment
from omnirelay.transport.responses import SSE_HEADERS, StreamResponse, raw_headers


class Call:
    """One client request in flight: what the usage record and the response headers need."""

    __slots__ = (
        "attempts",
        "billable",
        "bodies",
        "client_ip",
        "cost",
        "deployment",
        "endpoint",
        "error",
        "key_id",
        "metering",
        "model",
        "principal",
        "prompt",
        "provider",
        "request_bytes",
        "request_id",
        "reserved",
        "started",
        "status",
        "stream",
        "ts",
        "ttfb",
        "unpriced",
        "upstream_headers",
        "upstream_model",
        "usage",
    )

    def __init__(self, request_id: str, endpoint: str, client_ip: str | None) -> None:
        self.request_id = request_id
        self.endpoint = endpoint
        self.client_ip = client_ip
        self.ts = time.time()
        self.started = time.perf_counter()
        self.key_id = "-"
        self.model = ""
        self.provider: str | None = None
        self.upstream_model: str | None = None
        self.stream = False
        self.ttfb: float | None = None
        self.usage: Usage | None = None
        self.status = 200
        self.error: str | None = None
        self.attempts = 0
        self.deployment: Deployment | None = None  # the one that served it
        self.principal: Principal | None = None  # who is calling
        self.request_bytes = 0  # size of the request body (bounds its input tokens)
        self.reserved = 0  # micro-units held against the key's quota while in flight
        self.cost = 0  # micro-units charged, once settled
        self.unpriced = False
        self.billable = True  # False for free operations that still report tokens (count_tokens)
        self.upstream_headers: Mapping[str, str] | None = None  # of its answer (passthrough)
        self.bodies: BodyCapture | None = None  # set when its bodies are logged
        self.metering: asyncio.Future[None] | None = None  # a stream's end-of-stream count, if any
        # A stream's lazy prompt count: what it is charged if it ends before any usage is known.
        self.prompt: Callable[[], int] | None = None

    async def meter(self, count: Callable[[], Usage | None], model: str, size: int) -> None:
        """Set `usage` from `count()` at a stream's end (off the loop when large, see off_loop).

        Shielded: when the client leaves while this runs (often right after the last chunk), the
        relay is cancelled but the count finishes and still sets `usage`; `on_close` waits for it
        through `metering` before the request is settled."""

        async def run() -> None:
            self.usage = await off_loop(count, model, size)

        self.metering = asyncio.ensure_future(run())
        await asyncio.shield(self.metering)

    def served_by(self, dep: Deployment) -> None:
        self.provider = dep.provider.name
        self.upstream_model = dep.upstream_model

    def mark_first_byte(self) -> None:
        if self.ttfb is None:
            self.ttfb = time.perf_counter() - self.started

    def headers(self) -> dict[str, str]:
        out = {}
        if self.provider is not None:
            out["x-omnirelay-provider"] = f"{self.provider}/{self.upstream_model}"
        if self.attempts > 1:
            out["x-omnirelay-attempts"] = str(self.attempts)
        return out

    def json_response(
        self, body: bytes, status: int = 200, content_type: str = "application/json"
    ) -> Response:
        headers = self.headers()
        headers["x-request-id"] = self.request_id
        return Response(body, status_code=status, headers=headers, media_type=content_type)

    def stream_response(
        self,
        body: AsyncIterator[bytes],
        content_type: bytes | None = None,
        prompt: Callable[[], int] | None = None,
    ) -> StreamResponse:
        self.prompt = prompt
        headers = self.headers()
        headers["x-request-id"] = self.request_id
        base = SSE_HEADERS if content_type is None else [(b"content-type", content_type), *SSE_HEADERS[1:]]
        return StreamResponse(body, base + raw_headers(headers))
