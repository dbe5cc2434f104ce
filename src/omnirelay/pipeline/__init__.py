"""The request path shared by every client protocol:

decode → validate → router (ordered deployments) → attempt loop → passthrough (same dialect) or
canonical translation (other dialects) → encode.

One module per client protocol holds its endpoints (`openai`, `anthropic`, `gemini`, `responses`);
auth and the usage record are handled around them by `omnirelay.app.endpoint`.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

from starlette.requests import Request
from starlette.responses import Response

from omnirelay.call import Call
from omnirelay.canonical.request import ChatRequest
from omnirelay.canonical.stream import StreamEvent, UsageEvent
from omnirelay.errors import BadRequest, GatewayError, PayloadTooLarge, UpstreamError
from omnirelay.ingress.base import Ingress, StreamEncoder
from omnirelay.routing.router import Deployment
from omnirelay.transport.responses import StreamResponse

log = logging.getLogger("omnirelay.pipeline")
MAX_ATTEMPTS = 3
T = TypeVar("T")


async def read_body(request: Request, limit: int) -> bytes:
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise PayloadTooLarge(f"The request body is {length} bytes; this gateway accepts at most {limit}.")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"The request body is larger than this gateway's limit of {limit} bytes.")
        chunks.append(chunk)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def with_attempts(
    call: Call, deployments: list[Deployment], fn: Callable[[Deployment], Awaitable[T]]
) -> T:
    """Try deployments in order; move on only on a retryable failure before any byte was sent."""
    last: UpstreamError | None = None
    for dep in deployments[:MAX_ATTEMPTS]:
        call.attempts += 1
        call.served_by(dep)
        try:
            return await fn(dep)
        except UpstreamError as exc:
            last = exc
            if not exc.retryable:
                raise
            log.warning(
                "request %s: %s failed (%s), %s",
                call.request_id,
                dep.label,
                exc.message,
                "trying the next deployment" if call.attempts < len(deployments) else "giving up",
            )
    assert last is not None
    raise last


def _no_adapter(dep: Deployment, path: str) -> BadRequest:
    return BadRequest(
        f"Provider {dep.provider.name!r} (type {dep.provider.type}) does not serve {path}.",
        code="unsupported_endpoint",
    )


def _model_of(body: dict[str, Any], default: str | None) -> str:
    model = body.get("model", default)
    if not isinstance(model, str) or not model:
        raise BadRequest("'model' is required and must be a string.", param="model", code="missing_model")
    return model


Passthrough = Callable[[Deployment], Awaitable[Response | StreamResponse]]


async def run_chat(
    call: Call,
    deployments: list[Deployment],
    ingress: Ingress,
    body: dict[str, Any],
    passthrough: Passthrough,
) -> Response | StreamResponse:
    """Serve a chat request on the first deployment that can: bytes passthrough when the upstream
    speaks the ingress protocol, canonical translation otherwise."""
    decoded: list[ChatRequest] = []

    async def attempt(dep: Deployment) -> Response | StreamResponse:
        if dep.provider.dialect == ingress.dialect:
            return await passthrough(dep)
        if not decoded:
            decoded.append(ingress.decode(body))
        return await _chat_translated(call, dep, ingress, decoded[0])

    return await with_attempts(call, deployments, attempt)


async def _chat_translated(
    call: Call, dep: Deployment, ingress: Ingress, req: ChatRequest
) -> Response | StreamResponse:
    adapter = dep.provider.adapter
    if adapter is None:
        raise _no_adapter(dep, "chat requests")
    req.model = dep.upstream_model
    key = dep.provider.next_key()
    if not req.stream:
        resp = await adapter.complete(req, key)
        call.mark_first_byte()
        call.usage = resp.usage
        req.model = call.model  # answer under the name the client asked for
        return call.json_response(ingress.encode_response(resp, req))
    events = adapter.stream(req, key)
    first = await anext(events)  # failures before the first event can still go to another deployment
    req.model = call.model
    encoder = ingress.stream_encoder(req)
    return call.stream_response(_encode_stream(call, encoder, first, events))


async def _encode_stream(
    call: Call, encoder: StreamEncoder, first: StreamEvent, events: AsyncIterator[StreamEvent]
) -> AsyncIterator[bytes]:
    call.mark_first_byte()
    try:
        event: StreamEvent | None = first
        while event is not None:
            if isinstance(event, UsageEvent):
                call.usage = event.usage
            chunk = encoder.encode(event)
            if chunk:
                yield chunk
            event = await anext(events, None)
        yield encoder.close()
    except GatewayError as exc:
        call.status, call.error = exc.status, exc.message
        yield encoder.error(exc)
    finally:
        await events.aclose()  # type: ignore[attr-defined]
