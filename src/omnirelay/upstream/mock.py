"""The built-in `mock` provider: deterministic answers for first-run demos, client tests and benchmarks.

It echoes the last user message (`echo: <text>`), answers a tool result with `tool result: <text>`,
calls the first offered tool (or the one `tool_choice` names) when tools are given, emits JSON for
JSON mode and JSON-schema output, and streams its answer in `chunks` pieces `chunk_delay_ms` apart
after `latency_ms`. Usage counts words, so it is exact and repeatable.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import secrets
import struct
import time
from collections.abc import AsyncIterator
from typing import Any

from omnirelay.canonical.messages import Message, TextPart, ToolCallPart, ToolResultPart
from omnirelay.canonical.request import ChatRequest, EmbeddingRequest
from omnirelay.canonical.response import ChatResponse, Choice, EmbeddingResponse, FinishReason
from omnirelay.canonical.stream import (
    BlockDelta,
    BlockStart,
    BlockStop,
    Finish,
    StreamEvent,
    StreamStart,
    UsageEvent,
)
from omnirelay.canonical.usage import Usage
from omnirelay.config import MockOptions
from omnirelay.transport import json
from omnirelay.upstream.base import Target


def _words(text: str) -> int:
    return len(text.split())


def _sample(schema: dict[str, Any] | None) -> Any:
    schema = schema or {}
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if schema.get("enum"):
        return schema["enum"][0]
    if kind == "object" or "properties" in schema:
        return {name: _sample(sub) for name, sub in (schema.get("properties") or {}).items()}
    return {"string": "mock", "integer": 1, "number": 1.5, "boolean": True, "array": [], "null": None}.get(
        str(kind), "mock"
    )


class MockAdapter:
    def __init__(self, target: Target) -> None:
        self.options: MockOptions = target.options or MockOptions()

    def _answer(self, req: ChatRequest) -> tuple[str, list[ToolCallPart], FinishReason]:
        last = req.messages[-1]
        last_user = next((m for m in reversed(req.messages) if m.role == "user"), last)
        text = last_user.text()
        if last.role == "tool":
            result = last.parts[0]
            content = (
                "".join(p.text for p in result.content if isinstance(p, TextPart))
                if isinstance(result, ToolResultPart)
                else ""
            )
            return f"tool result: {content}", [], "stop"
        choice = req.tool_choice.mode if req.tool_choice else "auto"
        if req.tools and self.options.tool_calls and choice != "none":
            name = (
                req.tool_choice.name
                if req.tool_choice and req.tool_choice.mode == "tool"
                else req.tools[0].name
            )
            call = ToolCallPart(
                id="call_" + secrets.token_hex(12),
                name=name or req.tools[0].name,
                arguments=json.dumps({"input": text}).decode(),
            )
            return "", [call], "tool_calls"
        fmt = req.response_format
        if fmt is not None and fmt.type == "json_object":
            return json.dumps({"echo": text}).decode(), [], "stop"
        if fmt is not None and fmt.type == "json_schema":
            return json.dumps(_sample(fmt.schema)).decode(), [], "stop"
        return f"echo: {text}", [], "stop"

    def _usage(self, req: ChatRequest, reply: str, calls: list[ToolCallPart]) -> Usage:
        prompt = sum(_words(m.text()) for m in req.messages) or 1
        completion = (_words(reply) + sum(_words(c.arguments) for c in calls)) or 1
        return Usage(input_tokens=prompt, output_tokens=completion * max(req.n, 1))

    async def complete(self, req: ChatRequest, key: str | None) -> ChatResponse:
        if self.options.latency_ms:
            await asyncio.sleep(self.options.latency_ms / 1000)
        reply, calls, finish = self._answer(req)
        choices = []
        for i in range(max(req.n, 1)):
            parts: list[Any] = [TextPart(reply)] if reply else []
            parts.extend(calls)
            choices.append(Choice(index=i, message=Message("assistant", parts), finish_reason=finish))
        return ChatResponse(
            id="chatcmpl-" + secrets.token_hex(12),
            model=req.model,
            created=int(time.time()),
            choices=choices,
            usage=self._usage(req, reply, calls),
        )

    async def stream(self, req: ChatRequest, key: str | None) -> AsyncIterator[StreamEvent]:
        opts = self.options
        if opts.latency_ms:
            await asyncio.sleep(opts.latency_ms / 1000)
        reply, calls, finish = self._answer(req)
        yield StreamStart(id="chatcmpl-" + secrets.token_hex(12), model=req.model, created=int(time.time()))
        delay = opts.chunk_delay_ms / 1000
        for choice in range(max(req.n, 1)):
            index = 0
            if reply or not calls:
                yield BlockStart(index=index, kind="text", choice=choice)
                size = max(1, math.ceil(len(reply) / opts.chunks))
                for start in range(0, len(reply), size):
                    if delay and (start or choice):
                        await asyncio.sleep(delay)
                    yield BlockDelta(index=index, text=reply[start : start + size], choice=choice)
                yield BlockStop(index=index, choice=choice)
                index += 1
            for call in calls:
                yield BlockStart(
                    index=index, kind="tool_call", choice=choice, tool_call_id=call.id, tool_name=call.name
                )
                args = call.arguments
                size = max(1, math.ceil(len(args) / opts.chunks))
                for start in range(0, len(args), size):
                    if delay:
                        await asyncio.sleep(delay)
                    yield BlockDelta(index=index, text=args[start : start + size], choice=choice)
                yield BlockStop(index=index, choice=choice)
                index += 1
            yield Finish(reason=finish, choice=choice)
        yield UsageEvent(self._usage(req, reply, calls))

    async def embed(self, req: EmbeddingRequest, key: str | None) -> EmbeddingResponse:
        dims = req.dimensions or 16
        vectors = []
        tokens = 0
        for item in req.inputs:
            text = item if isinstance(item, str) else " ".join(map(str, item))
            tokens += _words(text) or 1
            digest = hashlib.sha256(text.encode()).digest() * (dims // 8 + 1)
            raw = [((v / 255.0) * 2 - 1) for v in digest[:dims]]
            norm = math.sqrt(sum(v * v for v in raw)) or 1.0
            # Round-trip through float32 so base64 and float encodings carry the same numbers.
            vectors.append([struct.unpack("<f", struct.pack("<f", v / norm))[0] for v in raw])
        return EmbeddingResponse(model=req.model, vectors=vectors, usage=Usage(input_tokens=tokens))
