"""A complete chat answer."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from omnirelay.canonical.messages import Message
from omnirelay.canonical.usage import Usage

FinishReason = Literal["stop", "length", "tool_calls", "content_filter", "error"]


@dataclass(slots=True)
class Choice:
    index: int
    message: Message
    finish_reason: FinishReason | None = None


@dataclass(slots=True)
class ChatResponse:
    id: str
    model: str
    created: int
    choices: list[Choice] = field(default_factory=list)
    usage: Usage | None = None
    stop_sequence: str | None = None  # the stop sequence that ended the answer, where the vendor says


@dataclass(slots=True)
class EmbeddingResponse:
    model: str
    vectors: list[list[float]]
    usage: Usage
