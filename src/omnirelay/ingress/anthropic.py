"""Anthropic Messages as a client-facing protocol (`POST /v1/messages`, `/anthropic/v1/messages`).

Decodes Messages requests into the canonical model and encodes canonical answers and streams back
with Anthropic's event sequence (`message_start`, contiguous content blocks, `message_delta` with the
stop reason and usage, `message_stop`). Anthropic-dialect upstreams skip this codec (passthrough).
"""

from __future__ import annotations

import logging
import secrets
from typing import Any

from omnirelay.accounting.metering import off_loop
from omnirelay.accounting.tokenizer import count_input
from omnirelay.canonical.ids import carry, uncarry
from omnirelay.canonical.messages import (
    FilePart,
    ImagePart,
    Message,
    Part,
    RefusalPart,
    TextPart,
    ThinkingPart,
    ToolCallPart,
    ToolResultPart,
)
from omnirelay.canonical.request import ChatRequest, ResponseFormat, Tool, ToolChoice
from omnirelay.canonical.response import ChatResponse, FinishReason
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
from omnirelay.errors import BadRequest, GatewayError, UpstreamError
from omnirelay.transport import json, sse

log = logging.getLogger("omnirelay")

_STOP: dict[FinishReason, str] = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "content_filter": "refusal",
    "error": "end_turn",
}
_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    503: "overloaded_error",
    504: "timeout_error",
    529: "overloaded_error",
}
_KNOWN = frozenset(
    [
        "model",
        "messages",
        "system",
        "max_tokens",
        "stream",
        "stop_sequences",
        "temperature",
        "top_p",
        "top_k",
        "tools",
        "tool_choice",
        "thinking",
        "metadata",
        "output_config",
    ]
)


# --- decode -------------------------------------------------------------------------------------


def _source_part(block: dict[str, Any], where: str) -> Part:
    source = block.get("source") or {}
    kind = source.get("type")
    if block["type"] == "image":
        if kind == "base64":
            return ImagePart(data=source.get("data"), media_type=source.get("media_type"))
        if kind == "url":
            return ImagePart(url=source.get("url"))
    elif block["type"] == "document":
        if kind == "base64":
            return FilePart(
                data=source.get("data"),
                media_type=source.get("media_type") or "application/pdf",
                filename=block.get("title"),
            )
        if kind == "text":
            return TextPart(str(source.get("data", "")))
    raise BadRequest(f"{where}: unsupported {block['type']} source {kind!r}.", param=where)


def _blocks(content: Any, where: str) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if not isinstance(content, list):
        raise BadRequest(f"{where}.content must be a string or an array of content blocks.", param=where)
    for block in content:
        if not isinstance(block, dict) or not isinstance(block.get("type"), str):
            raise BadRequest(f"{where}: every content block needs a 'type'.", param=where)
    return content


def _result_parts(content: Any, where: str) -> list[Part]:
    if content is None:
        return []
    parts: list[Part] = []
    for block in _blocks(content, where):
        if block["type"] == "text":
            parts.append(TextPart(str(block.get("text", ""))))
        elif block["type"] in ("image", "document"):
            parts.append(_source_part(block, where))
        else:
            raise BadRequest(f"{where}: unsupported tool_result content {block['type']!r}.", param=where)
    return parts


def _messages(raw: Any) -> list[Message]:
    if not isinstance(raw, list) or not raw:
        raise BadRequest("messages: at least one message is required.", param="messages")
    out: list[Message] = []
    for i, message in enumerate(raw):
        where = f"messages.{i}"
        role = message.get("role") if isinstance(message, dict) else None
        if role == "system":  # system messages between turns (newer Messages API)
            texts = [
                str(b.get("text", "")) for b in _blocks(message.get("content"), where) if b["type"] == "text"
            ]
            out.append(Message("system", [TextPart(t) for t in texts]))
            continue
        if role not in ("user", "assistant"):
            raise BadRequest(f"{where}.role: must be 'user', 'assistant' or 'system'.", param=where)
        parts: list[Part] = []
        results: list[Part] = []
        for block in _blocks(message.get("content"), where):
            kind = block["type"]
            if kind == "text":
                parts.append(TextPart(str(block.get("text", ""))))
            elif kind in ("image", "document"):
                parts.append(_source_part(block, where))
            elif kind == "tool_use" and role == "assistant":
                parts.append(
                    ToolCallPart(
                        id=uncarry(str(block.get("id", "")))[0],
                        provider_details=uncarry(str(block.get("id", "")))[1],
                        name=str(block.get("name", "")),
                        arguments=json.dumps(block.get("input") or {}).decode(),
                    )
                )
            elif kind == "tool_result" and role == "user":
                results.append(
                    ToolResultPart(
                        uncarry(str(block.get("tool_use_id", "")))[0],
                        _result_parts(block.get("content"), where),
                        bool(block.get("is_error")),
                    )
                )
            elif kind == "thinking" and role == "assistant":
                parts.append(ThinkingPart(str(block.get("thinking", "")), signature=block.get("signature")))
            elif kind == "redacted_thinking" and role == "assistant":
                parts.append(
                    ThinkingPart(
                        "", redacted=True, provider_details={"anthropic": {"data": block.get("data")}}
                    )
                )
            else:
                raise BadRequest(f"{where}: content block type {kind!r} is not supported here.", param=where)
        if results:
            out.extend(Message("tool", [r]) for r in results)
        if parts or not results:
            out.append(Message(role, parts))
    return out


def _tool_choice(raw: Any) -> tuple[ToolChoice | None, bool | None]:
    if not isinstance(raw, dict):
        return None, None
    parallel = False if raw.get("disable_parallel_tool_use") else None
    kind = raw.get("type")
    if kind == "auto":
        return ToolChoice("auto"), parallel
    if kind == "any":
        return ToolChoice("required"), parallel
    if kind == "none":
        return ToolChoice("none"), parallel
    if kind == "tool" and raw.get("name"):
        return ToolChoice("tool", raw["name"]), parallel
    raise BadRequest("tool_choice: type must be auto, any, tool or none.", param="tool_choice")


def decode(body: dict[str, Any]) -> ChatRequest:
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise BadRequest("model: Field required", param="model")
    max_tokens = body.get("max_tokens")
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
        raise BadRequest("max_tokens: Field required (a positive integer)", param="max_tokens")
    messages = _messages(body.get("messages"))
    system = body.get("system")
    if system:
        text = (
            system
            if isinstance(system, str)
            else "\n\n".join(
                str(b.get("text", "")) for b in _blocks(system, "system") if b.get("type") == "text"
            )
        )
        messages.insert(0, Message("system", [TextPart(text)]))
    tools = []
    for spec in body.get("tools") or []:
        if not isinstance(spec, dict) or "input_schema" not in spec:
            kind = spec.get("type") if isinstance(spec, dict) else spec
            raise BadRequest(
                f"tools: server tool {kind!r} can only be used with an Anthropic model.", param="tools"
            )
        tools.append(
            Tool(spec["name"], spec.get("description"), spec.get("input_schema"), spec.get("strict"))
        )
    choice, parallel = _tool_choice(body.get("tool_choice"))
    budget = None
    effort = None
    thinking = body.get("thinking")
    if isinstance(thinking, dict):
        if thinking.get("type") == "enabled":
            budget = int(thinking.get("budget_tokens") or 1024)
        elif thinking.get("type") == "adaptive":
            effort = "medium"
        elif thinking.get("type") == "disabled":
            effort = "none"
    raw_config = body.get("output_config")
    output_config: dict[str, Any] = raw_config if isinstance(raw_config, dict) else {}
    effort = output_config.get("effort") or effort
    fmt = None
    if isinstance(output_config.get("format"), dict) and output_config["format"].get("type") == "json_schema":
        fmt = ResponseFormat("json_schema", "response", output_config["format"].get("schema"), True)
    raw_metadata = body.get("metadata")
    metadata: dict[str, Any] = raw_metadata if isinstance(raw_metadata, dict) else {}
    stop = body.get("stop_sequences")
    return ChatRequest(
        model=model,
        messages=messages,
        stream=body.get("stream") is True,
        include_usage=True,
        tools=tools,
        tool_choice=choice,
        parallel_tool_calls=parallel,
        response_format=fmt,
        max_tokens=max_tokens,
        temperature=body.get("temperature"),
        top_p=body.get("top_p"),
        top_k=body.get("top_k"),
        stop=list(stop) if isinstance(stop, list) else [],
        reasoning_effort=effort,
        reasoning_budget=budget,
        user=metadata.get("user_id"),
        extra={k: v for k, v in body.items() if k not in _KNOWN},
    )


# --- encode -------------------------------------------------------------------------------------


def usage_json(usage: Usage | None) -> dict[str, Any]:
    """Anthropic counts cache reads and writes apart from `input_tokens`."""
    if usage is None:
        return {"input_tokens": 0, "output_tokens": 0}
    return {
        "input_tokens": max(usage.input_tokens - usage.cached_input_tokens - usage.cache_write_tokens, 0),
        "output_tokens": usage.output_tokens,
        "cache_creation_input_tokens": usage.cache_write_tokens,
        "cache_read_input_tokens": usage.cached_input_tokens,
    }


def _arguments(text: str) -> Any:
    try:
        value = json.loads(text) if text else {}
    except json.JSONDecodeError:
        return {"_raw_arguments": text}
    return value if isinstance(value, dict) else {"value": value}


def _content(parts: list[Part]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for part in parts:
        if (isinstance(part, TextPart) and part.text) or (isinstance(part, RefusalPart) and part.text):
            out.append({"type": "text", "text": part.text})
        elif isinstance(part, ThinkingPart):
            if part.redacted:
                out.append(
                    {
                        "type": "redacted_thinking",
                        "data": ((part.provider_details or {}).get("anthropic") or {}).get("data", ""),
                    }
                )
            else:
                out.append({"type": "thinking", "thinking": part.text, "signature": part.signature or ""})
        elif isinstance(part, ToolCallPart):
            out.append(
                {
                    "type": "tool_use",
                    "id": carry(part.id, part.provider_details),
                    "name": part.name,
                    "input": _arguments(part.arguments),
                }
            )
    return out


def new_message_id() -> str:
    return "msg_" + secrets.token_hex(12)


def encode_response(resp: ChatResponse, req: ChatRequest) -> bytes:
    choice = resp.choices[0] if resp.choices else None
    reason = choice.finish_reason if choice else "stop"
    stop_reason = "stop_sequence" if resp.stop_sequence and reason == "stop" else _STOP.get(reason or "stop")
    return json.dumps(
        {
            "id": resp.id if resp.id.startswith("msg_") else new_message_id(),
            "type": "message",
            "role": "assistant",
            "model": req.model,
            "content": _content(choice.message.parts) if choice else [],
            "stop_reason": stop_reason,
            "stop_sequence": resp.stop_sequence,
            "usage": usage_json(resp.usage),
        }
    )


def _event(name: str, data: dict[str, Any]) -> bytes:
    return sse.encode(json.dumps(data), event=name)


class StreamEncoder:
    """Canonical events → Anthropic SSE. Blocks are numbered contiguously from 0, one open at a time.

    Clients read `message_start`'s usage for their context accounting, but a non-Anthropic upstream
    reports usage only at the end: until then the prompt is counted with the tokenizer (once per
    stream). `message_delta` then carries the upstream's own figures, which replace it (the SDK's
    accumulated message ends with them).
    """

    def __init__(self, req: ChatRequest) -> None:
        self._req = req
        self._model = req.model
        self._started = False
        self._open: int | None = None  # canonical index of the open block
        self._kind = "text"
        self._next = 0
        self._stop_reason: str | None = None
        self._usage: Usage | None = None
        self._estimate: int | None = None  # the prompt counted by `prepare`

    async def prepare(self, first: StreamEvent, size: int) -> None:
        """Count the prompt for message_start before the stream starts (`size`: the request's bytes),
        off the event loop when it is large or the encoding not loaded yet; not at all when the
        upstream's usage comes first."""
        if self._usage is None and not isinstance(first, UsageEvent):
            self._estimate = await off_loop(self._count_prompt, self._model, size)

    def _start(self, message_id: str = "") -> bytes:
        self._started = True
        return _event(
            "message_start",
            {
                "type": "message_start",
                "message": {
                    "id": message_id if message_id.startswith("msg_") else new_message_id(),
                    "type": "message",
                    "role": "assistant",
                    "model": self._model,
                    "content": [],
                    "stop_reason": None,
                    "stop_sequence": None,
                    "usage": self._start_usage(),
                },
            },
        )

    def _start_usage(self) -> dict[str, Any]:
        if self._usage is not None:
            return usage_json(self._usage)
        estimate = self._estimate if self._estimate is not None else self._count_prompt()
        return {"input_tokens": estimate, "output_tokens": 0}

    def _count_prompt(self) -> int:
        try:
            return count_input(self._req)
        except Exception:  # an estimate only: never worth failing the stream over
            log.exception("counting the prompt for message_start failed")
            return 0

    def _close_block(self) -> bytes:
        if self._open is None:
            return b""
        self._open = None
        self._next += 1
        return _event("content_block_stop", {"type": "content_block_stop", "index": self._next - 1})

    def encode(self, event: StreamEvent) -> bytes:
        if isinstance(event, UsageEvent):  # before message_start, when it comes first
            self._usage = event.usage
            return b"" if self._started else self._start()
        head = b"" if self._started or isinstance(event, StreamStart) else self._start()
        if isinstance(event, BlockDelta):
            if event.choice or event.index != self._open:
                return head
            if self._kind == "text":
                delta: dict[str, Any] = {"type": "text_delta", "text": event.text}
            elif self._kind == "thinking":
                if event.signature:  # after any text the same delta carries
                    signature = _event(
                        "content_block_delta",
                        {
                            "type": "content_block_delta",
                            "index": self._next,
                            "delta": {"type": "signature_delta", "signature": event.signature},
                        },
                    )
                    text = (
                        self.encode(BlockDelta(event.index, event.text, None, event.choice))
                        if event.text
                        else b""
                    )
                    return head + text + signature
                delta = {"type": "thinking_delta", "thinking": event.text}
            else:
                delta = {"type": "input_json_delta", "partial_json": event.text}
            if not event.text:
                return head
            return head + _event(
                "content_block_delta", {"type": "content_block_delta", "index": self._next, "delta": delta}
            )
        if isinstance(event, BlockStart):
            if event.choice:
                return head
            out = head + self._close_block()
            self._open, self._kind = event.index, event.kind
            if event.kind == "text":
                block: dict[str, Any] = {"type": "text", "text": ""}
            elif event.kind == "thinking" and event.redacted:
                data = ((event.provider_details or {}).get("anthropic") or {}).get("data", "")
                block = {"type": "redacted_thinking", "data": data}
            elif event.kind == "thinking":
                block = {"type": "thinking", "thinking": "", "signature": ""}
            else:
                call_id = carry(event.tool_call_id or "", event.provider_details)
                block = {"type": "tool_use", "id": call_id, "name": event.tool_name, "input": {}}
            return out + _event(
                "content_block_start",
                {"type": "content_block_start", "index": self._next, "content_block": block},
            )
        if isinstance(event, BlockStop):
            return head + (self._close_block() if event.index == self._open and not event.choice else b"")
        if isinstance(event, Finish):
            if not event.choice:
                self._stop_reason = _STOP.get(event.reason, "end_turn")
            return head
        if isinstance(event, StreamStart):
            return self._start(event.id)
        if isinstance(event, StreamError):
            return head + self.error(event.error)
        return head

    def close(self) -> bytes:
        out = (b"" if self._started else self._start()) + self._close_block()
        # No usage from the upstream: output only, so that message_start's estimate stands.
        usage = usage_json(self._usage) if self._usage is not None else {"output_tokens": 0}
        out += _event(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": self._stop_reason or "end_turn", "stop_sequence": None},
                "usage": usage,
            },
        )
        return out + _event("message_stop", {"type": "message_stop"})

    def error(self, err: GatewayError) -> bytes:
        return _event("error", error_json(err))


def error_status(err: GatewayError) -> int:
    """The status Anthropic's API answers with: 402 (`billing_error`) for an exhausted balance or
    quota, which OpenAI-shaped answers give as 429 `insufficient_quota` (the gateway's own refusal;
    an upstream's quota trouble is not the client's bill)."""
    if err.code == "insufficient_quota" and not isinstance(err, UpstreamError):
        return 402
    return err.status


def error_json(err: GatewayError) -> dict[str, Any]:
    status = error_status(err)
    kind = _ERROR_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")
    return {"type": "error", "error": {"type": kind, "message": err.message}}


class AnthropicIngress:
    dialect = "anthropic"

    def decode(self, body: dict[str, Any]) -> ChatRequest:
        return decode(body)

    def encode_response(self, resp: ChatResponse, req: ChatRequest) -> bytes:
        return encode_response(resp, req)

    def stream_encoder(self, req: ChatRequest) -> StreamEncoder:
        return StreamEncoder(req)

    def error_body(self, err: GatewayError) -> bytes:
        return json.dumps(error_json(err))

    def error_status(self, err: GatewayError) -> int:
        return error_status(err)
