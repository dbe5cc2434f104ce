"""Anthropic-dialect requests to Anthropic upstreams: the body is forwarded with only the model
replaced (cache_control, citations, beta features and unknown fields stay as sent), the client's
`anthropic-version` and `anthropic-beta` headers go along, and the upstream's bytes come back as
they arrive. Usage is read from `message_start` and `message_delta` events (or the JSON body)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

from starlette.responses import Response

from omnirelay.accounting.metering import Generated, prompt_of
from omnirelay.call import Call
from omnirelay.errors import GatewayError
from omnirelay.ingress.anthropic import decode, error_json
from omnirelay.passthrough import Tap, incomplete, parse_answer, read_whole
from omnirelay.routing.router import Deployment
from omnirelay.transport import json, sse
from omnirelay.transport.http import TransportError, UpstreamResponse
from omnirelay.transport.responses import StreamResponse
from omnirelay.upstream import openai as transport_errors
from omnirelay.upstream.anthropic.errors import error_from_response
from omnirelay.upstream.anthropic.response import parse_usage

DEFAULT_VERSION = "2023-06-01"


async def send(
    dep: Deployment, path: str, body: bytes, client_headers: Mapping[str, str]
) -> UpstreamResponse:
    target = dep.provider.target
    assert target.client is not None
    headers = {
        "content-type": "application/json",
        "accept": "application/json, text/event-stream",
        "anthropic-version": client_headers.get("anthropic-version") or DEFAULT_VERSION,
    }
    if beta := client_headers.get("anthropic-beta"):
        headers["anthropic-beta"] = beta
    if key := dep.key:
        headers["x-api-key"] = key
    headers.update(target.headers)
    try:
        resp = await target.client.send("POST", target.base_url + path, headers, body)
        if resp.status >= 400:
            raise error_from_response(target, resp.status, resp.headers, await resp.read())
    except TransportError as exc:
        raise transport_errors.transport_error(target, exc) from None
    return resp


async def messages(
    call: Call, dep: Deployment, body: dict[str, Any], client_headers: Mapping[str, str]
) -> Response | StreamResponse:
    out = dict(body)
    out["model"] = dep.upstream_model
    resp = await send(dep, "/v1/messages", json.dumps(out), client_headers)
    call.upstream_headers = resp.headers
    if body.get("stream") is True and "event-stream" in resp.headers.get("content-type", ""):
        prompt = prompt_of(lambda: decode(body), body, dep.upstream_model)  # only if usage is missing
        return call.stream_response(relay_stream(call, dep, resp, prompt), prompt=prompt)
    raw = await read_whole(call, dep, resp)
    data = parse_answer(dep, raw)
    if isinstance(data, dict) and isinstance(data.get("usage"), dict):
        call.usage = parse_usage(data["usage"])
    return call.json_response(raw, resp.status, resp.headers.get("content-type", "application/json"))


async def count_tokens(
    call: Call, dep: Deployment, body: dict[str, Any], client_headers: Mapping[str, str]
) -> Response:
    out = dict(body)
    out["model"] = dep.upstream_model
    resp = await send(dep, "/v1/messages/count_tokens", json.dumps(out), client_headers)
    call.upstream_headers = resp.headers
    try:
        raw = await resp.read()
    except TransportError as exc:
        raise transport_errors.transport_error(dep.provider.target, exc) from None
    return call.json_response(raw, resp.status, resp.headers.get("content-type", "application/json"))


def _usage_update(call: Call, name: str | None, data: dict[str, Any]) -> None:
    """message_start carries the input side; message_delta the cumulative output (and, on some
    versions, the input side again)."""
    raw = (data.get("message") or {}).get("usage") if name == "message_start" else data.get("usage")
    if not isinstance(raw, dict):
        return
    fresh = parse_usage({k: v for k, v in raw.items() if v is not None})
    if call.usage is None or name == "message_start":
        call.usage = fresh
        return
    call.usage.output_tokens = fresh.output_tokens
    if raw.get("input_tokens") is not None:
        call.usage.input_tokens = fresh.input_tokens
        call.usage.cached_input_tokens = fresh.cached_input_tokens
        call.usage.cache_write_tokens = fresh.cache_write_tokens


class Texts:
    """The generated texts of Anthropic stream events: text, thinking, tool names and input JSON."""

    __slots__ = ("blocks", "names")

    def __init__(self) -> None:
        self.blocks: dict[int, tuple[bool, list[str]]] = {}  # index → (thinking?, pieces)
        self.names: list[str] = []

    def feed(self, event: bytes) -> None:
        if not event.startswith((b"event: content_block_delta", b"event: content_block_start")):
            return
        decoded = sse.decode_event(event)
        try:
            data = json.loads(decoded.data) if decoded is not None else None
        except json.JSONDecodeError:
            return
        if not isinstance(data, dict) or not isinstance(data.get("index"), int):
            return
        index: int = data["index"]
        block = data.get("content_block")
        if isinstance(block, dict):
            if isinstance(block.get("name"), str):
                self.names.append(block["name"])
            self.blocks.setdefault(index, (block.get("type") == "thinking", []))
            return
        delta = data.get("delta")
        if isinstance(delta, dict):
            text = delta.get("text") or delta.get("thinking") or delta.get("partial_json")
            if isinstance(text, str):
                self.blocks.setdefault(index, ("thinking" in delta, []))[1].append(text)

    def result(self) -> Generated:
        out = Generated(texts=list(self.names))
        for thinking, pieces in self.blocks.values():
            (out.reasoning if thinking else out.texts).append("".join(pieces))
        return out


async def relay_stream(
    call: Call, dep: Deployment, resp: UpstreamResponse, prompt: Callable[[], int] | None = None
) -> AsyncIterator[bytes]:
    """Relay whole events as they complete; end a broken stream with an `error` event. A stream that
    ends before its final usage (`message_delta`) is charged for what it generated (`Tap`)."""
    splitter = sse.EventSplitter()
    done = final = False
    failure: GatewayError | None = None
    tap = Tap(Texts, dep.upstream_model) if prompt is not None else None
    try:
        async for chunk in resp.iter_bytes():
            call.mark_first_byte()
            events = splitter.feed(chunk)
            if tap is not None and events:
                tap.keep(events, len(chunk))
            for event in events:
                if event.startswith((b"event: message_start", b"event: message_delta")):
                    decoded = sse.decode_event(event)
                    if decoded is not None and decoded.data.startswith(b"{"):
                        data = json.loads(decoded.data)
                        if isinstance(data, dict):
                            _usage_update(call, decoded.event, data)
                            final = final or (decoded.event == "message_delta" and "usage" in data)
                elif event.startswith(b"event: message_stop"):
                    done = True
                elif event.startswith(b"event: error"):
                    call.status, call.error = 502, "the upstream ended the stream with an error event"
                    done = True
            if events:
                yield events[0] if len(events) == 1 else b"".join(events)
    except TransportError as exc:
        failure = transport_errors.transport_error(dep.provider.target, exc)
    finally:
        try:
            await resp.aclose()
        finally:  # charged even if closing the upstream response fails
            if tap is not None and prompt is not None and not final:
                await tap.settle(call, dep, prompt, done and call.status < 400)
    if done:
        return
    failure = failure or incomplete(dep)
    call.status, call.error = 502, failure.message
    yield sse.encode(json.dumps(error_json(failure)), event="error")
