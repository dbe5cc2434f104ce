"""Token counts where no upstream reports them (count_tokens on a non-Anthropic model).

An estimate of about four characters per token over every text the model would read; results are
marked `estimated`. An exact per-family tokenizer replaces this with the billing work.
"""

from __future__ import annotations

import math

from omnirelay.canonical.messages import Part, TextPart, ThinkingPart, ToolCallPart, ToolResultPart
from omnirelay.canonical.request import ChatRequest
from omnirelay.canonical.usage import Usage
from omnirelay.transport import json

CHARS_PER_TOKEN = 4
MESSAGE_OVERHEAD = 4  # role and separators


def _chars(part: Part) -> int:
    if isinstance(part, (TextPart, ThinkingPart)):
        return len(part.text)
    if isinstance(part, ToolCallPart):
        return len(part.name) + len(part.arguments)
    if isinstance(part, ToolResultPart):
        return sum(_chars(p) for p in part.content)
    return 0


def estimate_usage(req: ChatRequest) -> Usage:
    chars = sum(_chars(p) for m in req.messages for p in m.parts)
    chars += sum(
        len(t.name) + len(t.description or "") + len(json.dumps(t.parameters or {})) for t in req.tools
    )
    tokens = math.ceil(chars / CHARS_PER_TOKEN) + MESSAGE_OVERHEAD * len(req.messages)
    return Usage(input_tokens=tokens, estimated=True)
