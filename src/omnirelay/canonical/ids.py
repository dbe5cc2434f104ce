"""Tool-call ids that carry vendor data a client protocol has no field for.

Gemini puts a `thoughtSignature` on each function call and rejects the next turn if it does not come
back on that call. OpenAI Chat, Anthropic and Responses clients have nowhere to keep it, but every one
of them echoes the tool-call id. So the id a client sees is `<id>__ts_<signature, base64url>`, and the
id a client sends back is split again: the upstream sees the original id and the signature in
`provider_details`. Ids without carried data are left exactly as they are. The suffix uses only
`[A-Za-z0-9_-]`, so the id stays valid where Anthropic's id pattern applies.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

SEP = "__ts_"


def carry(call_id: str, provider_details: dict[str, Any] | None) -> str:
    gemini = (provider_details or {}).get("gemini") or {}
    signature = gemini.get("thoughtSignature")
    if not isinstance(signature, str) or not signature:
        return call_id
    packed = base64.urlsafe_b64encode(signature.encode()).decode().rstrip("=")
    return f"{call_id}{SEP}{packed}"


def uncarry(wire_id: str) -> tuple[str, dict[str, Any] | None]:
    """The original id and the vendor data carried in a client-visible id (None when none)."""
    at = wire_id.find(SEP)
    if at <= 0:
        return wire_id, None
    packed = wire_id[at + len(SEP) :]
    try:
        signature = base64.urlsafe_b64decode(packed + "=" * (-len(packed) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return wire_id, None
    return wire_id[:at], {"gemini": {"thoughtSignature": signature}}
