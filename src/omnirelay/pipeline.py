"""The request path of every OpenAI-protocol endpoint:

decode → validate → router (ordered deployments) → attempt loop → passthrough (same dialect) or
canonical translation (other dialects) → encode.

Auth and the usage record are handled around these functions by `omnirelay.app.endpoint`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

from starlette.requests import Request
from starlette.responses import Response

from omnirelay.accounting.tokens import estimate_usage
from omnirelay.call import Call
from omnirelay.canonical.request import ChatRequest
from omnirelay.canonical.stream import StreamEvent, UsageEvent
from omnirelay.errors import BadRequest, GatewayError, PayloadTooLarge, UpstreamError
from omnirelay.ingress import anthropic as anthropic_ingress
from omnirelay.ingress import openai_chat
from omnirelay.ingress.base import Ingress, StreamEncoder
from omnirelay.passthrough import anthropic as anthropic_passthrough
from omnirelay.passthrough.openai import relay_body, relay_stream, send_json
from omnirelay.routing.router import Deployment
from omnirelay.runtime import Runtime
from omnirelay.transport import json, multipart
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


# --- chat, any ingress protocol -----------------------------------------------------------------

OPENAI = openai_chat.OpenAIChatIngress()
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


async def chat_completions(rt: Runtime, request: Request, call: Call) -> Response | StreamResponse:
    body = json.parse_object(await read_body(request, rt.config.server.max_body_bytes))
    call.model = openai_chat.check_request(body)
    call.stream = stream = body.get("stream") is True
    deployments = rt.router.resolve(call.model)
    return await run_chat(
        call, deployments, OPENAI, body, lambda dep: _chat_passthrough(call, dep, body, stream)
    )


async def _chat_passthrough(
    call: Call, dep: Deployment, body: dict[str, Any], stream: bool
) -> Response | StreamResponse:
    out = dict(body)
    out["model"] = dep.upstream_model
    strip_usage = False
    if stream and dep.provider.stream_usage:
        options = body.get("stream_options")
        options = dict(options) if isinstance(options, dict) else {}
        if options.get("include_usage") is not True:
            options["include_usage"] = True
            out["stream_options"] = options
            strip_usage = True
    resp = await send_json(dep, "/chat/completions", json.dumps(out))
    if stream and "event-stream" in resp.headers.get("content-type", ""):
        return call.stream_response(relay_stream(call, dep, resp, strip_usage))
    raw, content_type = await relay_body(call, dep, resp, parse=True)
    return call.json_response(raw, resp.status, content_type)


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


# --- Anthropic Messages --------------------------------------------------------------------------

ANTHROPIC = anthropic_ingress.AnthropicIngress()


async def anthropic_messages(rt: Runtime, request: Request, call: Call) -> Response | StreamResponse:
    body = json.parse_object(await read_body(request, rt.config.server.max_body_bytes))
    call.model = _model_of(body, None)
    call.stream = body.get("stream") is True
    deployments = rt.router.resolve(call.model)

    return await run_chat(
        call,
        deployments,
        ANTHROPIC,
        body,
        lambda dep: anthropic_passthrough.messages(call, dep, body, request.headers),
    )


async def anthropic_count_tokens(rt: Runtime, request: Request, call: Call) -> Response:
    raw = await read_body(request, rt.config.server.max_body_bytes)
    body = json.parse_object(raw)
    call.model = _model_of(body, None)
    deployments = rt.router.resolve(call.model)
    if deployments[0].provider.dialect == "anthropic":
        dep = deployments[0]
        call.served_by(dep)
        return await anthropic_passthrough.count_tokens(call, dep, body, request.headers)
    req = ANTHROPIC.decode({**body, "max_tokens": 1})
    call.usage = estimate_usage(req)
    return call.json_response(json.dumps({"input_tokens": call.usage.input_tokens}))


async def anthropic_models(rt: Runtime, request: Request, call: Call) -> Response:
    created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(rt.started))
    data = [
        {"type": "model", "id": name, "display_name": name, "created_at": created}
        for name, _owner in rt.router.models()
    ]
    return call.json_response(
        json.dumps(
            {
                "data": data,
                "has_more": False,
                "first_id": data[0]["id"] if data else None,
                "last_id": data[-1]["id"] if data else None,
            }
        ),
    )


# --- embeddings and the other JSON endpoints ----------------------------------------------------


async def embeddings(rt: Runtime, request: Request, call: Call) -> Response:
    body = json.parse_object(await read_body(request, rt.config.server.max_body_bytes))
    call.model = _model_of(body, None)

    async def attempt(dep: Deployment) -> Response:
        if dep.provider.dialect == "openai":
            return await _relay_json(call, dep, body, "/embeddings")
        adapter = dep.provider.adapter
        if adapter is None:
            raise _no_adapter(dep, "/v1/embeddings")
        req = openai_chat.decode_embeddings({**body, "model": dep.upstream_model})
        resp = await adapter.embed(req, dep.provider.next_key())
        call.mark_first_byte()
        call.usage = resp.usage
        return call.json_response(
            json.dumps(openai_chat.encode_embeddings(resp, body.get("encoding_format")))
        )

    return await with_attempts(call, rt.router.resolve(call.model), attempt)


def _model_of(body: dict[str, Any], default: str | None) -> str:
    model = body.get("model", default)
    if not isinstance(model, str) or not model:
        raise BadRequest("'model' is required and must be a string.", param="model", code="missing_model")
    return model


async def _relay_json(call: Call, dep: Deployment, body: dict[str, Any], path: str) -> Response:
    out = dict(body)
    out["model"] = dep.upstream_model
    resp = await send_json(dep, path, json.dumps(out))
    content_type = resp.headers.get("content-type", "application/json")
    raw, content_type = await relay_body(call, dep, resp, parse="json" in content_type)
    return call.json_response(raw, resp.status, content_type)


def openai_json_endpoint(
    path: str, default_model: str | None = None, streams: bool = False
) -> Callable[[Runtime, Request, Call], Awaitable[Response | StreamResponse]]:
    """A relay for an OpenAI JSON endpoint served only by OpenAI-dialect providers."""

    async def handler(rt: Runtime, request: Request, call: Call) -> Response | StreamResponse:
        body = json.parse_object(await read_body(request, rt.config.server.max_body_bytes))
        call.model = _model_of(body, default_model)
        call.stream = stream = streams and body.get("stream") is True

        async def attempt(dep: Deployment) -> Response | StreamResponse:
            if dep.provider.dialect != "openai":
                raise _no_adapter(dep, "/v1" + path)
            if not stream:
                return await _relay_json(call, dep, body, path)
            out = dict(body)
            out["model"] = dep.upstream_model
            options = dict(body.get("stream_options") or {})
            strip = dep.provider.stream_usage and options.get("include_usage") is not True
            if strip:
                options["include_usage"] = True
                out["stream_options"] = options
            resp = await send_json(dep, path, json.dumps(out))
            return call.stream_response(relay_stream(call, dep, resp, strip))

        return await with_attempts(call, rt.router.resolve(call.model), attempt)

    return handler


async def transcriptions(rt: Runtime, request: Request, call: Call) -> Response:
    """multipart/form-data in; the form is rebuilt with the upstream model name and relayed."""
    limit = rt.config.server.max_body_bytes
    content_type = request.headers.get("content-type", "")
    if not content_type.startswith("multipart/form-data"):
        raise BadRequest("This endpoint takes multipart/form-data with 'file' and 'model'.")
    fields: list[tuple[str, str | multipart.FilePart]] = []
    async with request.form(max_files=4, max_fields=200, max_part_size=limit) as form:
        for name, value in form.multi_items():
            if isinstance(value, str):
                fields.append((name, value))
            else:
                data = await value.read()
                fields.append(
                    (
                        name,
                        multipart.FilePart(
                            value.filename or "audio", value.content_type or "application/octet-stream", data
                        ),
                    )
                )
    model = next((v for k, v in fields if k == "model" and isinstance(v, str)), None)
    if not model:
        raise BadRequest("'model' is required.", param="model", code="missing_model")
    if not any(isinstance(v, multipart.FilePart) for _k, v in fields):
        raise BadRequest("'file' is required.", param="file")
    call.model = model

    async def attempt(dep: Deployment) -> Response:
        if dep.provider.dialect != "openai":
            raise _no_adapter(dep, "/v1/audio/transcriptions")
        edited = [(k, dep.upstream_model if k == "model" else v) for k, v in fields]
        body, ctype = multipart.encode(edited)
        resp = await send_json(dep, "/audio/transcriptions", body, ctype)
        rtype = resp.headers.get("content-type", "application/json")
        raw, rtype = await relay_body(call, dep, resp, parse="json" in rtype)
        return call.json_response(raw, resp.status, rtype)

    return await with_attempts(call, rt.router.resolve(model), attempt)


# --- models -------------------------------------------------------------------------------------


def _model_json(rt: Runtime, name: str, owner: str) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": rt.started, "owned_by": owner}


async def list_models(rt: Runtime, request: Request, call: Call) -> Response:
    if "anthropic-version" in request.headers:  # the Anthropic SDK lists models at the same path
        return await anthropic_models(rt, request, call)
    data = [_model_json(rt, name, owner) for name, owner in rt.router.models()]
    return call.json_response(json.dumps({"object": "list", "data": data}))


async def get_model(rt: Runtime, request: Request, call: Call) -> Response:
    model = request.path_params["model"]
    dep = rt.router.resolve(model)[0]
    return call.json_response(json.dumps(_model_json(rt, model, dep.provider.name)))
