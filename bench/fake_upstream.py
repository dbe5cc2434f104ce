"""Fast fake OpenAI-compatible upstream for benchmarking the gateway.

Two interchangeable server implementations share the same response logic:

* ``protocol`` (default): a hand-written asyncio ``Protocol`` HTTP/1.1 keep-alive server on uvloop.
* ``asgi``: a raw ASGI app (no framework) served by uvicorn with uvloop + httptools.

Both answer ``POST /v1/chat/completions`` (non-streaming JSON or SSE streaming), ``GET /v1/models`` and
``GET /health``. The request body is only scanned with a few byte regexes (``model``, ``stream``,
``stream_options.include_usage``), never fully parsed.

Usage: ``python bench/fake_upstream.py --port 9001 [--impl protocol|asgi] [--chunk-delay-ms 0]``
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import re
import signal
import socket
import sys
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any, Final, cast

import orjson

CHAT_PATH: Final = b"/v1/chat/completions"
CREATED: Final = 1_700_000_000
DEFAULT_MODEL: Final = "bench-model"
MAX_MODEL_LEN: Final = 200
MAX_CACHE: Final = 256
MAX_HEAD: Final = 64 * 1024
MAX_BODY: Final = 16 * 1024 * 1024

CONTENT: Final = "Hello! This is a fixed benchmark reply from the fake upstream."
# Eight pieces that concatenate to CONTENT, one per streamed content chunk.
PIECES: Final = ("Hello!", " This", " is", " a fixed", " benchmark", " reply", " from the", " fake upstream.")
assert "".join(PIECES) == CONTENT
PROMPT_TOKENS: Final = 24
COMPLETION_TOKENS: Final = 14

_RE_MODEL: Final = re.compile(rb'"model"\s*:\s*"((?:[^"\\]|\\.){0,200})"')
_RE_STREAM: Final = re.compile(rb'"stream"\s*:\s*true')
_RE_INCLUDE_USAGE: Final = re.compile(rb'"include_usage"\s*:\s*true')


def _usage() -> dict[str, Any]:
    return {
        "prompt_tokens": PROMPT_TOKENS,
        "completion_tokens": COMPLETION_TOKENS,
        "total_tokens": PROMPT_TOKENS + COMPLETION_TOKENS,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0},
    }


def build_completion(model: str) -> bytes:
    """A fixed, realistic non-streaming ``chat.completion`` body."""
    return orjson.dumps(
        {
            "id": "chatcmpl-bench0000000000000000000000001",
            "object": "chat.completion",
            "created": CREATED,
            "model": model,
            "system_fingerprint": "fp_bench",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": CONTENT, "refusal": None},
                    "logprobs": None,
                    "finish_reason": "stop",
                }
            ],
            "usage": _usage(),
        }
    )


def build_stream_events(model: str, include_usage: bool) -> list[bytes]:
    """SSE events (each already framed as ``data: <json>\\n\\n``), ending with ``data: [DONE]``."""

    def chunk(delta: dict[str, Any], finish: str | None) -> dict[str, Any]:
        obj: dict[str, Any] = {
            "id": "chatcmpl-bench0000000000000000000000002",
            "object": "chat.completion.chunk",
            "created": CREATED,
            "model": model,
            "system_fingerprint": "fp_bench",
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        }
        if include_usage:
            obj["usage"] = None
        return obj

    objs: list[dict[str, Any]] = [chunk({"role": "assistant", "content": "", "refusal": None}, None)]
    objs.extend(chunk({"content": piece}, None) for piece in PIECES)
    objs.append(chunk({}, "stop"))
    if include_usage:
        final = chunk({}, None)
        final["choices"] = []
        final["usage"] = _usage()
        objs.append(final)
    events = [b"data: " + orjson.dumps(o) + b"\n\n" for o in objs]
    events.append(b"data: [DONE]\n\n")
    return events


@dataclass(frozen=True, slots=True)
class Reply:
    """A complete response. ``events`` is set for SSE streams (then ``body`` is unused)."""

    status: int
    content_type: bytes
    body: bytes = b""
    events: tuple[bytes, ...] = ()


def _error(status: int, message: str, etype: str) -> Reply:
    body = orjson.dumps({"error": {"message": message, "type": etype, "param": None, "code": None}})
    return Reply(status, b"application/json", body)


NOT_FOUND: Final = _error(404, "Unknown path.", "invalid_request_error")
NOT_ALLOWED: Final = _error(405, "Method not allowed.", "invalid_request_error")
HEALTH: Final = Reply(200, b"application/json", b'{"status":"ok"}')
MODELS: Final = Reply(
    200,
    b"application/json",
    orjson.dumps(
        {
            "object": "list",
            "data": [{"id": DEFAULT_MODEL, "object": "model", "created": CREATED, "owned_by": "bench"}],
        }
    ),
)


class Responder:
    """Maps (method, path, body) to a precomputed :class:`Reply` (cached per model)."""

    def __init__(self) -> None:
        self._cache: dict[tuple[bytes, bool, bool], Reply] = {}

    def reply(self, method: bytes, path: bytes, body: bytes) -> Reply:
        if path == CHAT_PATH:
            if method != b"POST":
                return NOT_ALLOWED
            return self._chat(body)
        if path == b"/health":
            return HEALTH
        if path == b"/v1/models":
            return MODELS
        return NOT_FOUND

    def _chat(self, body: bytes) -> Reply:
        m = _RE_MODEL.search(body)
        model_raw = m.group(1) if m else DEFAULT_MODEL.encode()
        stream = _RE_STREAM.search(body) is not None
        include_usage = stream and _RE_INCLUDE_USAGE.search(body) is not None
        key = (model_raw, stream, include_usage)
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        try:
            model = orjson.loads(b'"' + model_raw + b'"')
        except orjson.JSONDecodeError:
            model = DEFAULT_MODEL
        if not isinstance(model, str) or len(model) > MAX_MODEL_LEN:
            model = DEFAULT_MODEL
        if stream:
            reply = Reply(200, b"text/event-stream", events=tuple(build_stream_events(model, include_usage)))
        else:
            reply = Reply(200, b"application/json", build_completion(model))
        if len(self._cache) >= MAX_CACHE:
            self._cache.clear()
        self._cache[key] = reply
        return reply


REASONS: Final = {
    200: b"OK",
    400: b"Bad Request",
    404: b"Not Found",
    405: b"Method Not Allowed",
    413: b"Payload Too Large",
    431: b"Request Header Fields Too Large",
}


# --------------------------------------------------------------------------------------------------------
# Implementation 1: hand-written asyncio Protocol HTTP/1.1 server
# --------------------------------------------------------------------------------------------------------


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%b\r\n" % (len(data), data)


class _WireCache:
    """Full on-the-wire bytes per (Reply, keep_alive), so the hot path is a dict lookup + one write."""

    def __init__(self) -> None:
        self._plain: dict[tuple[int, bool], bytes] = {}
        self._stream: dict[tuple[int, bool], tuple[bytes, bytes]] = {}

    def plain(self, reply: Reply, keep_alive: bool) -> bytes:
        key = (id(reply), keep_alive)
        wire = self._plain.get(key)
        if wire is None:
            head = b"HTTP/1.1 %d %b\r\ncontent-type: %b\r\ncontent-length: %d\r\n%b\r\n" % (
                reply.status,
                REASONS.get(reply.status, b"OK"),
                reply.content_type,
                len(reply.body),
                b"" if keep_alive else b"connection: close\r\n",
            )
            wire = head + reply.body
            if len(self._plain) > 4 * MAX_CACHE:
                self._plain.clear()
            self._plain[key] = wire
        return wire

    def stream(self, reply: Reply, keep_alive: bool) -> tuple[bytes, bytes]:
        """(headers, whole chunked body including the terminating zero chunk)."""
        key = (id(reply), keep_alive)
        wire = self._stream.get(key)
        if wire is None:
            head = stream_head(keep_alive)
            wire = (head, b"".join(_chunk(e) for e in reply.events) + b"0\r\n\r\n")
            if len(self._stream) > 4 * MAX_CACHE:
                self._stream.clear()
            self._stream[key] = wire
        return wire


def stream_head(keep_alive: bool) -> bytes:
    return (
        b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n"
        b"transfer-encoding: chunked\r\n" + (b"" if keep_alive else b"connection: close\r\n") + b"\r\n"
    )


def _header_value(lower_head: bytes, name: bytes) -> bytes | None:
    """Value of header ``name`` (lowercase, with the leading CRLF and trailing colon) in a lowercased head."""
    i = lower_head.find(name)
    if i < 0:
        return None
    start = i + len(name)
    end = lower_head.find(b"\r\n", start)
    return lower_head[start : end if end >= 0 else len(lower_head)].strip()


class _ParseError(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


def _parse_chunked(buf: bytearray, pos: int) -> tuple[bytes, int] | None:
    """Decode a chunked body starting at ``pos``. Returns (body, end offset) or None if incomplete."""
    parts: list[bytes] = []
    total = 0
    while True:
        eol = buf.find(b"\r\n", pos)
        if eol < 0:
            return None
        size_field = bytes(buf[pos:eol]).split(b";", 1)[0].strip()
        try:
            size = int(size_field, 16)
        except ValueError:
            raise _ParseError(400) from None
        pos = eol + 2
        if size == 0:
            # Skip optional trailers up to the empty line.
            while True:
                eol = buf.find(b"\r\n", pos)
                if eol < 0:
                    return None
                if eol == pos:
                    return b"".join(parts), eol + 2
                pos = eol + 2
        total += size
        if total > MAX_BODY:
            raise _ParseError(413)
        if len(buf) < pos + size + 2:
            return None
        parts.append(bytes(buf[pos : pos + size]))
        pos += size + 2


class FakeHTTPProtocol(asyncio.Protocol):
    """Minimal HTTP/1.1 server: keep-alive, pipelining, content-length and chunked request bodies."""

    __slots__ = ("_buf", "_busy", "_continue_sent", "_delay", "_responder", "_task", "_transport", "_wire")

    def __init__(self, responder: Responder, wire: _WireCache, chunk_delay: float) -> None:
        self._responder = responder
        self._wire = wire
        self._delay = chunk_delay
        self._buf = bytearray()
        self._busy = False
        self._continue_sent = False
        self._transport: asyncio.Transport | None = None
        self._task: asyncio.Task[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop transports are not asyncio.Transport subclasses but implement the same interface.
        self._transport = cast(asyncio.Transport, transport)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        if self._task is not None:
            self._task.cancel()

    def data_received(self, data: bytes) -> None:
        self._buf += data
        if not self._busy:
            self._process()

    def _fail(self, status: int) -> None:
        transport = self._transport
        if transport is not None:
            transport.write(self._wire.plain(_error(status, "Bad request.", "invalid_request_error"), False))
            transport.close()
        self._buf.clear()

    def _process(self) -> None:
        buf = self._buf
        while buf and self._transport is not None:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                if len(buf) > MAX_HEAD:
                    self._fail(431)
                return
            head = bytes(buf[:end])
            line_end = head.find(b"\r\n")
            request_line = head if line_end < 0 else head[:line_end]
            parts = request_line.split(b" ")
            if len(parts) != 3:
                self._fail(400)
                return
            method, target, version = parts
            lower = head.lower()
            conn = _header_value(lower, b"\r\nconnection:")
            if version == b"HTTP/1.1":
                keep_alive = conn is None or b"close" not in conn
            else:
                keep_alive = conn is not None and b"keep-alive" in conn
            body_start = end + 4
            te = _header_value(lower, b"\r\ntransfer-encoding:")
            try:
                if te is not None and b"chunked" in te:
                    if not self._continue_sent:
                        self._maybe_continue(lower)
                    parsed = _parse_chunked(buf, body_start)
                    if parsed is None:
                        return
                    body, consumed = parsed
                else:
                    cl = _header_value(lower, b"\r\ncontent-length:")
                    length = int(cl) if cl else 0
                    if length < 0:
                        raise _ParseError(400)
                    if length > MAX_BODY:
                        raise _ParseError(413)
                    if len(buf) < body_start + length:
                        if not self._continue_sent:
                            self._maybe_continue(lower)
                        return
                    body = bytes(buf[body_start : body_start + length])
                    consumed = body_start + length
            except ValueError:
                self._fail(400)
                return
            except _ParseError as e:
                self._fail(e.status)
                return
            del buf[:consumed]
            self._continue_sent = False
            q = target.find(b"?")
            path = target if q < 0 else target[:q]
            reply = self._responder.reply(method, path, body)
            transport = self._transport
            if not reply.events:
                transport.write(self._wire.plain(reply, keep_alive))
            elif self._delay <= 0:
                head_bytes, chunks = self._wire.stream(reply, keep_alive)
                transport.write(head_bytes + chunks)
            else:
                self._busy = True
                self._task = asyncio.get_running_loop().create_task(self._slow_stream(reply, keep_alive))
                return
            if not keep_alive:
                transport.close()
                return

    def _maybe_continue(self, lower_head: bytes) -> None:
        expect = _header_value(lower_head, b"\r\nexpect:")
        if expect is not None and b"100-continue" in expect and self._transport is not None:
            self._transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            self._continue_sent = True

    async def _slow_stream(self, reply: Reply, keep_alive: bool) -> None:
        transport = self._transport
        try:
            if transport is None:
                return
            events = reply.events
            transport.write(stream_head(keep_alive) + _chunk(events[0]))
            for event in events[1:]:
                await asyncio.sleep(self._delay)
                if transport.is_closing():
                    return
                transport.write(_chunk(event))
            transport.write(b"0\r\n\r\n")
            if not keep_alive:
                transport.close()
                return
        finally:
            self._busy = False
            self._task = None
        if self._buf:
            self._process()


async def serve_protocol(host: str, port: int, chunk_delay: float, ready: Callable[[], None]) -> None:
    loop = asyncio.get_running_loop()
    responder = Responder()
    wire = _WireCache()
    server = await loop.create_server(
        lambda: FakeHTTPProtocol(responder, wire, chunk_delay), host, port, backlog=4096, reuse_address=True
    )
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    ready()
    async with server:
        await stop.wait()


# --------------------------------------------------------------------------------------------------------
# Implementation 2: raw ASGI app for uvicorn (uvloop + httptools)
# --------------------------------------------------------------------------------------------------------

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


def make_asgi_app(chunk_delay: float) -> Callable[[Scope, Receive, Send], Awaitable[None]]:
    responder = Responder()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                msg = await receive()
                if msg["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif msg["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        body = b""
        while True:
            msg = await receive()
            if msg["type"] == "http.disconnect":
                return
            body += msg.get("body", b"")
            if not msg.get("more_body", False):
                break
        path: str = scope["path"]
        reply = responder.reply(scope["method"].encode(), path.encode(), body)
        if not reply.events:
            await send(
                {
                    "type": "http.response.start",
                    "status": reply.status,
                    "headers": [
                        (b"content-type", reply.content_type),
                        (b"content-length", str(len(reply.body)).encode()),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": reply.body})
            return
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")],
            }
        )
        if chunk_delay <= 0:
            # Same wire behaviour as the protocol server: all events in one body write.
            await send({"type": "http.response.body", "body": b"".join(reply.events)})
            return
        events = reply.events
        await send({"type": "http.response.body", "body": events[0], "more_body": True})
        for event in events[1:]:
            await asyncio.sleep(chunk_delay)
            await send({"type": "http.response.body", "body": event, "more_body": True})
        await send({"type": "http.response.body", "body": b""})

    return app


def serve_asgi(host: str, port: int, chunk_delay: float) -> None:
    import uvicorn

    config = uvicorn.Config(
        make_asgi_app(chunk_delay),
        host=host,
        port=port,
        loop="uvloop",
        http="httptools",
        lifespan="off",
        access_log=False,
        log_level="warning",
        server_header=False,
        date_header=False,
        backlog=4096,
    )
    print(f"fake upstream (asgi/uvicorn) listening on http://{host}:{port}", flush=True)
    uvicorn.Server(config).run()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Fast fake OpenAI upstream for benchmarks.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9001)
    parser.add_argument(
        "--impl",
        choices=("protocol", "asgi"),
        default="protocol",
        help="server implementation (default: protocol, the faster one)",
    )
    parser.add_argument(
        "--chunk-delay-ms",
        type=float,
        default=0.0,
        help="sleep before each streamed chunk after the first (default 0)",
    )
    args = parser.parse_args(argv)
    delay = max(0.0, args.chunk_delay_ms / 1000.0)
    if args.impl == "asgi":
        serve_asgi(args.host, args.port, delay)
        return

    import uvloop

    def ready() -> None:
        print(f"fake upstream (protocol/uvloop) listening on http://{args.host}:{args.port}", flush=True)

    uvloop.run(serve_protocol(args.host, args.port, delay, ready))


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(0)
