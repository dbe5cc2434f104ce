"""Canonical answers, streams and errors → Gemini JSON (always camelCase)."""

from __future__ import annotations

import email.utils
import math
import secrets
import time
from collections.abc import Iterable
from typing import Any

from omnirelay.canonical.messages import (
    AudioPart,
    FilePart,
    ImagePart,
    Part,
    RefusalPart,
    TextPart,
    ThinkingPart,
    ToolCallPart,
)
from omnirelay.canonical.request import ChatRequest
from omnirelay.canonical.response import ChatResponse, EmbeddingResponse, FinishReason
from omnirelay.canonical.stream import (
    BlockDelta,
    BlockStart,
    BlockStop,
    Finish,
    StreamError,
    StreamEvent,
    StreamStart,
    UsageEvent,
)
from omnirelay.canonical.usage import Usage
from omnirelay.errors import GatewayError
from omnirelay.transport import json

_FINISH: dict[FinishReason, str] = {
    "stop": "STOP",
    "tool_calls": "STOP",  # Gemini has no "tool call" finish reason
    "length": "MAX_TOKENS",
    "content_filter": "SAFETY",
    "error": "OTHER",
}
_STATUS = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    402: "FAILED_PRECONDITION",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    408: "DEADLINE_EXCEEDED",
    409: "ABORTED",
    413: "INVALID_ARGUMENT",  # no gRPC code for "too large"; Google answers oversize bodies this way
    422: "INVALID_ARGUMENT",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    501: "UNIMPLEMENTED",
    502: "UNAVAILABLE",  # the upstream could not be reached or answered garbage: retryable
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
    529: "UNAVAILABLE",
}


def signature_of(details: dict[str, Any] | None) -> str | None:
    sig = ((details or {}).get("gemini") or {}).get("thoughtSignature")
    return sig if isinstance(sig, str) and sig else None


def new_response_id() -> str:
    return secrets.token_urlsafe(16)


def usage_json(usage: Usage) -> dict[str, Any]:
    """Gemini counts thoughts apart from `candidatesTokenCount`; the prompt count includes the cache."""
    out: dict[str, Any] = {
        "promptTokenCount": usage.input_tokens,
        "candidatesTokenCount": max(usage.output_tokens - usage.reasoning_tokens, 0),
        "totalTokenCount": usage.total_tokens,
    }
    if usage.reasoning_tokens > 0:
        out["thoughtsTokenCount"] = usage.reasoning_tokens
    if usage.cached_input_tokens > 0:
        out["cachedContentTokenCount"] = usage.cached_input_tokens
    return out


def args_object(arguments: str) -> dict[str, Any]:
    """Tool-call arguments as the JSON object Gemini requires; anything else is kept under `_raw`."""
    if not arguments.strip():
        return {}
    try:
        value = json.loads(arguments)
    except json.JSONDecodeError:
        return {"_raw": arguments}
    return value if isinstance(value, dict) else {"_raw": arguments}


def _call_part(call_id: str, name: str, arguments: str, details: dict[str, Any] | None) -> dict[str, Any]:
    call: dict[str, Any] = {"name": name, "args": args_object(arguments)}
    if call_id:
        call["id"] = call_id
    part: dict[str, Any] = {"functionCall": call}
    if (sig := signature_of(details)) is not None:
        part["thoughtSignature"] = sig
    return part


def _inline(part: Part) -> dict[str, Any] | None:
    """Generated media with inline bytes (image or audio output) as `inlineData`."""
    if isinstance(part, (ImagePart, FilePart)) and part.data:
        mime = part.media_type or ("image/png" if isinstance(part, ImagePart) else "application/octet-stream")
        return {"inlineData": {"mimeType": mime, "data": part.data}}
    if isinstance(part, AudioPart) and part.data:
        return {"inlineData": {"mimeType": f"audio/{part.format or 'wav'}", "data": part.data}}
    return None


def parts_json(parts: list[Part], include_thoughts: bool) -> list[dict[str, Any]]:
    """Canonical parts → Gemini parts. A redacted thinking part holding a Gemini signature is the
    signature of the text part after it (see the decoder); anything else redacted is dropped."""
    out: list[dict[str, Any]] = []
    pending: str | None = None
    for part in parts:
        if isinstance(part, ThinkingPart) and part.redacted:
            if pending is not None:
                out.append({"text": "", "thoughtSignature": pending})
            pending = signature_of(part.provider_details)
            continue
        if isinstance(part, (TextPart, RefusalPart)) and part.text:
            item: dict[str, Any] = {"text": part.text}
            if pending is not None:
                item["thoughtSignature"], pending = pending, None
            out.append(item)
            continue
        if pending is not None and not isinstance(part, (TextPart, RefusalPart)):
            out.append({"text": "", "thoughtSignature": pending})
            pending = None
        if isinstance(part, ThinkingPart):
            sig = signature_of(part.provider_details)
            if include_thoughts and (part.text or sig):
                item = {"text": part.text, "thought": True}
                if sig is not None:
                    item["thoughtSignature"] = sig
                out.append(item)
        elif isinstance(part, ToolCallPart):
            out.append(_call_part(part.id, part.name, part.arguments, part.provider_details))
        elif (media := _inline(part)) is not None:
            out.append(media)
    if pending is not None:
        out.append({"text": "", "thoughtSignature": pending})
    return out


def response_json(resp: ChatResponse, req: ChatRequest) -> dict[str, Any]:
    out: dict[str, Any] = {
        "candidates": [
            {
                "content": {"role": "model", "parts": parts_json(c.message.parts, req.include_reasoning)},
                "finishReason": _FINISH.get(c.finish_reason or "stop", "STOP"),
                "index": c.index,
            }
            for c in resp.choices
        ]
    }
    if resp.usage is not None:
        out["usageMetadata"] = usage_json(resp.usage)
    out["modelVersion"] = req.model
    out["responseId"] = resp.id or new_response_id()
    return out


def encode_response(resp: ChatResponse, req: ChatRequest) -> bytes:
    return json.dumps(response_json(resp, req))


# --- errors -------------------------------------------------------------------------------------


def _retry_delay(value: str) -> str | None:
    """A `retry-after` value (seconds or an HTTP date) as a protobuf Duration string (`"37s"`)."""
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = when.timestamp() - time.time()
    if not math.isfinite(seconds):
        return None
    seconds = max(seconds, 0.0)
    return f"{int(seconds)}s" if seconds == int(seconds) else f"{seconds:.3f}".rstrip("0") + "s"


def error_json(err: GatewayError) -> dict[str, Any]:
    """Google's error shape. `code` is the HTTP status the gateway answers with (a 413 stays 413,
    with status INVALID_ARGUMENT); `status` is the gRPC code name Google clients dispatch on."""
    status = _STATUS.get(err.status) or ("INTERNAL" if err.status >= 500 else "INVALID_ARGUMENT")
    body: dict[str, Any] = {"code": err.status, "message": err.message, "status": status}
    details: list[dict[str, Any]] = []
    if err.status == 400 and err.param:
        details.append(
            {
                "@type": "type.googleapis.com/google.rpc.BadRequest",
                "fieldViolations": [{"field": err.param, "description": err.message}],
            }
        )
    if err.status == 429:
        retry = next((v for k, v in err.headers.items() if k.lower() == "retry-after"), None)
        delay = _retry_delay(retry) if retry else None
        if delay is not None:
            details.append({"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": delay})
    if details:
        body["details"] = details
    return {"error": body}


def error_body(err: GatewayError) -> bytes:
    return json.dumps(error_json(err))


# --- streaming ----------------------------------------------------------------------------------


class _Block:
    __slots__ = ("args", "emitted", "id", "kind", "name", "signature")

    def __init__(self, event: BlockStart) -> None:
        self.kind = "redacted" if event.kind == "thinking" and event.redacted else event.kind
        self.id = event.tool_call_id or ""
        self.name = event.tool_name or ""
        self.args: list[str] = []
        self.signature = signature_of(event.provider_details)
        self.emitted = False


class StreamEncoder:
    """Canonical events → a stream of whole GenerateContentResponse chunks.

    One chunk per text or thinking delta, one per completed function call (arguments are buffered to
    BlockStop and sent parsed), and at `close()` a last chunk with every candidate's finishReason and
    the usage, which canonical streams deliver after `Finish`. With `sse` the chunks are
    `data: <json>\\r\\n\\r\\n` events (`?alt=sse`); without, the body is one JSON array written
    incrementally (`[` chunk `,\\r\\n` chunk ... `]`). Every chunk has a non-empty `parts` list: the SDK's
    chat session discards a turn containing a chunk without one.
    """

    def __init__(self, req: ChatRequest, *, sse: bool = True) -> None:
        self._model = req.model
        self._thoughts = req.include_reasoning
        self._sse = sse
        self._id = new_response_id()
        self._blocks: dict[tuple[int, int], _Block] = {}
        self._finish: dict[int, str] = {}
        self._usage: Usage | None = None
        self._count = 0
        self._done = False

    def _frame(self, body: dict[str, Any]) -> bytes:
        data = json.dumps(body)
        self._count += 1
        if self._sse:
            return b"data: " + data + b"\r\n\r\n"
        return (b"[" if self._count == 1 else b",\r\n") + data

    def _chunk(self, choice: int, parts: list[dict[str, Any]]) -> bytes:
        return self._frame(
            {
                "candidates": [{"content": {"role": "model", "parts": parts}, "index": choice}],
                "modelVersion": self._model,
                "responseId": self._id,
            }
        )

    def _part(self, block: _Block, text: str) -> dict[str, Any]:
        part: dict[str, Any] = {"text": text}
        if block.kind == "thinking":
            part["thought"] = True
        if block.signature is not None and not block.emitted:
            part["thoughtSignature"] = block.signature
        block.emitted = True
        return part

    def _stop(self, key: tuple[int, int]) -> bytes:
        block = self._blocks.pop(key, None)
        if block is None:
            return b""
        if block.kind == "tool_call":
            return self._chunk(key[0], [_call_part(block.id, block.name, "".join(block.args), _sig(block))])
        if block.signature is not None and not block.emitted and (block.kind != "thinking" or self._thoughts):
            return self._chunk(key[0], [self._part(block, "")])
        return b""

    def encode(self, event: StreamEvent) -> bytes:
        if self._done:
            return b""
        if isinstance(event, BlockDelta):
            block = self._blocks.get((event.choice, event.index))
            if block is None or not event.text:
                return b""
            if block.kind == "tool_call":
                block.args.append(event.text)
                return b""
            if block.kind == "redacted" or (block.kind == "thinking" and not self._thoughts):
                return b""
            return self._chunk(event.choice, [self._part(block, event.text)])
        if isinstance(event, BlockStart):
            out = self._stop((event.choice, event.index))  # a reused index closes the old block
            self._blocks[(event.choice, event.index)] = _Block(event)
            return out
        if isinstance(event, BlockStop):
            return self._stop((event.choice, event.index))
        if isinstance(event, Finish):
            self._finish[event.choice] = _FINISH.get(event.reason, "STOP")
            return b""
        if isinstance(event, UsageEvent):
            self._usage = event.usage
            return b""
        if isinstance(event, StreamStart):
            if event.id:
                self._id = event.id
            return b""
        if isinstance(event, StreamError):
            return self.error(event.error)
        return b""

    def close(self) -> bytes:
        if self._done:
            return b""
        out = b"".join(self._stop(key) for key in list(self._blocks))
        choices = sorted(self._finish) or [0]
        body: dict[str, Any] = {
            "candidates": [
                {
                    "content": {"role": "model", "parts": [{"text": ""}]},
                    "finishReason": self._finish.get(c, "STOP"),
                    "index": c,
                }
                for c in choices
            ]
        }
        if self._usage is not None:
            body["usageMetadata"] = usage_json(self._usage)
        body["modelVersion"] = self._model
        body["responseId"] = self._id
        out += self._frame(body)
        self._done = True
        return out if self._sse else out + b"]"

    def error(self, err: GatewayError) -> bytes:
        if self._done:
            return b""
        self._done = True
        out = self._frame(error_json(err))
        return out if self._sse else out + b"]"


def _sig(block: _Block) -> dict[str, Any] | None:
    return {"gemini": {"thoughtSignature": block.signature}} if block.signature else None


# --- side endpoints -----------------------------------------------------------------------------


def encode_embed(resp: EmbeddingResponse) -> bytes:
    """`:embedContent` → `{"embedding": {"values": [...]}}`."""
    return json.dumps({"embedding": {"values": resp.vectors[0] if resp.vectors else []}})


def encode_batch_embed(resp: EmbeddingResponse) -> bytes:
    """`:batchEmbedContents` → `{"embeddings": [{"values": [...]}, ...]}` in request order."""
    return json.dumps({"embeddings": [{"values": v} for v in resp.vectors]})


def encode_count_tokens(usage: Usage) -> bytes:
    out: dict[str, Any] = {"totalTokens": usage.input_tokens}
    if usage.cached_input_tokens > 0:
        out["cachedContentTokenCount"] = usage.cached_input_tokens
    return json.dumps(out)


_METHODS = ["generateContent", "streamGenerateContent", "countTokens"]


def model_json(name: str) -> dict[str, Any]:
    bare = name.removeprefix("models/")
    return {"name": f"models/{bare}", "displayName": bare, "supportedGenerationMethods": list(_METHODS)}


def encode_model(name: str) -> bytes:
    """`GET /v1beta/models/{model}`."""
    return json.dumps(model_json(name))


def encode_models(names: Iterable[str]) -> bytes:
    """`GET /v1beta/models` (one page: no `nextPageToken`)."""
    return json.dumps({"models": [model_json(n) for n in names]})
