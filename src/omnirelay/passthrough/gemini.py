"""Gemini-dialect requests to Gemini upstreams: the body goes as sent (the model lives in the URL),
the answer comes back as the upstream's bytes, SSE (`alt=sse`) or the JSON-array stream, with usage
read from `usageMetadata` on the way."""

from __future__ import annotations

import contextlib
import json as std_json
from collections.abc import AsyncIterator, Callable
from typing import Any

from starlette.responses import Response

from omnirelay.accounting.metering import Generated, prompt_of
from omnirelay.call import Call
from omnirelay.errors import GatewayError
from omnirelay.ingress.gemini import decode_for, error_json
from omnirelay.passthrough import Tap, incomplete, parse_answer, read_whole
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
    model = dep.upstream_model
    prompt = prompt_of(lambda: decode_for(model, body), body, model)  # only if usage is missing
    relay = _relay_sse(call, dep, resp, prompt) if use_sse else _relay_array(call, dep, resp, prompt)
    return call.stream_response(relay, content_type, prompt)


class Texts:
    """The generated texts of Gemini answer chunks: text, thought text, function calls."""

    __slots__ = ("blocks", "calls")

    def __init__(self) -> None:
        self.blocks: dict[tuple[int, bool], list[str]] = {}  # (candidate, thought?) → pieces
        self.calls: list[str] = []

    def add(self, data: Any) -> None:
        candidates = data.get("candidates") if isinstance(data, dict) else None
        for cand in candidates if isinstance(candidates, list) else ():
            if not isinstance(cand, dict):
                continue
            index = cand["index"] if isinstance(cand.get("index"), int) else 0
            content = cand.get("content")
            parts = content.get("parts") if isinstance(content, dict) else None
            for part in parts if isinstance(parts, list) else ():
                if not isinstance(part, dict):
                    continue
                if isinstance(part.get("text"), str):
                    self.blocks.setdefault((index, part.get("thought") is True), []).append(part["text"])
                call = part.get("functionCall")
                if isinstance(call, dict):
                    self.calls += (str(call.get("name") or ""), json.dumps(call.get("args") or {}).decode())

    def feed(self, event: bytes) -> None:
        payload = sse.data_payload(event)
        if payload and payload.startswith(b"{"):
            with contextlib.suppress(json.JSONDecodeError):
                self.add(json.loads(payload))

    def result(self) -> Generated:
        out = Generated(texts=list(self.calls))
        for (_, thought), pieces in self.blocks.items():
            (out.reasoning if thought else out.texts).append("".join(pieces))
        return out


def complete_items(raw: bytes) -> list[Any]:
    """The whole items at the start of a JSON-array stream that may have been cut anywhere."""
    text = raw.decode("utf-8", "replace")
    decoder = std_json.JSONDecoder()
    items: list[Any] = []
    at = 0
    while True:
        while at < len(text) and text[at] in "[, \t\r\n":
            at += 1
        try:
            item, at = decoder.raw_decode(text, at)
        except ValueError:
            return items
        items.append(item)


async def _relay_sse(
    call: Call, dep: Deployment, resp: UpstreamResponse, prompt: Callable[[], int]
) -> AsyncIterator[bytes]:
    splitter = sse.EventSplitter()
    finished = False
    failure: GatewayError | None = None
    tap = Tap(Texts())
    try:
        async for chunk in resp.iter_bytes():
            call.mark_first_byte()
            events = splitter.feed(chunk)
            if events:
                tap.keep(events, len(chunk))
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
        if not finished or call.usage is None:  # cut short, or a vendor that reports no usage
            tap.settle(call, dep, prompt, finished and failure is None)
    if finished and failure is None:
        return
    failure = failure or incomplete(dep)
    call.status, call.error = 502, failure.message
    yield b"data: " + json.dumps(error_json(failure)) + b"\r\n\r\n"


async def _relay_array(
    call: Call, dep: Deployment, resp: UpstreamResponse, prompt: Callable[[], int]
) -> AsyncIterator[bytes]:
    kept: list[bytes] = []
    size = 0
    ended = False
    try:
        async for chunk in resp.iter_bytes():
            call.mark_first_byte()
            if size <= ARRAY_TAP_LIMIT:
                kept.append(chunk)
                size += len(chunk)
            yield chunk
        ended = True
    except TransportError as exc:
        failure = transport_errors.transport_error(dep.provider.target, exc)
        call.status, call.error = 502, failure.message
        return
    finally:
        await resp.aclose()
        if not ended and size <= ARRAY_TAP_LIMIT:  # cut short: charge the whole items that arrived
            _settle_items(call, dep, prompt, complete_items(b"".join(kept)), False)
    if size <= ARRAY_TAP_LIMIT:
        try:
            items = json.loads(b"".join(kept))
        except json.JSONDecodeError:
            call.status, call.error = 502, "the upstream's stream was not a complete JSON array"
            return
        for item in items if isinstance(items, list) else []:
            _take_usage(call, item)
        if call.usage is None:  # a vendor that reports no usage
            _settle_items(call, dep, prompt, items if isinstance(items, list) else [], True)


def _settle_items(
    call: Call, dep: Deployment, prompt: Callable[[], int], items: list[Any], complete: bool
) -> None:
    texts = Texts()
    for item in items:
        if not complete:
            _take_usage(call, item)
        texts.add(item)
    Tap(texts).settle(call, dep, prompt, complete)
