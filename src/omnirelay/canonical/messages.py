"""Messages as typed parts.

`provider_details` carries data that must round-trip to the vendor it came from unchanged (thinking
signatures, encrypted reasoning); other vendors ignore it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Role = Literal["system", "user", "assistant", "tool"]


@dataclass(slots=True)
class TextPart:
    text: str


@dataclass(slots=True)
class ImagePart:
    url: str | None = None  # http(s) URL
    data: str | None = None  # base64 payload
    media_type: str | None = None
    detail: str | None = None


@dataclass(slots=True)
class AudioPart:
    data: str  # base64
    format: str  # wav, mp3, ...


@dataclass(slots=True)
class FilePart:
    data: str | None = None  # base64 payload
    media_type: str | None = None
    file_id: str | None = None
    filename: str | None = None


@dataclass(slots=True)
class RefusalPart:
    text: str


@dataclass(slots=True)
class ThinkingPart:
    text: str
    signature: str | None = None
    redacted: bool = False
    provider_details: dict[str, Any] | None = None


@dataclass(slots=True)
class ToolCallPart:
    id: str
    name: str
    arguments: str  # JSON text, as the model produced it
    provider_details: dict[str, Any] | None = None


@dataclass(slots=True)
class ToolResultPart:
    tool_call_id: str
    content: list[Part]
    is_error: bool = False


Part = (
    TextPart | ImagePart | AudioPart | FilePart | RefusalPart | ThinkingPart | ToolCallPart | ToolResultPart
)


@dataclass(slots=True)
class Message:
    role: Role
    parts: list[Part] = field(default_factory=list)
    name: str | None = None

    def text(self) -> str:
        return "".join(p.text for p in self.parts if isinstance(p, TextPart))
