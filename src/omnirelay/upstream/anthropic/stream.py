"""Anthropic Messages SSE events → canonical stream events.

message_start → `StreamStart` and a first `UsageEvent` (so a stream cut short still reports the
prompt); content blocks → `BlockStart` / `BlockDelta` / `BlockStop` with canonical indices that stay
contiguous even when blocks without a canonical meaning (server tools) are skipped; message_delta
updates the cumulative usage and the stop reason; message_stop → `Finish` and the final
`UsageEvent`. `ping` and unknown events are ignored; `error` raises `UpstreamError`.
"""

from __future__ import annotations

import time
from typing import Any

from omnirelay.canonical.messages import TextPart, ThinkingPart, ToolCallPart
from omnirelay.canonical.response import ChatResponse
from omnirelay.canonical.stream import (
    BlockDelta,
    BlockKind,
    BlockStart,
    BlockStop,
    Finish,
    StreamEvent,
    StreamStart,
    UsageEvent,
)
from omnirelay.transport import json
from omnirelay.transport.sse import decode_event
from omnirelay.upstream.anthropic.errors import error_from_event, malformed
from omnirelay.upstream.anthropic.response import (
    arguments_text,
    finish_reason,
    parse_usage,
    redacted_details,
)
from omnirelay.upstream.base import Target


class StreamTranslator:
    """Feed whole SSE events; get canonical events back. `done` is set by message_stop."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self.done = False
        self.stop_sequence: str | None = None
        self._index: dict[int, int] = {}  # Anthropic block index → canonical block index
        self._kind: dict[int, BlockKind] = {}
        self._initial_input: dict[int, Any] = {}  # tool_use input given in content_block_start
        self._args_sent: set[int] = set()
        self._usage: dict[str, Any] = {}
        self._stop_reason: str | None = None

    def feed_raw(self, raw: bytes) -> list[StreamEvent]:
        event = decode_event(raw)
        if event is None or self.done:
            return []
        if event.event == "error":
            raise error_from_event(self.target, event.data)
        if not event.data.strip():
            return []
        try:
            data = json.loads(event.data)
        except json.JSONDecodeError:
            raise malformed(self.target, "a stream event that is not valid JSON") from None
        if not isinstance(data, dict):
            return []
        return self.feed(event.event or str(data.get("type") or ""), data)

    def feed(self, name: str, data: dict[str, Any]) -> list[StreamEvent]:
        if name == "content_block_delta":
            return self._delta(data)
        if name == "content_block_start":
            return self._block_start(data)
        if name == "content_block_stop":
            return self._block_stop(data)
        if name == "message_start":
            return self._message_start(data)
        if name == "message_delta":
            delta = data.get("delta")
            if isinstance(delta, dict):
                if delta.get("stop_reason"):
                    self._stop_reason = delta["stop_reason"]
                if isinstance(delta.get("stop_sequence"), str):
                    self.stop_sequence = delta["stop_sequence"]
            usage = data.get("usage")
            if isinstance(usage, dict):
                # Figures are cumulative: a present value replaces the earlier one.
                self._usage.update({k: v for k, v in usage.items() if v is not None})
            return []
        if name == "message_stop":
            self.done = True
            return [Finish(finish_reason(self._stop_reason)), UsageEvent(parse_usage(self._usage))]
        if name == "error":
            raise error_from_event(self.target, json.dumps(data))
        return []  # ping, and events this adapter does not know

    def _message_start(self, data: dict[str, Any]) -> list[StreamEvent]:
        message = data.get("message")
        message = message if isinstance(message, dict) else {}
        usage = message.get("usage")
        if isinstance(usage, dict):
            self._usage = {k: v for k, v in usage.items() if v is not None}
        return [
            StreamStart(
                id=str(message.get("id") or ""),
                model=str(message.get("model") or ""),
                created=int(time.time()),
            ),
            UsageEvent(parse_usage(self._usage)),
        ]

    def _block_start(self, data: dict[str, Any]) -> list[StreamEvent]:
        block = data.get("content_block")
        source = data.get("index")
        if not isinstance(block, dict) or not isinstance(source, int):
            return []
        kind = block.get("type")
        index = len(self._index)
        out: list[StreamEvent] = []
        if kind == "text":
            self._open(source, "text")
            out.append(BlockStart(index, "text"))
            if block.get("text"):
                out.append(BlockDelta(index, text=str(block["text"])))
        elif kind == "thinking":
            self._open(source, "thinking")
            out.append(BlockStart(index, "thinking"))
            if block.get("thinking") or block.get("signature"):
                out.append(
                    BlockDelta(
                        index, text=str(block.get("thinking") or ""), signature=block.get("signature") or None
                    )
                )
        elif kind == "redacted_thinking":
            self._open(source, "thinking")
            out.append(
                BlockStart(
                    index, "thinking", redacted=True, provider_details=redacted_details(block.get("data"))
                )
            )
        elif kind == "tool_use":
            self._open(source, "tool_call")
            self._initial_input[source] = block.get("input")
            out.append(
                BlockStart(
                    index,
                    "tool_call",
                    tool_call_id=str(block.get("id") or ""),
                    tool_name=str(block.get("name") or ""),
                )
            )
        return out

    def _open(self, source: int, kind: BlockKind) -> None:
        self._index[source] = len(self._index)
        self._kind[source] = kind

    def _delta(self, data: dict[str, Any]) -> list[StreamEvent]:
        source = data.get("index")
        delta = data.get("delta")
        if not isinstance(source, int) or source not in self._index or not isinstance(delta, dict):
            return []
        index = self._index[source]
        kind = delta.get("type")
        if kind == "text_delta":
            text = str(delta.get("text") or "")
            return [BlockDelta(index, text=text)] if text else []
        if kind == "thinking_delta":
            text = str(delta.get("thinking") or "")
            return [BlockDelta(index, text=text)] if text else []
        if kind == "signature_delta":
            signature = str(delta.get("signature") or "")
            return [BlockDelta(index, signature=signature)] if signature else []
        if kind == "input_json_delta":
            piece = str(delta.get("partial_json") or "")
            if not piece:
                return []
            self._args_sent.add(source)
            return [BlockDelta(index, text=piece)]
        return []  # citations_delta and newer kinds

    def _block_stop(self, data: dict[str, Any]) -> list[StreamEvent]:
        source = data.get("index")
        if not isinstance(source, int) or source not in self._index:
            return []
        index = self._index[source]
        out: list[StreamEvent] = []
        if self._kind[source] == "tool_call" and source not in self._args_sent:
            # No input_json_delta: the whole input came with content_block_start (or it is empty).
            out.append(BlockDelta(index, text=arguments_text(self._initial_input.get(source))))
        out.append(BlockStop(index))
        return out


def response_events(resp: ChatResponse) -> list[StreamEvent]:
    """A complete answer as stream events (for an upstream that answered a stream request in JSON)."""
    out: list[StreamEvent] = [StreamStart(resp.id, resp.model, resp.created)]
    for choice in resp.choices:
        for index, part in enumerate(choice.message.parts):
            if isinstance(part, TextPart):
                out += [BlockStart(index, "text"), BlockDelta(index, text=part.text)]
            elif isinstance(part, ThinkingPart):
                out.append(
                    BlockStart(
                        index, "thinking", redacted=part.redacted, provider_details=part.provider_details
                    )
                )
                if part.text or part.signature:
                    out.append(BlockDelta(index, text=part.text, signature=part.signature))
            elif isinstance(part, ToolCallPart):
                out.append(BlockStart(index, "tool_call", tool_call_id=part.id, tool_name=part.name))
                out.append(BlockDelta(index, text=part.arguments))
            else:
                continue
            out.append(BlockStop(index))
        out.append(Finish(choice.finish_reason or "stop"))
    if resp.usage is not None:
        out.append(UsageEvent(resp.usage))
    return out
