"""The request path shared by every client protocol:

decode → validate → router (ordered deployments) → attempt loop → passthrough (same dialect) or
canonical translation (other dialects) → encode.

One module per client protocol holds its endpoints (`openai`, `anthropic`, `gemini`, `responses`);
auth and the usage record are handled around them by `omnirelay.app.endpoint`.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from functools import partial
from typing import Any, TypeVar

from starlette.requests import Request
from starlette.responses import Response

from omnirelay.accounting.metering import Transcript, from_response, off_loop, settle_usage
from omnirelay.accounting.tokenizer import count_input
from omnirelay.call import Call
from omnirelay.canonical.request import ChatRequest
from omnirelay.canonical.stream import StreamEvent, UsageEvent
from omnirelay.errors import BadRequest, GatewayError, PayloadTooLarge
from omnirelay.ingress.base import Ingress, StreamEncoder
from omnirelay.routing.router import Deployment, Route
from omnirelay.runtime import Runtime
from omnirelay.transport import json
from omnirelay.transport.responses import StreamResponse

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
    rt: Runtime,
    call: Call,
    route: Route,
    fn: Callable[[Deployment], Awaitable[T]],
    session: str | None = None,
) -> T:
    """Serve on the route's deployments in the dispatcher's order, failing over before the first byte."""
    return await rt.dispatcher.run(call, route, fn, session)


def session_key(headers: Mapping[str, str], body: dict[str, Any], route: Route) -> str | None:
    """What keeps a conversation on one deployment: an explicit session header, else a hash of the
    conversation's first turns (the same in every later request of that conversation). None when the
    route has a single deployment (nothing to stick to)."""
    if len(route.tiers) == 1 and len(route.tiers[0]) == 1:
        return None
    explicit = headers.get("x-session-id") or headers.get("x-omnirelay-session")
    if explicit:
        return "s:" + explicit[:200]
    turns = body.get("messages") or body.get("contents") or body.get("input")
    if not isinstance(turns, list) or not turns:
        return None
    # The first user turn: a shared system prompt alone would put every conversation in one session.
    first = next((t for t in turns if isinstance(t, dict) and t.get("role") == "user"), turns[0])
    system = body.get("system") or body.get("systemInstruction") or body.get("instructions")
    digest = hashlib.blake2b(json.dumps([body.get("model"), system, first]), digest_size=16)
    return "h:" + digest.hexdigest()


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
    rt: Runtime,
    call: Call,
    route: Route,
    ingress: Ingress,
    body: dict[str, Any],
    passthrough: Passthrough,
    session: str | None = None,
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

    return await with_attempts(rt, call, route, attempt, session)


async def _chat_translated(
    call: Call, dep: Deployment, ingress: Ingress, req: ChatRequest
) -> Response | StreamResponse:
    adapter = dep.provider.adapter
    if adapter is None:
        raise _no_adapter(dep, "chat requests")
    req.model = dep.upstream_model
    key = dep.key
    prompt = partial(count_input, req, dep.upstream_model)  # used only when usage is missing
    if not req.stream:
        resp = await adapter.complete(req, key)
        call.mark_first_byte()
        call.usage = resp.usage
        if resp.usage is None:  # a vendor that reports none: counted, and flagged as estimated
            generated = from_response(resp)
            settle = partial(settle_usage, dep.upstream_model, generated, None, prompt, True)
            call.usage = await off_loop(settle, dep.upstream_model, call.request_bytes + generated.chars())
        req.model = call.model  # answer under the name the client asked for
        return call.json_response(ingress.encode_response(resp, req))
    events = adapter.stream(req, key)
    first = await anext(events)  # failures before the first event can still go to another deployment
    req.model = call.model
    encoder = ingress.stream_encoder(req)
    body = _encode_stream(call, encoder, first, events, dep.upstream_model, prompt)
    return call.stream_response(body, prompt=prompt)


async def _encode_stream(
    call: Call,
    encoder: StreamEncoder,
    first: StreamEvent,
    events: AsyncIterator[StreamEvent],
    model: str,
    prompt: Callable[[], int],
) -> AsyncIterator[bytes]:
    call.mark_first_byte()
    kept = Transcript()  # what was generated, counted only if the upstream's usage is missing
    complete = False
    try:
        prepare = getattr(encoder, "prepare", None)  # work the encoder can do off the loop first
        if prepare is not None:
            await prepare(first, call.request_bytes)
        event: StreamEvent | None = first
        while event is not None:
            kept.add(event)
            if isinstance(event, UsageEvent):
                call.usage = event.usage
            chunk = encoder.encode(event)
            if chunk:
                yield chunk
            event = await anext(events, None)
        complete = True
        yield encoder.close()
    except GatewayError as exc:
        call.status, call.error = exc.status, exc.message
        yield encoder.error(exc)
    finally:
        try:
            await events.aclose()  # type: ignore[attr-defined]
        finally:
            if not complete or call.usage is None:  # cut short, or a vendor that reports no usage
                generated = kept.result()
                if complete or generated:
                    settle = partial(settle_usage, model, generated, call.usage, prompt, complete)
                    await call.meter(settle, model, kept.size + call.request_bytes)
