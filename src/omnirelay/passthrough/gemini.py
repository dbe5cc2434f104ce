"""Gemini-dialect requests to Gemini upstreams: the body goes as sent (the model lives in the URL),
the answer comes back as the upstream's bytes, SSE (`alt=sse`) or the JSON-array stream, with usage
read from `usageMetadata` on the way."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from starlette.responses import Response

from omnirelay.call import Call
from omnirelay.errors import GatewayError
from omnirelay.ingress.gemini import error_json
from omnirelay.passthrough import incomplete, parse_answer, read_whole
from omnirelay.routing.router import Deployment
from omnirelay.transport import json, sse
from omnirelay.transport.http import TransportError, UpstreamResponse
from omnirelay.transport.responses import StreamResponse
from omnirelay.upstream import openai as transport_errors
from omnirelay.upstream.gemini.adapter import API_VERSION, api_root, model_resource
from omnirelay.upstream.gemini.errors import error_from_response
from omnirelay.upstream.gemini.response import parse_usage

ARRAY_TAP_LIMIT = 8 * 1024 * 1024  # bytes of a JSON-array stream kept to read its usage at the end


async def send(dep: Deployment, action: str, body: bytes, query: str = "") -> UpstreamResponse:
    target = dep.provider.target
    assert target.client is not None
    url = f"{api_root(target.base_url)}/{API_VERSION}/{model_resource(dep.upstream_model)}:{action}{query}"
    headers = {"content-type": "application/json", "accept": "application/json, text/event-stream"}
    if key := dep.key:
        headers["x-goog-api-key"] = key
    headers.update(target.headers)
    try:
        resp = await target.client.send("POST", url, headers, body)
        if resp.status >= 400:
            raise error_from_response(target, resp.status, resp.headers, await resp.read())
    except TransportError as exc:
        raise transport_errors.transport_error(target, exc) from None
    return resp


def _take_usage(call: Call, data: Any) -> None:
    if isinstance(data, dict):
        usage = parse_usage(data.get("usageMetadata"))
        if usage is not None:
            call.usage = usage


async def relay_json(call: Call, dep: Deployment, action: str, body: dict[str, Any]) -> Response:
    resp = await send(dep, action, json.dumps(body))
    call.upstream_headers = resp.headers
    raw = await read_whole(call, dep, resp)
    _take_usage(call, parse_answer(dep, raw))
    return call.json_response(raw, resp.status, resp.headers.get("content-type", "application/json"))


async def generate(
    call: Call, dep: Deployment, body: dict[str, Any], stream: bool, use_sse: bool
) -> Response | StreamResponse:
    if not stream:
        return await relay_json(call, dep, "generateContent", body)
    resp = await send(dep, "streamGenerateContent", json.dumps(body), "?alt=sse" if use_sse else "")
    call.upstream_headers = resp.headers
    content_type = resp.headers.get("content-type", "text/event-stream").encode("latin-1")
    relay = _relay_sse(call, dep, resp) if use_sse else _relay_array(call, dep, resp)
    return call.stream_response(relay, content_type)


async def _relay_sse(call: Call, dep: Deployment, resp: UpstreamResponse) -> AsyncIterator[bytes]:
    splitter = sse.EventSplitter()
    finished = False
    failure: GatewayError | None = None
    try:
        async for chunk in resp.iter_bytes():
            call.mark_first_byte()
            events = splitter.feed(chunk)
            for event in events:
                if b'"usageMetadata"' in event or b'"finishReason"' in event:
                    payload = sse.data_payload(event)
                    data = json.loads(payload) if payload and payload.startswith(b"{") else None
                    _take_usage(call, data)
                    finished = finished or b'"finishReason"' in event
            if events:
                yield events[0] if len(events) == 1 else b"".join(events)
    except TransportError as exc:
        failure = transport_errors.transport_error(dep.provider.target, exc)
    finally:
        await resp.aclose()
    if finished and failure is None:
        return
    failure = failure or incomplete(dep)
    call.status, call.error = 502, failure.message
    yield b"data: " + json.dumps(error_json(failure)) + b"\r\n\r\n"


async def _relay_array(call: Call, dep: Deployment, resp: UpstreamResponse) -> AsyncIterator[bytes]:
    kept: list[bytes] = []
    size = 0
    try:
        async for chunk in resp.iter_bytes():
            call.mark_first_byte()
            if size <= ARRAY_TAP_LIMIT:
                kept.append(chunk)
                size += len(chunk)
            yield chunk
    except TransportError as exc:
        failure = transport_errors.transport_error(dep.provider.target, exc)
        call.status, call.error = 502, failure.message
        return
    finally:
        await resp.aclose()
    if size <= ARRAY_TAP_LIMIT:
        try:
            items = json.loads(b"".join(kept))
        except json.JSONDecodeError:
            call.status, call.error = 502, "the upstream's stream was not a complete JSON array"
            return
        for item in items if isinstance(items, list) else []:
            _take_usage(call, item)
