"""A deterministic fake of the OpenAI HTTP API, for exercising the gateway in tests.

The wire format follows the shapes the official ``openai`` SDK parses (see
``openai/types``): JSON bodies, OpenAI error envelopes, and SSE streams made of
``data: <json>\\n\\n`` events ending with ``data: [DONE]\\n\\n``.

Behaviour is chosen by the request itself:

* chat replies are ``"echo: " + <last user text>`` (see ``create_app`` for details);
* the ``model`` name selects failure modes (see ``FAILURE_MODELS``);
* ``FakeState.next_responses`` lets a test script arbitrary raw responses.

Every request is recorded in ``FakeState.requests``.
"""

from __future__ import annotations

import asyncio
import base64
import contextvars
import hashlib
import json
import logging
import math
import re
import secrets
import struct
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

__all__ = [
    "DEFAULT_MODELS",
    "FAILURE_MODELS",
    "FakeState",
    "RecordedRequest",
    "create_app",
    "openai_error",
]

RecordedRequest = dict[str, Any]
RawResponse = tuple[int, Mapping[str, str], bytes]

DEFAULT_MODELS: tuple[str, ...] = (
    "gpt-4o-mini",
    "gpt-4o",
    "gpt-4.1-mini",
    "o4-mini",
    "gpt-3.5-turbo-instruct",
    "text-embedding-3-small",
    "text-embedding-3-large",
    "omni-moderation-latest",
    "dall-e-3",
    "gpt-image-1",
    "tts-1",
    "whisper-1",
)

#: Model names that trigger a failure mode instead of a normal answer.
FAILURE_MODELS: dict[str, str] = {
    "fail-429": "429 rate limit, headers retry-after: 2 and x-ratelimit-remaining-requests: 0",
    "fail-500": "500 server_error",
    "fail-503": "503 overloaded (server_error)",
    "fail-400": "400 invalid_request_error, param 'messages', code 'invalid_value'",
    "fail-401": "401 invalid_request_error, code 'invalid_api_key'",
    "bad-json": "200 application/json whose body is truncated JSON",
    "bad-stream-json": "stream: a valid role chunk, then a data line with truncated JSON, then [DONE]",
    "cut-stream": "stream: role chunk + 2 content chunks, then the connection is dropped (no [DONE])",
    "slow-first-byte": "sleep FakeState.slow_seconds before sending anything, then answer normally",
    "slow-stream": "stream normally but sleep FakeState.chunk_delay between events",
    "slow-first-chunk": "stream: headers at once, then sleep FakeState.slow_seconds before the first event",
    "no-usage": "answer normally but never report usage (an old vLLM/Ollama), even when a stream asks",
    "cache-hit": "answer normally; usage adds a cached 900-token prefix (cached_tokens 900)",
}

SYSTEM_FINGERPRINT = "fp_fake0penai"


@dataclass
class FakeState:
    """Mutable configuration and recording shared between a test and the fake server."""

    #: Every request received, oldest first; see ``create_app`` for the dict layout.
    requests: list[RecordedRequest] = field(default_factory=list)
    #: If non-empty, only these bearer tokens are accepted (others get 401 invalid_api_key).
    valid_keys: set[str] = field(default_factory=set)
    #: FIFO of ``(status, headers, body)`` returned verbatim for the next requests (any endpoint).
    next_responses: list[RawResponse] = field(default_factory=list)
    #: Delay before the first byte for model ``slow-first-byte``.
    slow_seconds: float = 2.0
    #: Delay between SSE events for model ``slow-stream``.
    chunk_delay: float = 0.2
    #: Models listed by ``GET /v1/models`` and retrievable via ``GET /v1/models/{id}``.
    models: list[str] = field(default_factory=lambda: list(DEFAULT_MODELS))
    #: Sent as ``system_fingerprint`` in chat/completions responses.
    system_fingerprint: str = SYSTEM_FINGERPRINT
    #: Streams whose client (the gateway) went away before the stream ended.
    disconnects: int = 0
    #: The SSE events the latest stream actually sent, in order (what a client could have received).
    sent_events: list[bytes] = field(default_factory=list)

    @property
    def last_request(self) -> RecordedRequest:
        if not self.requests:
            raise AssertionError("the fake upstream has not received any request")
        return self.requests[-1]

    def requests_to(self, path: str) -> list[RecordedRequest]:
        """Recorded requests whose path equals ``path`` (e.g. ``"/v1/chat/completions"``)."""
        return [r for r in self.requests if r["path"] == path]

    def reset(self) -> None:
        """Forget recorded requests and queued responses."""
        self.requests.clear()
        self.next_responses.clear()


# --------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------


def _dumps(obj: Any, *, pretty: bool = False) -> bytes:
    if pretty:
        return json.dumps(obj, indent=2, ensure_ascii=False).encode()
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


def _rand_id(prefix: str, nbytes: int = 12) -> str:
    return prefix + secrets.token_hex(nbytes)


def _base_headers() -> dict[str, str]:
    return {
        "x-request-id": _rand_id("req_", 16),
        "openai-version": "2020-10-01",
        "openai-processing-ms": "7",
    }


def openai_error(
    status: int,
    message: str,
    *,
    type: str = "invalid_request_error",
    param: str | None = None,
    code: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> Response:
    """A response with OpenAI's error envelope ``{"error": {message, type, param, code}}``."""
    body = {"error": {"message": message, "type": type, "param": param, "code": code}}
    all_headers = _base_headers()
    all_headers.update(headers or {})
    return Response(
        _dumps(body, pretty=True), status_code=status, headers=all_headers, media_type="application/json"
    )


def _json_response(obj: Any, *, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    all_headers = _base_headers()
    all_headers.update(
        {
            "x-ratelimit-limit-requests": "10000",
            "x-ratelimit-remaining-requests": "9999",
            "x-ratelimit-reset-requests": "6ms",
        }
    )
    all_headers.update(headers or {})
    return Response(
        _dumps(obj, pretty=True), status_code=status, headers=all_headers, media_type="application/json"
    )


def _words(text: str) -> int:
    return len(text.split())


def _split_chunks(text: str) -> list[str]:
    """Split ``text`` into stream pieces ("tokens"): words with trailing space, at least 3 if possible."""
    pieces = re.findall(r"\S+\s*|\s+", text)
    if len(pieces) >= 3:
        return pieces
    if len(text) >= 3:
        a, b = len(text) // 3, 2 * len(text) // 3
        return [text[:a], text[a:b], text[b:]]
    return list(text) if text else [""]


def _float32(x: float) -> float:
    """Round to the nearest float32 so float and base64 encodings decode identically."""
    return float(struct.unpack("<f", struct.pack("<f", x))[0])


# Logging: an intentionally dropped stream makes uvicorn log
# "ASGI callable returned without completing response." -- silence only that case.
_DROPPING_CONNECTION: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "fake_openai_dropping_connection", default=False
)


class _IntentionalDropFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not _DROPPING_CONNECTION.get()


_DROP_FILTER = _IntentionalDropFilter()


def _install_log_filter() -> None:
    logger = logging.getLogger("uvicorn.error")
    if _DROP_FILTER not in logger.filters:
        logger.addFilter(_DROP_FILTER)


class _EventStream(Response):
    """A ``text/event-stream`` response made of pre-rendered events.

    ``delay`` sleeps between events (``first_delay`` before the first); ``drop_after`` sends only
    that many events and then returns without finishing the chunked body, which makes uvicorn close
    the socket.
    """

    def __init__(
        self,
        events: Sequence[bytes],
        *,
        headers: Mapping[str, str],
        delay: float = 0.0,
        first_delay: float = 0.0,
        drop_after: int | None = None,
        state: FakeState | None = None,
    ) -> None:
        super().__init__(content=None, status_code=200, headers=headers, media_type="text/event-stream")
        # Streaming: no content-length.
        self.raw_headers = [(k, v) for k, v in self.raw_headers if k != b"content-length"]
        self.events = list(events)
        self.delay = delay
        self.first_delay = first_delay
        self.drop_after = drop_after
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        disconnected = asyncio.Event()

        async def watch_disconnect() -> None:
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    disconnected.set()
                    if self.state is not None:
                        self.state.disconnects += 1
                    return

        watcher = asyncio.ensure_future(watch_disconnect())
        sent: list[bytes] = []
        if self.state is not None:
            self.state.sent_events = sent
        try:
            await send(
                {"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers}
            )
            for i, event in enumerate(self.events):
                if self.drop_after is not None and i >= self.drop_after:
                    _install_log_filter()
                    _DROPPING_CONNECTION.set(True)
                    return
                if i and self.delay:
                    await asyncio.sleep(self.delay)
                elif not i and self.first_delay:
                    await asyncio.sleep(self.first_delay)
                if disconnected.is_set():
                    return
                await send({"type": "http.response.body", "body": event, "more_body": True})
                sent.append(event)
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            watcher.cancel()


def _sse(obj: Any) -> bytes:
    return b"data: " + _dumps(obj) + b"\n\n"


_SSE_DONE = b"data: [DONE]\n\n"


# --------------------------------------------------------------------------------------
# Request parsing helpers
# --------------------------------------------------------------------------------------


def _content_text(content: Any) -> tuple[str, int, int]:
    """Return (joined text, number of image parts, number of audio parts) of message content."""
    if content is None:
        return "", 0, 0
    if isinstance(content, str):
        return content, 0, 0
    texts: list[str] = []
    images = audio = 0
    if isinstance(content, list):
        for part in content:
            if isinstance(part, str):
                texts.append(part)
                continue
            if not isinstance(part, dict):
                continue
            kind = part.get("type")
            if kind == "text" and isinstance(part.get("text"), str):
                texts.append(part["text"])
            elif kind == "image_url":
                images += 1
            elif kind == "input_audio":
                audio += 1
    return " ".join(texts), images, audio


def _last_user_text(messages: list[dict[str, Any]]) -> str:
    for message in reversed(messages):
        if message.get("role") == "user":
            text, images, audio = _content_text(message.get("content"))
            if images:
                text += f" [images: {images}]"
            if audio:
                text += f" [audio: {audio}]"
            return text
    return ""


def _prompt_words(messages: list[dict[str, Any]]) -> int:
    total = 0
    for message in messages:
        total += _words(_content_text(message.get("content"))[0])
    return max(total, 1)


def _example_for_schema(schema: Any, root: Any, depth: int = 0) -> Any:
    """Build a minimal JSON value satisfying a (reasonable) JSON schema."""
    if depth > 32 or not isinstance(schema, dict):
        return None
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/"):
        target: Any = root
        for part in ref[2:].split("/"):
            target = (
                target.get(part.replace("~1", "/").replace("~0", "~"), {}) if isinstance(target, dict) else {}
            )
        return _example_for_schema(target, root, depth + 1)
    if "const" in schema:
        return schema["const"]
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return schema["enum"][0]
    for key in ("anyOf", "oneOf"):
        variants = schema.get(key)
        if isinstance(variants, list) and variants:
            non_null = [v for v in variants if not (isinstance(v, dict) and v.get("type") == "null")]
            return _example_for_schema((non_null or variants)[0], root, depth + 1)
    if isinstance(schema.get("allOf"), list):
        merged: dict[str, Any] = {}
        for sub in schema["allOf"]:
            value = _example_for_schema(sub, root, depth + 1)
            if isinstance(value, dict):
                merged.update(value)
        if merged or "type" not in schema:
            return merged
    kind = schema.get("type")
    if isinstance(kind, list):
        non_null_kinds = [k for k in kind if k != "null"]
        kind = non_null_kinds[0] if non_null_kinds else "null"
    if kind is None:
        if "properties" in schema:
            kind = "object"
        elif "items" in schema:
            kind = "array"
        else:
            kind = "string"
    if kind == "string":
        return "x"
    if kind == "integer":
        return 1
    if kind == "number":
        return 1.5
    if kind == "boolean":
        return True
    if kind == "null":
        return None
    if kind == "array":
        min_items = schema.get("minItems") or 0
        if isinstance(min_items, int) and min_items > 0:
            item = _example_for_schema(schema.get("items", {}), root, depth + 1)
            return [item] * min_items
        return []
    if kind == "object":
        props = schema.get("properties") or {}
        return {name: _example_for_schema(sub, root, depth + 1) for name, sub in props.items()}
    return None


def _logprob_entries(pieces: list[str], top: int) -> list[dict[str, Any]]:
    entries = []
    for i, piece in enumerate(pieces):
        logprob = -round(0.01 * (i + 1), 4)
        alternatives = [{"token": piece, "logprob": logprob, "bytes": list(piece.encode())}]
        for j in range(1, top):
            alt = f"alt{j}"
            alternatives.append({"token": alt, "logprob": logprob - j, "bytes": list(alt.encode())})
        entries.append(
            {
                "token": piece,
                "logprob": logprob,
                "bytes": list(piece.encode()),
                "top_logprobs": alternatives[:top] if top > 0 else [],
            }
        )
    return entries


# --------------------------------------------------------------------------------------
# Chat completions
# --------------------------------------------------------------------------------------


@dataclass
class _ChatPlan:
    content: str | None
    tool_calls: list[tuple[str, str]]  # (function name, arguments JSON string)
    finish_reason: str


def _plan_chat(body: dict[str, Any]) -> _ChatPlan:
    messages: list[dict[str, Any]] = [m for m in body.get("messages") or [] if isinstance(m, dict)]
    user_text = _last_user_text(messages)
    last_is_tool = bool(messages) and messages[-1].get("role") == "tool"

    tools = [t for t in body.get("tools") or [] if isinstance(t, dict) and t.get("type") == "function"]
    tool_choice = body.get("tool_choice")
    if tools and tool_choice != "none" and not last_is_tool:
        names = [str((t.get("function") or {}).get("name")) for t in tools]
        if isinstance(tool_choice, dict) and tool_choice.get("type") == "function":
            wanted = (tool_choice.get("function") or {}).get("name")
            chosen = [n for n in names if n == wanted] or [str(wanted)]
        elif body.get("parallel_tool_calls") is False:
            chosen = names[:1]
        else:
            chosen = names
        args = json.dumps({"query": user_text})
        return _ChatPlan(
            content=None, tool_calls=[(name, args) for name in chosen], finish_reason="tool_calls"
        )

    if last_is_tool:
        content = "tool said: " + _content_text(messages[-1].get("content"))[0]
    else:
        content = "echo: " + user_text

    response_format = body.get("response_format")
    if isinstance(response_format, dict):
        if response_format.get("type") == "json_object":
            content = json.dumps({"echo": user_text})
        elif response_format.get("type") == "json_schema":
            spec = response_format.get("json_schema") or {}
            schema = spec.get("schema") or {}
            content = json.dumps(_example_for_schema(schema, schema))
    return _ChatPlan(content=content, tool_calls=[], finish_reason="stop")


def _chat_usage(body: dict[str, Any], plan: _ChatPlan, n: int) -> dict[str, Any]:
    prompt = _prompt_words([m for m in body.get("messages") or [] if isinstance(m, dict)])
    if plan.tool_calls:
        completion = sum(_words(args) for _, args in plan.tool_calls)
    else:
        completion = _words(plan.content or "")
    completion = max(completion, 1) * n
    reasoning = 7 if body.get("reasoning_effort") is not None else 0
    completion += reasoning
    cached = 900 if body.get("model") == "cache-hit" else 0  # a cached 900-token prefix
    prompt += cached
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": cached, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": reasoning,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def _choice_count(body: dict[str, Any]) -> int:
    n = body.get("n")
    return n if isinstance(n, int) and n > 0 else 1


def _top_logprobs(body: dict[str, Any]) -> int:
    top = body.get("top_logprobs")
    return top if isinstance(top, int) and top > 0 else 0


def _chat_completion(body: dict[str, Any], state: FakeState) -> dict[str, Any]:
    plan = _plan_chat(body)
    n = _choice_count(body)
    want_logprobs = body.get("logprobs") is True
    choices = []
    for index in range(n):
        message: dict[str, Any] = {
            "role": "assistant",
            "content": plan.content,
            "refusal": None,
            "annotations": [],
        }
        if plan.tool_calls:
            message["tool_calls"] = [
                {"id": _rand_id("call_"), "type": "function", "function": {"name": name, "arguments": args}}
                for name, args in plan.tool_calls
            ]
        logprobs = None
        if want_logprobs:
            pieces = _split_chunks(plan.content) if plan.content is not None else []
            logprobs = {"content": _logprob_entries(pieces, _top_logprobs(body)), "refusal": None}
        choices.append(
            {"index": index, "message": message, "logprobs": logprobs, "finish_reason": plan.finish_reason}
        )
    return {
        "id": _rand_id("chatcmpl-"),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body.get("model"),
        "choices": choices,
        "usage": _chat_usage(body, plan, n),
        "service_tier": "default",
        "system_fingerprint": state.system_fingerprint,
    }


def _split_arguments(args: str) -> list[str]:
    """Split a JSON arguments string into several fragments (like a model would)."""
    if len(args) < 4:
        return [args]
    size = max(1, math.ceil(len(args) / 4))
    return [args[i : i + size] for i in range(0, len(args), size)]


def _chat_stream_events(body: dict[str, Any], state: FakeState) -> list[bytes]:
    plan = _plan_chat(body)
    n = _choice_count(body)
    want_logprobs = body.get("logprobs") is True
    top = _top_logprobs(body)
    stream_options = body.get("stream_options") or {}
    include_usage = isinstance(stream_options, dict) and stream_options.get("include_usage") is True
    obfuscate = not (isinstance(stream_options, dict) and stream_options.get("include_obfuscation") is False)

    base = {
        "id": _rand_id("chatcmpl-"),
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": body.get("model"),
        "service_tier": "default",
        "system_fingerprint": state.system_fingerprint,
    }

    def chunk(choices: list[dict[str, Any]]) -> dict[str, Any]:
        obj = dict(base, choices=choices)
        if include_usage:
            obj["usage"] = None
        if obfuscate:
            obj["obfuscation"] = secrets.token_urlsafe(3)
        return obj

    def choice(
        index: int, delta: dict[str, Any], *, finish: str | None = None, logprobs: Any = None
    ) -> dict[str, Any]:
        return {"index": index, "delta": delta, "logprobs": logprobs, "finish_reason": finish}

    # Per-choice list of choice objects, then interleave across choices.
    per_choice: list[list[dict[str, Any]]] = []
    for index in range(n):
        items: list[dict[str, Any]] = []
        if plan.tool_calls:
            items.append(choice(index, {"role": "assistant", "content": None, "refusal": None}))
            for call_index, (name, args) in enumerate(plan.tool_calls):
                items.append(
                    choice(
                        index,
                        {
                            "tool_calls": [
                                {
                                    "index": call_index,
                                    "id": _rand_id("call_"),
                                    "type": "function",
                                    "function": {"name": name, "arguments": ""},
                                }
                            ]
                        },
                    )
                )
                for fragment in _split_arguments(args):
                    items.append(
                        choice(
                            index,
                            {"tool_calls": [{"index": call_index, "function": {"arguments": fragment}}]},
                        )
                    )
        else:
            items.append(choice(index, {"role": "assistant", "content": "", "refusal": None}))
            pieces = _split_chunks(plan.content or "")
            entries = _logprob_entries(pieces, top)
            for piece, entry in zip(pieces, entries, strict=True):
                logprobs = {"content": [entry], "refusal": None} if want_logprobs else None
                items.append(choice(index, {"content": piece}, logprobs=logprobs))
        items.append(choice(index, {}, finish=plan.finish_reason))
        per_choice.append(items)

    events: list[bytes] = []
    for step in range(max(len(items) for items in per_choice)):
        for items in per_choice:
            if step < len(items):
                events.append(_sse(chunk([items[step]])))
    if include_usage:
        usage_chunk: dict[str, Any] = dict(base, choices=[], usage=_chat_usage(body, plan, n))
        if obfuscate:
            usage_chunk["obfuscation"] = secrets.token_urlsafe(3)
        events.append(_sse(usage_chunk))
    events.append(_SSE_DONE)
    return events


# --------------------------------------------------------------------------------------
# Legacy completions
# --------------------------------------------------------------------------------------


def _prompts(body: dict[str, Any]) -> list[str]:
    prompt = body.get("prompt", "")
    if isinstance(prompt, str):
        return [prompt]
    if isinstance(prompt, list):
        if all(isinstance(p, int) for p in prompt):  # a single token array
            return [" ".join(str(p) for p in prompt)]
        return [p if isinstance(p, str) else " ".join(str(t) for t in p) for p in prompt]
    return [str(prompt)]


def _completion_usage(prompts: list[str], texts: list[str]) -> dict[str, Any]:
    prompt = max(sum(_words(p) for p in prompts), 1)
    completion = sum(max(_words(t), 1) for t in texts)
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def _completion_choices(body: dict[str, Any]) -> list[tuple[int, str]]:
    n = _choice_count(body)
    out = []
    for p_index, prompt in enumerate(_prompts(body)):
        for j in range(n):
            out.append((p_index * n + j, "echo: " + prompt))
    return out


def _completion(body: dict[str, Any], state: FakeState) -> dict[str, Any]:
    choices = _completion_choices(body)
    return {
        "id": _rand_id("cmpl-"),
        "object": "text_completion",
        "created": int(time.time()),
        "model": body.get("model"),
        "system_fingerprint": state.system_fingerprint,
        "choices": [
            {"text": text, "index": index, "logprobs": None, "finish_reason": "stop"}
            for index, text in choices
        ],
        "usage": _completion_usage(_prompts(body), [t for _, t in choices]),
    }


def _completion_stream_events(body: dict[str, Any], state: FakeState) -> list[bytes]:
    choices = _completion_choices(body)
    stream_options = body.get("stream_options") or {}
    include_usage = isinstance(stream_options, dict) and stream_options.get("include_usage") is True
    base = {
        "id": _rand_id("cmpl-"),
        "object": "text_completion",
        "created": int(time.time()),
        "model": body.get("model"),
        "system_fingerprint": state.system_fingerprint,
    }

    def chunk(index: int, text: str, finish: str | None) -> bytes:
        obj = dict(base, choices=[{"text": text, "index": index, "logprobs": None, "finish_reason": finish}])
        if include_usage:
            obj["usage"] = None
        return _sse(obj)

    per_choice = [
        [chunk(index, piece, None) for piece in _split_chunks(text)] + [chunk(index, "", "stop")]
        for index, text in choices
    ]
    events = []
    for step in range(max(len(c) for c in per_choice)):
        for items in per_choice:
            if step < len(items):
                events.append(items[step])
    if include_usage:
        events.append(
            _sse(dict(base, choices=[], usage=_completion_usage(_prompts(body), [t for _, t in choices])))
        )
    events.append(_SSE_DONE)
    return events


# --------------------------------------------------------------------------------------
# Embeddings, moderations, images, audio, models
# --------------------------------------------------------------------------------------


def _embedding_inputs(raw: Any) -> list[Any]:
    if isinstance(raw, str):
        return [raw]
    if isinstance(raw, list):
        if raw and all(isinstance(x, int) for x in raw):
            return [raw]  # one token array
        return list(raw)
    return [raw]


def _vector(item: Any, dims: int) -> list[float]:
    seed = json.dumps(item, separators=(",", ":")).encode()
    values: list[float] = []
    block = 0
    while len(values) < dims:
        digest = hashlib.sha256(seed + b"#" + str(block).encode()).digest()
        for i in range(0, len(digest), 2):
            values.append(int.from_bytes(digest[i : i + 2], "little") / 32767.5 - 1.0)
        block += 1
    values = values[:dims]
    norm = math.sqrt(sum(v * v for v in values)) or 1.0
    return [_float32(v / norm) for v in values]


def _embeddings(body: dict[str, Any]) -> dict[str, Any]:
    dims = body.get("dimensions")
    dims = dims if isinstance(dims, int) and dims > 0 else 8
    as_base64 = body.get("encoding_format") == "base64"
    data = []
    tokens = 0
    for index, item in enumerate(_embedding_inputs(body.get("input"))):
        vector = _vector(item, dims)
        tokens += len(item) if isinstance(item, list) else max(_words(str(item)), 1)
        embedding: Any = vector
        if as_base64:
            embedding = base64.b64encode(struct.pack(f"<{dims}f", *vector)).decode()
        data.append({"object": "embedding", "index": index, "embedding": embedding})
    return {
        "object": "list",
        "data": data,
        "model": body.get("model"),
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }


_MODERATION_CATEGORIES = (
    "harassment",
    "harassment/threatening",
    "hate",
    "hate/threatening",
    "illicit",
    "illicit/violent",
    "self-harm",
    "self-harm/instructions",
    "self-harm/intent",
    "sexual",
    "sexual/minors",
    "violence",
    "violence/graphic",
)
_IMAGE_CAPABLE_CATEGORIES = frozenset(
    {"self-harm", "self-harm/instructions", "self-harm/intent", "sexual", "violence", "violence/graphic"}
)


def _moderations(body: dict[str, Any]) -> dict[str, Any]:
    raw = body.get("input", "")
    groups: list[list[str]]  # one result per group; each group lists its input kinds
    if isinstance(raw, str):
        groups = [["text"]]
    elif isinstance(raw, list) and raw and all(isinstance(x, dict) for x in raw):
        kinds = sorted({"image" if x.get("type") == "image_url" else "text" for x in raw})
        groups = [kinds]
    elif isinstance(raw, list):
        groups = [["text"] for _ in raw] or [["text"]]
    else:
        groups = [["text"]]
    results = []
    for kinds in groups:
        applied = {
            c: [k for k in kinds if k == "text" or c in _IMAGE_CAPABLE_CATEGORIES]
            for c in _MODERATION_CATEGORIES
        }
        results.append(
            {
                "flagged": False,
                "categories": dict.fromkeys(_MODERATION_CATEGORIES, False),
                "category_scores": {c: 1e-06 for c in _MODERATION_CATEGORIES},
                "category_applied_input_types": applied,
            }
        )
    return {
        "id": _rand_id("modr-"),
        "model": body.get("model") or "omni-moderation-latest",
        "results": results,
    }


# A valid 1x1 transparent PNG.
_PNG_1X1 = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
)


def _images(body: dict[str, Any]) -> dict[str, Any]:
    n = _choice_count(body)
    prompt = str(body.get("prompt", ""))
    data = []
    for i in range(n):
        if body.get("response_format") == "b64_json":
            data.append({"b64_json": base64.b64encode(_PNG_1X1).decode(), "revised_prompt": prompt})
        else:
            digest = hashlib.sha256(f"{prompt}#{i}".encode()).hexdigest()[:16]
            data.append({"url": f"https://images.fake-openai.test/{digest}.png", "revised_prompt": prompt})
    return {"created": int(time.time()), "data": data}


_SPEECH_MEDIA_TYPES = {
    "mp3": "audio/mpeg",
    "opus": "audio/opus",
    "aac": "audio/aac",
    "flac": "audio/flac",
    "wav": "audio/wav",
    "pcm": "audio/pcm",
}


# --------------------------------------------------------------------------------------
# The application
# --------------------------------------------------------------------------------------


Handler = Callable[[Request, RecordedRequest], Awaitable[Response]]


def _failure_response(model: Any) -> Response | None:
    if model == "fail-429":
        return openai_error(
            429,
            "Rate limit reached for requests",
            type="requests",
            code="rate_limit_exceeded",
            headers={
                "retry-after": "2",
                "x-ratelimit-limit-requests": "10000",
                "x-ratelimit-remaining-requests": "0",
                "x-ratelimit-reset-requests": "2s",
            },
        )
    if model == "fail-500":
        return openai_error(
            500, "The server had an error while processing your request.", type="server_error"
        )
    if model == "fail-503":
        return openai_error(
            503,
            "The engine is currently overloaded, please try again later.",
            type="server_error",
            code=None,
        )
    if model == "fail-400":
        return openai_error(
            400,
            "Invalid value for 'messages': the fake upstream was asked to reject this request.",
            param="messages",
            code="invalid_value",
        )
    if model == "fail-401":
        return _invalid_key_error("sk-fake-rejected")
    return None


def _invalid_key_error(key: str) -> Response:
    shown = key[:3] + "*" * 4 + key[-4:] if len(key) > 8 else "*" * len(key)
    return openai_error(
        401,
        f"Incorrect API key provided: {shown}. You can find your API key at "
        "https://platform.openai.com/account/api-keys.",
        code="invalid_api_key",
    )


def _bad_json_response(obj: Any) -> Response:
    payload = _dumps(obj, pretty=True)
    return Response(
        payload[: max(1, len(payload) // 2)],
        status_code=200,
        headers=_base_headers(),
        media_type="application/json",
    )


def _stream_response(events: list[bytes], body: dict[str, Any], state: FakeState) -> Response:
    model = body.get("model")
    headers = _base_headers()
    headers["cache-control"] = "no-cache"
    if model == "cut-stream":
        return _EventStream(events, headers=headers, drop_after=3, state=state)
    if model == "bad-stream-json":
        broken = events[1][: max(8, len(events[1]) // 2)].rstrip(b"\n") + b"\n\n"
        return _EventStream([events[0], broken, _SSE_DONE], headers=headers)
    delay = state.chunk_delay if model == "slow-stream" else 0.0
    first = state.slow_seconds if model == "slow-first-chunk" else 0.0
    return _EventStream(events, headers=headers, delay=delay, first_delay=first, state=state)


def create_app(state: FakeState) -> Starlette:
    """Build the fake OpenAI API as a Starlette app bound to ``state``.

    Recorded request dicts have keys: ``method``, ``path``, ``query`` (dict), ``headers``
    (lowercased dict), ``json`` (parsed body or None), ``raw`` (bytes), ``key`` (bearer
    token or None), ``form`` (multipart fields; files as bytes, or None) and ``files``
    (multipart file metadata: ``{field: {"filename", "content_type"}}``).

    Chat behaviour: the reply is ``"echo: " + <last user message text>`` (text parts joined
    by a space, plus `` [images: N]`` / `` [audio: N]``); a trailing ``tool`` message gives
    ``"tool said: " + content``; function ``tools`` (unless ``tool_choice="none"``) produce
    tool calls with arguments ``{"query": <last user text>}``; ``response_format``
    json_object/json_schema yields JSON content. Failure modes: see ``FAILURE_MODELS``.
    """
    _install_log_filter()

    def endpoint(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        async def run(request: Request) -> Response:
            raw = await request.body()
            record: RecordedRequest = {
                "method": request.method,
                "path": request.url.path,
                "query": dict(request.query_params),
                "headers": {k.lower(): v for k, v in request.headers.items()},
                "json": None,
                "raw": raw,
                "key": None,
                "form": None,
                "files": None,
            }
            content_type = request.headers.get("content-type", "")
            if content_type.startswith("multipart/form-data"):
                form: dict[str, Any] = {}
                files: dict[str, dict[str, Any]] = {}
                async with request.form() as parsed:
                    for name, value in parsed.multi_items():
                        if isinstance(value, UploadFile):
                            item: Any = await value.read()
                            files[name] = {"filename": value.filename, "content_type": value.content_type}
                        else:
                            item = value
                        if name in form:
                            previous = form[name]
                            form[name] = [*previous, item] if isinstance(previous, list) else [previous, item]
                        else:
                            form[name] = item
                record["form"], record["files"] = form, files
            elif raw:
                try:
                    record["json"] = json.loads(raw)
                except ValueError:
                    record["json"] = None
            auth = request.headers.get("authorization", "")
            scheme, _, token = auth.partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                record["key"] = token.strip()
            state.requests.append(record)

            if state.next_responses:
                status, headers, payload = state.next_responses.pop(0)
                out_headers = _base_headers()
                out_headers.update({k.lower(): v for k, v in headers.items()})
                media_type = out_headers.pop("content-type", "application/json")
                return Response(
                    bytes(payload), status_code=status, headers=out_headers, media_type=media_type
                )

            if record["key"] is None:
                return openai_error(
                    401,
                    "You didn't provide an API key. You need to provide your API key in an Authorization "
                    "header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY), or as the password "
                    "field (with blank username) if you're accessing the API from your browser and are "
                    "prompted for a username. You can obtain an API key from "
                    "https://platform.openai.com/account/api-keys.",
                )
            if state.valid_keys and record["key"] not in state.valid_keys:
                return _invalid_key_error(record["key"])

            if request.method == "POST" and record["form"] is None and not isinstance(record["json"], dict):
                return openai_error(
                    400,
                    "We could not parse the JSON body of your request. (HINT: This likely means you "
                    "aren't using your HTTP library correctly. The OpenAI API expects a JSON payload, "
                    "but what was sent was not valid JSON.)",
                )

            params = record["json"] if isinstance(record["json"], dict) else record["form"] or {}
            model = params.get("model")
            failure = _failure_response(model)
            if failure is not None:
                return failure
            if model == "slow-first-byte":
                await asyncio.sleep(state.slow_seconds)
            return await handler(request, record)

        return run

    def require(body: dict[str, Any], *names: str) -> Response | None:
        for name in names:
            if body.get(name) is None:
                return openai_error(
                    400,
                    f"Missing required parameter: '{name}'.",
                    param=name,
                    code="missing_required_parameter",
                )
        return None

    async def chat_completions(request: Request, record: RecordedRequest) -> Response:
        body: dict[str, Any] = record["json"]
        missing = require(body, "model", "messages")
        if missing is not None:
            return missing
        if not isinstance(body["messages"], list) or not body["messages"]:
            return openai_error(
                400,
                "Invalid 'messages': empty array. Expected an array with minimum "
                "length 1, but got an empty array instead.",
                param="messages",
                code="empty_array",
            )
        if body.get("model") == "no-usage":
            body = {k: v for k, v in body.items() if k != "stream_options"}
        if body.get("stream") is True:
            return _stream_response(_chat_stream_events(body, state), body, state)
        result = _chat_completion(body, state)
        if body.get("model") == "no-usage":
            del result["usage"]
        if body.get("model") == "bad-json":
            return _bad_json_response(result)
        return _json_response(result)

    async def completions(request: Request, record: RecordedRequest) -> Response:
        body: dict[str, Any] = record["json"]
        missing = require(body, "model", "prompt")
        if missing is not None:
            return missing
        if body.get("stream") is True:
            return _stream_response(_completion_stream_events(body, state), body, state)
        result = _completion(body, state)
        if body.get("model") == "bad-json":
            return _bad_json_response(result)
        return _json_response(result)

    async def embeddings(request: Request, record: RecordedRequest) -> Response:
        body: dict[str, Any] = record["json"]
        missing = require(body, "model", "input")
        if missing is not None:
            return missing
        result = _embeddings(body)
        if body.get("model") == "bad-json":
            return _bad_json_response(result)
        return _json_response(result)

    async def moderations(request: Request, record: RecordedRequest) -> Response:
        body: dict[str, Any] = record["json"]
        missing = require(body, "input")
        if missing is not None:
            return missing
        result = _moderations(body)
        if body.get("model") == "bad-json":
            return _bad_json_response(result)
        return _json_response(result)

    async def image_generations(request: Request, record: RecordedRequest) -> Response:
        body: dict[str, Any] = record["json"]
        missing = require(body, "prompt")
        if missing is not None:
            return missing
        result = _images(body)
        if body.get("model") == "bad-json":
            return _bad_json_response(result)
        return _json_response(result)

    async def speech(request: Request, record: RecordedRequest) -> Response:
        body: dict[str, Any] = record["json"]
        missing = require(body, "model", "input", "voice")
        if missing is not None:
            return missing
        fmt = body.get("response_format") or "mp3"
        media_type = _SPEECH_MEDIA_TYPES.get(str(fmt), "audio/mpeg")
        audio = b"ID3FAKEAUDIO:" + str(body["input"]).encode()
        return Response(audio, headers=_base_headers(), media_type=media_type)

    def audio_text_endpoint(verb: str) -> Handler:
        async def handle(request: Request, record: RecordedRequest) -> Response:
            form = record["form"]
            if form is None:
                return openai_error(400, "Expected a multipart/form-data request body.")
            file = form.get("file")
            if not isinstance(file, bytes):
                return openai_error(
                    400,
                    "Missing required parameter: 'file'.",
                    param="file",
                    code="missing_required_parameter",
                )
            if not form.get("model"):
                return openai_error(
                    400,
                    "Missing required parameter: 'model'.",
                    param="model",
                    code="missing_required_parameter",
                )
            text = f"{verb} {len(file)} bytes"
            fmt = form.get("response_format") or "json"
            if fmt == "text":
                return Response(text, headers=_base_headers(), media_type="text/plain; charset=utf-8")
            if fmt == "srt":
                srt = f"1\n00:00:00,000 --> 00:00:01,000\n{text}\n\n"
                return Response(srt, headers=_base_headers(), media_type="text/plain; charset=utf-8")
            if fmt == "vtt":
                vtt = f"WEBVTT\n\n00:00:00.000 --> 00:00:01.000\n{text}\n\n"
                return Response(vtt, headers=_base_headers(), media_type="text/plain; charset=utf-8")
            if fmt == "verbose_json":
                return _json_response(
                    {
                        "task": "transcribe" if verb == "transcribed" else "translate",
                        "language": "english",
                        "duration": 1.0,
                        "text": text,
                        "segments": [
                            {
                                "id": 0,
                                "seek": 0,
                                "start": 0.0,
                                "end": 1.0,
                                "text": text,
                                "tokens": [1],
                                "temperature": 0.0,
                                "avg_logprob": -0.1,
                                "compression_ratio": 1.0,
                                "no_speech_prob": 0.0,
                            }
                        ],
                        "usage": {"type": "duration", "seconds": 1},
                    }
                )
            return _json_response({"text": text, "usage": {"type": "duration", "seconds": 1}})

        return handle

    async def list_models(request: Request, record: RecordedRequest) -> Response:
        return _json_response(
            {
                "object": "list",
                "data": [
                    {"id": m, "object": "model", "created": 1_700_000_000, "owned_by": "system"}
                    for m in state.models
                ],
            }
        )

    async def retrieve_model(request: Request, record: RecordedRequest) -> Response:
        model_id = request.path_params["model_id"]
        if model_id not in state.models:
            return openai_error(
                404, f"The model '{model_id}' does not exist", param="model", code="model_not_found"
            )
        return _json_response(
            {"id": model_id, "object": "model", "created": 1_700_000_000, "owned_by": "system"}
        )

    async def not_found(request: Request, record: RecordedRequest) -> Response:
        return openai_error(404, f"Invalid URL ({request.method} {request.url.path})")

    all_methods = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]
    routes = [
        Route("/v1/chat/completions", endpoint(chat_completions), methods=["POST"]),
        Route("/v1/completions", endpoint(completions), methods=["POST"]),
        Route("/v1/embeddings", endpoint(embeddings), methods=["POST"]),
        Route("/v1/moderations", endpoint(moderations), methods=["POST"]),
        Route("/v1/images/generations", endpoint(image_generations), methods=["POST"]),
        Route("/v1/audio/speech", endpoint(speech), methods=["POST"]),
        Route("/v1/audio/transcriptions", endpoint(audio_text_endpoint("transcribed")), methods=["POST"]),
        Route("/v1/audio/translations", endpoint(audio_text_endpoint("translated")), methods=["POST"]),
        Route("/v1/models", endpoint(list_models), methods=["GET"]),
        Route("/v1/models/{model_id:path}", endpoint(retrieve_model), methods=["GET"]),
        Route("/{path:path}", endpoint(not_found), methods=all_methods),
    ]
    app = Starlette(routes=routes)
    app.state.fake = state
    return app
