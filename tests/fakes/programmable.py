"""A programmable fake OpenAI upstream: each request's fate is decided by the test, on cue.

It answers ``POST /v1/chat/completions`` (JSON, or an SSE stream in OpenAI's format with a usage
chunk when ``stream_options.include_usage`` is set, ending with ``data: [DONE]``). What a request
gets is looked up by its bearer key and its model, most specific first:

1. the next scripted reply in ``state.script[(key, model)]``, ``state.script[key]``,
   ``state.script[model]`` (each a list, consumed from the front);
2. else ``state.default[(key, model)]``, ``state.default[key]``, ``state.default[model]``;
3. else a normal answer.

A behaviour is a ``Reply`` or one of the names ``"ok" | "429" | "500" | "401" | "down" | "slow" |
"context_window" | "cut_stream" | "quota"`` (see ``Reply.of``). ``"down"`` drops the connection without
a response; ``"cut_stream"`` sends a role chunk and some content, then drops the connection.

A normal answer's text is ``"echo: <last user text>"`` and its ``system_fingerprint`` is the serving
key's label (``state.labels[key]``, else the key itself), so a test can tell which key served.
Every request is recorded in ``state.hits`` (key, label, model, arrival time, stream, outcome) before
the behaviour runs; ``state.count(...)`` and ``state.times(...)`` answer "how many reached it, and
when".

Tests change the script from their own thread while the fake serves from the uvicorn thread: use
``state.plan(...)`` and ``state.set_default(...)``, which take the lock the fake's lookups take.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

__all__ = ["Hit", "ProgrammableState", "Reply", "create_app"]

Selector = str | tuple[str, str]  # a bearer key, a model, or (key, model)

RPD_MESSAGE = (
    "You exceeded your current quota: requests per day (RPD) limit reached for this model. "
    "Please try again tomorrow."
)


@dataclass(frozen=True, slots=True)
class Reply:
    """One scripted outcome."""

    behaviour: str = "ok"  # ok | status | down | cut_stream
    status: int = 200
    headers: Mapping[str, str] = field(default_factory=dict)
    message: str | None = None
    type: str | None = None
    code: str | None = None
    delay: float = 0.0  # seconds to wait before answering (or dropping)
    chunks: int = 2  # cut_stream: content chunks sent before the drop
    text: str | None = None  # overrides the echo

    @property
    def name(self) -> str:
        return str(self.status) if self.behaviour == "status" else self.behaviour

    # --- constructors ---------------------------------------------------------------------------

    @classmethod
    def ok(cls, text: str | None = None, delay: float = 0.0) -> Reply:
        return cls("ok", text=text, delay=delay)

    @classmethod
    def slow(cls, seconds: float = 2.0) -> Reply:
        return cls("ok", delay=seconds)

    @classmethod
    def error(
        cls,
        status: int,
        message: str | None = None,
        *,
        type: str | None = None,
        code: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Reply:
        """An OpenAI error envelope with this status."""
        return cls(
            "status",
            status,
            dict(headers or {}),
            message or f"Scripted failure (HTTP {status}).",
            type or ("server_error" if status >= 500 else "invalid_request_error"),
            code,
        )

    @classmethod
    def rate_limited(
        cls, retry_after: float | str | None = None, message: str | None = None, **headers: str
    ) -> Reply:
        """A per-minute 429; with ``retry_after``, a ``retry-after`` header (seconds)."""
        out = dict(headers)
        if retry_after is not None:
            out["retry-after"] = str(retry_after)
        return cls.error(
            429,
            message or "Rate limit reached for requests. Please slow down.",
            type="requests",
            code="rate_limit_exceeded",
            headers=out,
        )

    @classmethod
    def quota_exhausted(cls) -> Reply:
        """A 429 for an exhausted daily quota (requests per day)."""
        return cls.error(429, RPD_MESSAGE, type="requests", code="rate_limit_exceeded")

    @classmethod
    def unauthorized(cls) -> Reply:
        return cls.error(
            401,
            "Incorrect API key provided. You can find your API key in your dashboard.",
            code="invalid_api_key",
        )

    @classmethod
    def context_window(cls) -> Reply:
        return cls.error(
            400,
            "This model's maximum context length is 8192 tokens. However, your messages resulted in "
            "12000 tokens. Please reduce the length of the messages.",
            code="context_length_exceeded",
        )

    @classmethod
    def down(cls) -> Reply:
        return cls("down")

    @classmethod
    def cut_stream(cls, chunks: int = 2) -> Reply:
        return cls("cut_stream", chunks=chunks)

    @classmethod
    def of(cls, behaviour: str | Reply) -> Reply:
        if isinstance(behaviour, Reply):
            return behaviour
        named: dict[str, Callable[[], Reply]] = {
            "ok": cls.ok,
            "429": cls.rate_limited,
            "500": lambda: cls.error(500, "The server had an error while processing your request."),
            "401": cls.unauthorized,
            "down": cls.down,
            "slow": cls.slow,
            "context_window": cls.context_window,
            "cut_stream": cls.cut_stream,
            "quota": cls.quota_exhausted,
        }
        if behaviour not in named:
            raise ValueError(f"unknown behaviour {behaviour!r}; expected one of {sorted(named)}")
        return named[behaviour]()


@dataclass(frozen=True, slots=True)
class Hit:
    key: str | None
    label: str
    model: str
    at: float  # time.time() on arrival
    stream: bool
    outcome: str  # Reply.name
    text: str  # the last user text


class ProgrammableState:
    def __init__(self, labels: Mapping[str, str] | None = None) -> None:
        self.script: dict[Selector, list[Reply | str]] = {}
        self.default: dict[Selector, Reply | str] = {}
        self.labels: dict[str, str] = dict(labels or {})
        self.hits: list[Hit] = []
        self.base_url = ""
        self._lock = threading.Lock()
        self._ids = itertools.count(1)

    # --- set-up ---------------------------------------------------------------------------------

    def plan(self, selector: Selector, *replies: Reply | str) -> None:
        """Append scripted replies for a key, a model or a (key, model)."""
        with self._lock:
            self.script.setdefault(selector, []).extend(replies)

    def set_default(self, selector: Selector, behaviour: Reply | str) -> None:
        with self._lock:
            self.default[selector] = behaviour

    def reset(self) -> None:
        with self._lock:
            self.script.clear()
            self.default.clear()
            self.hits.clear()

    # --- what happened --------------------------------------------------------------------------

    def select(
        self,
        key: str | None = None,
        model: str | None = None,
        since: float | None = None,
        outcome: str | None = None,
    ) -> list[Hit]:
        with self._lock:
            hits = list(self.hits)
        return [
            h
            for h in hits
            if (key is None or h.key == key)
            and (model is None or h.model == model)
            and (since is None or h.at >= since)
            and (outcome is None or h.outcome == outcome)
        ]

    def count(
        self,
        key: str | None = None,
        model: str | None = None,
        since: float | None = None,
        outcome: str | None = None,
    ) -> int:
        return len(self.select(key, model, since, outcome))

    def times(self, key: str | None = None, model: str | None = None) -> list[float]:
        return [h.at for h in self.select(key, model)]

    # --- serving --------------------------------------------------------------------------------

    def _decide(self, key: str | None, model: str) -> Reply:
        selectors: list[Selector] = [model] if key is None else [(key, model), key, model]
        with self._lock:
            for selector in selectors:
                queue = self.script.get(selector)
                if queue:
                    return Reply.of(queue.pop(0))
            for selector in selectors:
                if selector in self.default:
                    return Reply.of(self.default[selector])
        return Reply.ok()

    def _record(self, hit: Hit) -> None:
        with self._lock:
            self.hits.append(hit)

    def next_id(self) -> str:
        return f"chatcmpl-prog{next(self._ids):06d}"


# --- wire shapes ------------------------------------------------------------------------------------


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def _sse(obj: Any) -> bytes:
    return b"data: " + _dumps(obj) + b"\n\n"


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            str(p.get("text", "")) for p in content if isinstance(p, dict) and p.get("type") == "text"
        )
    return ""


def _last_user_text(body: Mapping[str, Any]) -> str:
    messages = body.get("messages")
    if not isinstance(messages, list):
        return ""
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            return _text_of(message.get("content"))
    return ""


def _tokens(text: str) -> int:
    return max(1, len(text.split()))


def _error_body(reply: Reply) -> bytes:
    return _dumps(
        {"error": {"message": reply.message, "type": reply.type, "param": None, "code": reply.code}}
    )


class _Chunks(Response):
    """An SSE answer, optionally dropped (no terminating chunk) after ``drop_after`` events."""

    def __init__(self, events: list[bytes], drop_after: int | None = None) -> None:
        super().__init__(content=None, status_code=200, media_type="text/event-stream")
        self.raw_headers = [(k, v) for k, v in self.raw_headers if k != b"content-length"]
        self.events = events
        self.drop_after = drop_after

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
        for i, event in enumerate(self.events):
            if self.drop_after is not None and i >= self.drop_after:
                await _drop(receive, abort=False)  # close: what was sent still arrives
                return
            await send({"type": "http.response.body", "body": event, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})


class _Drop(Response):
    """No response at all: the connection is aborted (the upstream is 'down')."""

    def __init__(self) -> None:
        super().__init__(content=None, status_code=500)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await _drop(receive, abort=True)


async def _drop(receive: Receive, abort: bool) -> None:
    """Abort (or close, after flushing what was sent) the client connection under uvicorn, then wait
    until uvicorn has noticed, so it neither answers with a 500 of its own nor logs an error."""
    cycle = getattr(receive, "__self__", None)
    transport = getattr(cycle, "transport", None)
    if transport is None:
        raise RuntimeError("cannot reach the uvicorn transport to drop the connection")
    if abort:
        transport.abort()
    else:
        transport.close()
    try:
        async with asyncio.timeout(1.0):
            while (await receive())["type"] != "http.disconnect":
                pass
    except TimeoutError:
        pass


def create_app(state: ProgrammableState) -> Starlette:
    async def chat(request: Request) -> Response:
        try:
            body = json.loads(await request.body())
        except ValueError:
            body = None
        if not isinstance(body, dict):
            return Response(
                _error_body(Reply.error(400, "The body is not a JSON object.")),
                400,
                media_type="application/json",
            )
        auth = request.headers.get("authorization", "")
        key = auth[7:] if auth.lower().startswith("bearer ") else None
        model = str(body.get("model", ""))
        stream = body.get("stream") is True
        options = body.get("stream_options")
        include_usage = isinstance(options, dict) and options.get("include_usage") is True
        user_text = _last_user_text(body)
        reply = state._decide(key, model)
        label = state.labels.get(key, key) if key is not None else "-"
        state._record(Hit(key, label, model, time.time(), stream, reply.name, user_text))
        if reply.delay:
            await asyncio.sleep(reply.delay)
        if reply.behaviour == "down":
            return _Drop()
        if reply.behaviour == "status":
            return Response(
                _error_body(reply), reply.status, headers=dict(reply.headers), media_type="application/json"
            )
        text = reply.text if reply.text is not None else f"echo: {user_text}"
        prompt, completion = _tokens(user_text), _tokens(text)
        usage = {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        }
        head = {
            "id": state.next_id(),
            "created": int(time.time()),
            "model": model,
            "system_fingerprint": label,
        }
        if not stream:
            return Response(
                _dumps(
                    {
                        **head,
                        "object": "chat.completion",
                        "choices": [
                            {
                                "index": 0,
                                "message": {"role": "assistant", "content": text, "refusal": None},
                                "logprobs": None,
                                "finish_reason": "stop",
                            }
                        ],
                        "usage": usage,
                    }
                ),
                media_type="application/json",
            )
        chunk = {**head, "object": "chat.completion.chunk"}

        def delta(d: dict[str, Any], finish: str | None = None) -> bytes:
            choice = {"index": 0, "delta": d, "logprobs": None, "finish_reason": finish}
            return _sse({**chunk, "choices": [choice]})

        pieces = [text[i : i + max(1, len(text) // 3)] for i in range(0, len(text), max(1, len(text) // 3))]
        events = [delta({"role": "assistant", "content": ""})]
        events += [delta({"content": piece}) for piece in pieces]
        if reply.behaviour == "cut_stream":
            return _Chunks(events, drop_after=1 + min(reply.chunks, len(pieces)))
        events.append(delta({}, "stop"))
        if include_usage:
            events.append(_sse({**chunk, "choices": [], "usage": usage}))
        events.append(b"data: [DONE]\n\n")
        return _Chunks(events)

    return Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"])])
