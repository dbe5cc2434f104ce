"""Gemini-dialect requests to Gemini upstreams: the body goes as sent (the model lives in the URL),
the answer comes back as the upstream's bytes, SSE (`alt=sse`) or the JSON-array stream, with usage
read from `usageMetadata` on the way."""

from __future__ import annotations

import asyncio
import contextlib
import json as std_json
from collections.abc import AsyncIterator, Callable
from typing import Any

from starlette.responses import Response

from omnirelay.accounting.metering import Generated, counted, prompt_of, settle_usage
from omnirelay.accounting.tokenizer import loaded
from omnirelay.call import Call
from omnirelay.canonical.usage import Usage
from omnirelay.errors import GatewayError
from omnirelay.ingress.gemini import decode_for, error_json
from omnirelay.passthrough import Tap, incomplete, parse_answer, read_whole, warm
from omnirelay.routing.router import Deployment
from omnirelay.transport import json, sse
from omnirelay.transport.http import TransportError, UpstreamResponse
from omnirelay.transport.responses import StreamResponse
from omnirelay.upstream import openai as transport_errors
from omnirelay.upstream.gemini.adapter import API_VERSION, api_root, model_resource
from omnirelay.upstream.gemini.errors import error_from_response
from omnirelay.upstream.gemini.response import parse_usage

ARRAY_TAP_LIMIT = 1024 * 1024  # bytes of a JSON-array stream kept whole; past it, items are read as they come
ITEMS_COUNTED = 4096  # items of a long JSON-array stream whose texts are kept before they are counted


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
    tap = Tap(Texts, dep.upstream_model)
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
        try:
            await resp.aclose()
        finally:  # charged even if closing the upstream response fails
            if not finished or call.usage is None:  # cut short, or a vendor that reports no usage
                await tap.settle(call, dep, prompt, finished and failure is None)
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
    reader: Items | None = None  # past ARRAY_TAP_LIMIT: the items are read as they complete
    ended = False
    model = dep.upstream_model
    try:
        async for chunk in resp.iter_bytes():
            call.mark_first_byte()
            if reader is not None:
                reader.feed(call, chunk)
            else:
                kept.append(chunk)
                size += len(chunk)
                if size > ARRAY_TAP_LIMIT:
                    reader = Items(model)
                    reader.feed(call, b"".join(kept))
                    kept = []
            yield chunk
        ended = True
    except TransportError as exc:
        failure = transport_errors.transport_error(dep.provider.target, exc)
        call.status, call.error = 502, failure.message
        return
    finally:
        try:
            await resp.aclose()
        finally:  # settled even if closing the upstream response fails
            await _finish_array(call, model, prompt, kept, size, reader, ended)


async def _finish_array(
    call: Call,
    model: str,
    prompt: Callable[[], int],
    kept: list[bytes],
    size: int,
    reader: Items | None,
    ended: bool,
) -> None:
    """Take a JSON-array stream's usage; charge what it generated when the usage is missing, or the
    whole items that arrived when the stream was cut (or ended before its closing bracket)."""
    whole: list[Any] | None = None  # the items of a whole array
    if ended and reader is not None:
        whole = [] if reader.finish(call) else None
    elif ended:
        try:
            items = json.loads(b"".join(kept))
        except json.JSONDecodeError:
            items = None
        else:
            whole = items if isinstance(items, list) else []
            for item in whole:
                _take_usage(call, item)
    if ended and whole is None:
        call.status, call.error = 502, "the upstream's stream was not a complete JSON array"
    if whole is not None and call.usage is not None:
        return

    def generated() -> Generated:
        if reader is not None:
            return reader.result()
        if whole is not None:  # a vendor that reports no usage
            return _items_texts(None, whole)
        return _items_texts(call, complete_items(b"".join(kept)))  # cut: its whole items

    await _settle(call, model, prompt, generated, size, whole is not None)


def _items_texts(call: Call | None, items: list[Any]) -> Generated:
    """The texts of whole answer items; with `call`, their usage taken too (a cut stream's)."""
    texts = Texts()
    for item in items:
        if call is not None:
            _take_usage(call, item)
        texts.add(item)
    return texts.result()


async def _settle(
    call: Call,
    model: str,
    prompt: Callable[[], int],
    generated: Callable[[], Generated],
    size: int,
    complete: bool,
) -> None:
    """Charge what was generated (read, and counted, in a worker thread when it is much)."""

    def work() -> Usage | None:
        texts = generated()  # first: reading a cut stream's items takes their usage
        return settle_usage(model, texts, call.usage, prompt, complete)

    await call.meter(work, model, size + call.request_bytes)


class Items:
    """A long JSON-array stream read as its items complete (memory bounded): each item's usage taken
    and its texts kept, counted every ITEMS_COUNTED items."""

    __slots__ = ("counted", "failed", "model", "pending", "seen", "size", "texts", "warming")

    def __init__(self, model: str) -> None:
        self.model = model
        self.pending: list[bytes] = []  # bytes after the last whole item
        self.size = 0
        self.failed = 0  # size of `pending` when it last held no whole item
        self.texts = Texts()
        self.seen = 0
        self.counted = Generated()
        self.warming: asyncio.Future[Any] | None = None

    def feed(self, call: Call, chunk: bytes) -> None:
        self.pending.append(chunk)
        self.size += len(chunk)
        if self.size >= 2 * self.failed:  # a long item is retried as it doubles, not on every chunk
            self._read(call)

    def _read(self, call: Call) -> None:
        raw = b"".join(self.pending)
        # surrogateescape keeps one character per invalid byte, so offsets map back to bytes exactly.
        text = raw.decode("utf-8", "surrogateescape")
        decoder = std_json.JSONDecoder()
        at = end = 0
        while True:
            while at < len(text) and text[at] in "[, \t\r\n":
                at += 1
            try:
                item, at = decoder.raw_decode(text, at)
            except ValueError:
                break
            end = at
            _take_usage(call, item)
            self.texts.add(item)
            self.seen += 1
        if end == 0:
            self.pending, self.failed = [raw], len(raw)
            return
        rest = raw[len(text[:end].encode("utf-8", "surrogateescape")) :]
        self.pending, self.size, self.failed = [rest], len(rest), 0
        if self.seen >= ITEMS_COUNTED:
            if loaded(self.model):  # counted now, so memory stays bounded
                self.counted = counted(self.counted, self.texts.result(), self.model)
                self.texts, self.seen = Texts(), 0
            elif self.warming is None or self.warming.done():  # loaded off the loop, then counted
                self.warming = warm(self.model)

    def finish(self, call: Call) -> bool:
        """Read what is left; whether the stream was a whole JSON array."""
        self.failed = 0
        self._read(call)
        return b"".join(self.pending).strip() in (b"]", b"")

    def result(self) -> Generated:
        out = self.texts.result()
        out.counted, out.counted_reasoning = self.counted.counted, self.counted.counted_reasoning
        return out
