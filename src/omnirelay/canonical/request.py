"""A chat request, independent of the protocol it arrived in."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from omnirelay.canonical.messages import Message


@dataclass(slots=True)
class Tool:
    name: str
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


@dataclass(slots=True)
class ToolChoice:
    mode: Literal["auto", "none", "required", "tool"] = "auto"
    name: str | None = None  # with mode "tool"


@dataclass(slots=True)
class ResponseFormat:
    type: Literal["text", "json_object", "json_schema"] = "text"
    name: str | None = None
    schema: dict[str, Any] | None = None
    strict: bool | None = None


@dataclass(slots=True)
class ChatRequest:
    model: str
    messages: list[Message]
    stream: bool = False
    include_usage: bool = False
    tools: list[Tool] = field(default_factory=list)
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = None
    response_format: ResponseFormat | None = None
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    stop: list[str] = field(default_factory=list)
    seed: int | None = None
    n: int = 1
    reasoning_effort: str | None = None  # none | minimal | low | medium | high | xhigh
    reasoning_budget: int | None = None  # thinking tokens, where the ingress gave a budget
    include_reasoning: bool = True  # whether the client wants thinking text back
    top_k: int | None = None
    frequency_penalty: float | None = None
    presence_penalty: float | None = None
    metadata: dict[str, Any] | None = None
    logprobs: bool = False
    top_logprobs: int | None = None
    user: str | None = None
    # Fields of the ingress protocol that have no canonical meaning; an upstream of the same
    # protocol family may forward them, others ignore them.
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class EmbeddingRequest:
    model: str
    inputs: list[str] | list[list[int]]
    dimensions: int | None = None
    user: str | None = None
