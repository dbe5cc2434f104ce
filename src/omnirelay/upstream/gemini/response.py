"""Gemini answer fields → canonical values: finish reasons, usage, tool-call ids."""

from __future__ import annotations

import secrets
from typing import Any

from omnirelay.canonical.response import FinishReason
from omnirelay.canonical.usage import Usage

_FILTERED = frozenset(
    {
        "SAFETY",
        "RECITATION",
        "BLOCKLIST",
        "PROHIBITED_CONTENT",
        "SPII",
        "LANGUAGE",
        "IMAGE_SAFETY",
        "IMAGE_PROHIBITED_CONTENT",
        "IMAGE_RECITATION",
        "MODEL_ARMOR",
    }
)
# The model produced something unusable: tell the client instead of a silent empty "stop".
_FAILED = frozenset(
    {
        "MALFORMED_FUNCTION_CALL",
        "UNEXPECTED_TOOL_CALL",
        "TOO_MANY_TOOL_CALLS",
        "MISSING_THOUGHT_SIGNATURE",
        "MALFORMED_RESPONSE",
    }
)


def finish_reason(reason: str, has_calls: bool) -> FinishReason:
    """Gemini has no "tool call" reason: a turn with function calls ends with STOP."""
    reason = reason.upper()
    if reason == "MAX_TOKENS":
        return "length"
    if reason in _FILTERED:
        return "content_filter"
    if reason in _FAILED:
        return "error"
    return "tool_calls" if has_calls else "stop"


def _count(meta: dict[str, Any], key: str) -> int:
    value = meta.get(key)
    return value if isinstance(value, int) else 0


def parse_usage(meta: Any) -> Usage | None:
    """`promptTokenCount` includes cached tokens; `candidatesTokenCount` excludes thoughts."""
    if not isinstance(meta, dict):
        return None
    thoughts = _count(meta, "thoughtsTokenCount")
    return Usage(
        input_tokens=_count(meta, "promptTokenCount") + _count(meta, "toolUsePromptTokenCount"),
        output_tokens=_count(meta, "candidatesTokenCount") + thoughts,
        cached_input_tokens=_count(meta, "cachedContentTokenCount"),
        reasoning_tokens=thoughts,
    )


def new_call_id() -> str:
    """A unique tool-call id for a Gemini function call that came without one (never from its name)."""
    return "call_" + secrets.token_hex(12)


def new_response_id() -> str:
    return "gen-" + secrets.token_hex(12)
