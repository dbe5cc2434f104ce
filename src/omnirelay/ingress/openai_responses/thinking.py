"""Reasoning items ↔ canonical thinking, including the continuity data other vendors need back.

A Responses client replays `reasoning` items by value (`id`, `summary`, `encrypted_content`), so
`encrypted_content` is the only field that can carry what a non-OpenAI upstream needs to resume its
own reasoning: an Anthropic signature (which must come back with the exact thinking text), redacted
thinking data, or other `provider_details`. For those the gateway writes its own envelope,
`omnirelay.v1.<base64url JSON>`, and unpacks it when the item comes back. A genuine OpenAI
`encrypted_content` (kept in `provider_details["openai"]`) passes through untouched.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from omnirelay.canonical.messages import ThinkingPart
from omnirelay.transport import json

ENVELOPE_PREFIX = "omnirelay.v1."


def _openai_details(part: ThinkingPart) -> dict[str, Any]:
    details = (part.provider_details or {}).get("openai")
    return details if isinstance(details, dict) else {}


def encrypted_content(part: ThinkingPart) -> str | None:
    """The `encrypted_content` of the reasoning item for `part`, or None when there is nothing to carry."""
    native = _openai_details(part).get("encrypted_content")
    if isinstance(native, str) and native:
        return native
    foreign = {k: v for k, v in (part.provider_details or {}).items() if k != "openai"}
    if not (part.signature or part.redacted or foreign):
        return None
    envelope: dict[str, Any] = {"t": part.text}
    if part.signature:
        envelope["s"] = part.signature
    if part.redacted:
        envelope["r"] = True
    if foreign:
        envelope["p"] = foreign
    return ENVELOPE_PREFIX + base64.urlsafe_b64encode(json.dumps(envelope)).decode().rstrip("=")


def _unpack(blob: str) -> dict[str, Any] | None:
    raw = blob[len(ENVELOPE_PREFIX) :]
    try:
        value = json.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
    except (binascii.Error, ValueError):
        return None
    return value if isinstance(value, dict) and isinstance(value.get("t", ""), str) else None


def thinking_part(item_id: str | None, summary_text: str, blob: str | None) -> ThinkingPart:
    """Canonical thinking for a replayed reasoning item."""
    if isinstance(blob, str) and blob.startswith(ENVELOPE_PREFIX) and (env := _unpack(blob)) is not None:
        signature = env.get("s")
        details = env.get("p")
        return ThinkingPart(
            str(env.get("t", summary_text)),
            signature=signature if isinstance(signature, str) else None,
            redacted=env.get("r") is True,
            provider_details=details if isinstance(details, dict) and details else None,
        )
    return ThinkingPart(summary_text, provider_details={"openai": {"id": item_id, "encrypted_content": blob}})


def reasoning_item(item_id: str, part: ThinkingPart, include_summary: bool) -> dict[str, Any]:
    """The finished `reasoning` output item for a thinking part."""
    item: dict[str, Any] = {"type": "reasoning", "id": item_id, "summary": []}
    if include_summary and part.text and not part.redacted:
        item["summary"] = [{"type": "summary_text", "text": part.text}]
    blob = encrypted_content(part)
    if blob is not None:
        item["encrypted_content"] = blob
    return item
