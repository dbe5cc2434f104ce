"""What every client-facing chat protocol provides, so that one pipeline serves them all.

A new protocol is one module implementing `Ingress` plus a route; see `omnirelay.app.ROUTES`.
"""

from __future__ import annotations

from typing import Any, Protocol

from omnirelay.canonical.request import ChatRequest
from omnirelay.canonical.response import ChatResponse
from omnirelay.canonical.stream import StreamEvent
from omnirelay.errors import GatewayError


class StreamEncoder(Protocol):
    def encode(self, event: StreamEvent) -> bytes:
        """Bytes to send for one canonical event (may be empty)."""

    def close(self) -> bytes:
        """Bytes that end a complete stream."""

    def error(self, err: GatewayError) -> bytes:
        """Bytes that end a stream that failed after it started."""


class Ingress(Protocol):
    # The upstream wire dialect this protocol is; an upstream of the same dialect gets a passthrough.
    dialect: str

    def decode(self, body: dict[str, Any]) -> ChatRequest: ...

    def encode_response(self, resp: ChatResponse, req: ChatRequest) -> bytes: ...

    def stream_encoder(self, req: ChatRequest) -> StreamEncoder: ...

    def error_body(self, err: GatewayError) -> bytes: ...
