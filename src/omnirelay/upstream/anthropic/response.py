"""Anthropic Messages response → canonical response: content blocks, stop reasons, usage."""

from __future__ import annotations

import time
from typing import Any

from omnirelay.canonical.messages import Message, Part, TextPart, ThinkingPart, ToolCallPart
from omnirelay.canonical.response import ChatResponse, Choice, FinishReason
from omnirelay.canonical.usage import Usage
from omnirelay.transport import json

FINISH_REASONS: dict[str, FinishReason] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",  # a paused server-tool loop; the client resends the turn to continue it
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}


def finish_reason(stop_reason: Any) -> FinishReason:
    return FINISH_REASONS.get(stop_reason, "stop") if isinstance(stop_reason, str) else "stop"


def _int(value: Any) -> int:
    return value if isinstance(value, int) else 0


def parse_usage(raw: dict[str, Any]) -> Usage:
    """Anthropic counts cache reads and writes apart from `input_tokens`; canonical input includes them."""
    fresh = _int(raw.get("input_tokens"))
    read = _int(raw.get("cache_read_input_tokens"))
    written = _int(raw.get("cache_creation_input_tokens"))
    details = raw.get("output_tokens_details")
    thinking = _int(details.get("thinking_tokens")) if isinstance(details, dict) else 0
    return Usage(
        input_tokens=fresh + read + written,
        output_tokens=_int(raw.get("output_tokens")),
        cached_input_tokens=read,
        cache_write_tokens=written,
        reasoning_tokens=thinking,
    )


def arguments_text(value: Any) -> str:
    """A tool_use `input` object as the JSON text canonical tool calls carry."""
    return json.dumps(value if isinstance(value, dict) else {}).decode()


def redacted_details(data: Any) -> dict[str, Any]:
    return {"anthropic": {"data": data if isinstance(data, str) else ""}}


def block_part(block: Any) -> Part | None:
    """One response content block; None for blocks with no canonical meaning (server tools, ...)."""
    if not isinstance(block, dict):
        return None
    kind = block.get("type")
    if kind == "text":
        return TextPart(str(block.get("text") or ""))
    if kind == "thinking":
        return ThinkingPart(str(block.get("thinking") or ""), signature=block.get("signature") or None)
    if kind == "redacted_thinking":
        return ThinkingPart("", redacted=True, provider_details=redacted_details(block.get("data")))
    if kind == "tool_use":
        return ToolCallPart(
            id=str(block.get("id") or ""),
            name=str(block.get("name") or ""),
            arguments=arguments_text(block.get("input")),
        )
    return None


def parse_message(data: dict[str, Any]) -> ChatResponse:
    parts = [p for p in (block_part(b) for b in data.get("content") or []) if p is not None]
    usage = data.get("usage")
    stop_sequence = data.get("stop_sequence")
    return ChatResponse(
        id=str(data.get("id") or ""),
        model=str(data.get("model") or ""),
        created=int(time.time()),
        choices=[
            Choice(
                index=0,
                message=Message("assistant", parts),
                finish_reason=finish_reason(data.get("stop_reason")),
            )
        ],
        usage=parse_usage(usage) if isinstance(usage, dict) else None,
        stop_sequence=stop_sequence if isinstance(stop_sequence, str) else None,
    )
