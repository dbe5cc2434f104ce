"""Same-protocol relays: when the client's protocol is the upstream's dialect, the request is
forwarded with only the edits the gateway needs and the answer relayed as the upstream's own bytes,
with usage read on the way. One module per dialect."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from omnirelay.accounting.metering import Generated, settle_usage
from omnirelay.call import Call
from omnirelay.errors import UpstreamError
from omnirelay.routing.router import Deployment
from omnirelay.transport import json
from omnirelay.transport.http import TransportError, UpstreamResponse
from omnirelay.upstream.openai import transport_error


async def read_whole(call: Call, dep: Deployment, resp: UpstreamResponse) -> bytes:
    """The upstream's whole answer body; a broken or stalled body becomes an UpstreamError."""
    try:
        raw = await resp.read()
    except TransportError as exc:
        raise transport_error(dep.provider.target, exc) from None
    call.mark_first_byte()
    return raw


def parse_answer(dep: Deployment, raw: bytes) -> Any:
    """The answer as JSON; a malformed body is the upstream's failure (502, another deployment may serve)."""
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        raise UpstreamError(
            f"Provider {dep.provider.name!r} returned a malformed JSON body.",
            status=502,
            code="bad_upstream_response",
            provider=dep.provider.name,
            retryable=True,
        ) from None


def incomplete(dep: Deployment) -> UpstreamError:
    return UpstreamError(
        f"Provider {dep.provider.name!r} ended the stream before it was complete.",
        code="upstream_stream_incomplete",
        provider=dep.provider.name,
    )


TAP_COMPACT_BYTES = 4 * 1024 * 1024  # kept event bytes past which they are reduced to their texts


class Extractor(Protocol):
    """Reads the generated texts out of one dialect's stream events (only when usage is missing)."""

    def feed(self, event: bytes) -> None: ...

    def result(self) -> Generated: ...


class Tap:
    """The events of a relayed stream, kept by reference while it runs (nothing parsed) so that, if
    it ends without the upstream's final usage, what it generated can still be counted and charged."""

    __slots__ = ("events", "extractor", "size")

    def __init__(self, extractor: Extractor) -> None:
        self.extractor = extractor
        self.events: list[bytes] = []
        self.size = 0

    def keep(self, events: list[bytes], size: int) -> None:
        self.events += events
        self.size += size
        if self.size > TAP_COMPACT_BYTES:  # a very long stream: keep its texts, not its bytes
            self._drain()

    def _drain(self) -> None:
        for event in self.events:
            self.extractor.feed(event)
        self.events, self.size = [], 0

    def settle(self, call: Call, dep: Deployment, prompt: Callable[[], int], complete: bool) -> None:
        """Set the call's usage from what was generated (see accounting.metering.settle_usage)."""
        self._drain()
        model = dep.upstream_model
        call.usage = settle_usage(model, self.extractor.result(), call.usage, prompt, complete)
