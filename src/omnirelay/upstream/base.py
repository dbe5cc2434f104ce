"""What every upstream adapter is given, and the contract of translating adapters."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from omnirelay.canonical.request import ChatRequest, EmbeddingRequest
from omnirelay.canonical.response import ChatResponse, EmbeddingResponse
from omnirelay.canonical.stream import StreamEvent
from omnirelay.transport.http import HttpClient


@dataclass(slots=True)
class Target:
    """Where and how to reach one provider."""

    name: str
    base_url: str
    client: HttpClient | None
    headers: dict[str, str] = field(default_factory=dict)
    secrets: tuple[str, ...] = ()  # the provider's keys, scrubbed from anything echoed back
    options: Any = None  # type-specific settings (the mock's latency and chunking)
    # Azure OpenAI: deployment URLs (`/openai/deployments/<model>/...?api-version=`) and an `api-key` header.
    azure_api_version: str | None = None


class ChatAdapter(Protocol):
    """An upstream reached through the canonical model (any ingress protocol can use it)."""

    async def complete(self, req: ChatRequest, key: str | None) -> ChatResponse: ...

    def stream(self, req: ChatRequest, key: str | None) -> AsyncIterator[StreamEvent]: ...

    async def embed(self, req: EmbeddingRequest, key: str | None) -> EmbeddingResponse: ...
