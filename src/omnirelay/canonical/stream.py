"""Stream events, keyed by (choice, block index).

A block is one run of text, thinking or one tool call. Every stream is: optional `StreamStart`, then
per block `BlockStart` → `BlockDelta`* → `BlockStop`, a `Finish` per choice, any number of `UsageEvent`s
(the last one wins), or a `StreamError` that ends it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from omnirelay.canonical.response import FinishReason
from omnirelay.canonical.usage import Usage
from omnirelay.errors import GatewayError

BlockKind = Literal["text", "thinking", "tool_call"]


@dataclass(slots=True)
class StreamStart:
    id: str
    model: str
    created: int


@dataclass(slots=True)
class BlockStart:
    index: int
    kind: BlockKind
    choice: int = 0
    tool_call_id: str | None = None
    tool_name: str | None = None
    # Vendor data that must round-trip with the block (a Gemini thoughtSignature on a function call,
    # the encrypted payload of Anthropic redacted thinking); copied onto the assembled part.
    provider_details: dict[str, Any] | None = None
    redacted: bool = False  # a thinking block whose content is encrypted (provider_details holds it)


@dataclass(slots=True)
class BlockDelta:
    index: int
    text: str = ""  # text, thinking text, or tool-call argument fragment by the block's kind
    signature: str | None = None
    choice: int = 0


@dataclass(slots=True)
class BlockStop:
    index: int
    choice: int = 0


@dataclass(slots=True)
class Finish:
    reason: FinishReason
    choice: int = 0


@dataclass(slots=True)
class UsageEvent:
    usage: Usage


@dataclass(slots=True)
class StreamError:
    error: GatewayError


StreamEvent = StreamStart | BlockStart | BlockDelta | BlockStop | Finish | UsageEvent | StreamError
