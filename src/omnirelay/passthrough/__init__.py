"""Same-protocol relays: when the client's protocol is the upstream's dialect, the request is
forwarded with only the edits the gateway needs and the answer relayed as the upstream's own bytes,
with usage read on the way. One module per dialect."""

from __future__ import annotations

from typing import Any

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
