"""Canonical stream events → Responses API server-sent events.

Every event is `event: <type>` + `data: <json>` with a `sequence_number` counting from 0:
`response.created`, `response.in_progress`, then per output item `output_item.added` → its part and
delta events → `output_item.done`, and last `response.completed` (or `.incomplete` / `.failed`) with
the full response object, usage included. Usage arrives after `Finish`, so the terminal event is
written by `close()`.

Canonical blocks map to output items the way `encode.output_items` maps parts, so the final object
equals the JSON answer for the same canonical response: a thinking block is a `reasoning` item (one
summary part, opened on the first text when the client asked for summaries); a text block opens a
`message` item on its first non-empty delta, and a text block that directly follows another adds a
content part to the same message, which is therefore only finished when another item starts or the
stream ends; a tool-call block is a `function_call` item. Choices other than 0 are ignored (the
Responses API has no `n`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from omnirelay.canonical.messages import ThinkingPart
from omnirelay.canonical.request import ChatRequest
from omnirelay.canonical.response import FinishReason
from omnirelay.canonical.stream import (
    BlockDelta,
    BlockKind,
    BlockStart,
    BlockStop,
    Finish,
    StreamError,
    StreamEvent,
    StreamStart,
    UsageEvent,
)
from omnirelay.canonical.usage import Usage
from omnirelay.errors import GatewayError
from omnirelay.ingress.openai_responses.encode import (
    call_id,
    error_object,
    function_call_item,
    item_id,
    message_item,
    message_status,
    new_response_id,
    outcome,
    response_object,
    text_content,
)
from omnirelay.ingress.openai_responses.thinking import reasoning_item
from omnirelay.transport import json, sse


@dataclass(slots=True)
class _Item:
    index: int  # output_index
    body: dict[str, Any]
    open_blocks: int = 1
    done: bool = False


@dataclass(slots=True)
class _Block:
    kind: BlockKind
    item: _Item | None = None  # None for a text block that has not produced text yet
    content_index: int = 0
    text: list[str] = field(default_factory=list)
    summary_open: bool = False
    signature: str = ""
    redacted: bool = False
    provider_details: dict[str, Any] | None = None


class ResponsesStreamEncoder:
    def __init__(self, req: ChatRequest) -> None:
        self._req = req
        self._seq = 0
        self._id = ""
        self._created = 0
        self._started = False
        self._ended = False
        self._items: list[_Item] = []
        self._blocks: dict[int, _Block] = {}
        self._pending: _Item | None = None  # a message whose blocks all stopped, still open for more text
        self._reason: FinishReason | None = None
        self._usage: Usage | None = None
        # The final response object once the stream has ended (for storage by the caller).
        self.response: dict[str, Any] | None = None

    # --- framing ---------------------------------------------------------------------------------

    def _event(self, kind: str, payload: dict[str, Any]) -> bytes:
        data = {"type": kind, **payload, "sequence_number": self._seq}
        self._seq += 1
        return sse.encode(json.dumps(data), event=kind)

    def _snapshot(self, status: str, **kw: Any) -> dict[str, Any]:
        return response_object(self._req, response_id=self._id, created_at=self._created, status=status, **kw)

    def _start(self, start: StreamStart | None) -> bytes:
        self._started = True
        self._id = start.id if start is not None and start.id.startswith("resp_") else new_response_id()
        self._created = (start.created if start is not None else 0) or int(time.time())
        head = self._snapshot("in_progress", output=[])
        return self._event("response.created", {"response": head}) + self._event(
            "response.in_progress", {"response": head}
        )

    # --- items -----------------------------------------------------------------------------------

    def _add_item(self, prefix: str, body: dict[str, Any]) -> tuple[_Item, bytes]:
        out = self._flush_pending()
        item = _Item(len(self._items), body)
        body["id"] = item_id(prefix, self._id, item.index)
        self._items.append(item)
        return item, out + self._event(
            "response.output_item.added", {"output_index": item.index, "item": dict(body)}
        )

    def _finish_item(self, item: _Item, body: dict[str, Any]) -> bytes:
        item.body, item.done = body, True
        return self._event("response.output_item.done", {"output_index": item.index, "item": body})

    def _flush_pending(self, last: bool = False) -> bytes:
        """Finish the pending message; `last` when nothing can follow it (the stream is ending)."""
        item, self._pending = self._pending, None
        if item is None:
            return b""
        status = message_status(self._reason if last else None, item.index, len(self._items) - 1)
        return self._finish_item(item, {**item.body, "status": status})

    def _open_text(self, block: _Block) -> bytes:
        pending = self._pending
        if pending is not None and pending.index == len(self._items) - 1:
            self._pending = None
            item, out = pending, b""
            item.open_blocks += 1
        else:
            item, out = self._add_item("msg", message_item("", [], "in_progress"))
        block.item = item
        block.content_index = len(item.body["content"])
        item.body["content"].append(text_content(""))
        return out + self._event(
            "response.content_part.added",
            {
                "item_id": item.body["id"],
                "output_index": item.index,
                "content_index": block.content_index,
                "part": text_content(""),
            },
        )

    # --- blocks ----------------------------------------------------------------------------------

    def _block_start(self, event: BlockStart) -> bytes:
        block = _Block(event.kind, redacted=event.redacted, provider_details=event.provider_details)
        self._blocks[event.index] = block
        out = b""
        if event.kind == "thinking":
            block.item, out = self._add_item("rs", {"type": "reasoning", "id": "", "summary": []})
        elif event.kind == "tool_call":
            index = len(self._items)
            call = call_id(event.tool_call_id, self._id, index, event.provider_details)
            body = function_call_item("", call, event.tool_name or "", "", "in_progress")
            block.item, out = self._add_item("fc", body)
        return out

    def _block_delta(self, event: BlockDelta) -> bytes:
        block = self._blocks.get(event.index)
        if block is None:
            return b""
        if event.signature:
            block.signature += event.signature
        if not event.text:
            return b""
        block.text.append(event.text)
        out = b""
        if block.kind == "text":
            if block.item is None:
                out = self._open_text(block)
            item = block.item
            assert item is not None
            item.body["content"][block.content_index]["text"] += event.text
            return out + self._event(
                "response.output_text.delta",
                {
                    "item_id": item.body["id"],
                    "output_index": item.index,
                    "content_index": block.content_index,
                    "delta": event.text,
                    "logprobs": [],
                },
            )
        item = block.item
        assert item is not None
        if block.kind == "tool_call":
            return self._event(
                "response.function_call_arguments.delta",
                {"item_id": item.body["id"], "output_index": item.index, "delta": event.text},
            )
        if not self._req.include_reasoning or block.redacted:
            return b""
        where = {"item_id": item.body["id"], "output_index": item.index, "summary_index": 0}
        if not block.summary_open:
            block.summary_open = True
            out = self._event(
                "response.reasoning_summary_part.added",
                {**where, "part": {"type": "summary_text", "text": ""}},
            )
        return out + self._event("response.reasoning_summary_text.delta", {**where, "delta": event.text})

    def _block_stop(self, block: _Block) -> bytes:
        item = block.item
        if item is None:
            return b""  # a text block that never produced text
        text = "".join(block.text)
        ref = {"item_id": item.body["id"], "output_index": item.index}
        if block.kind == "text":
            at = {**ref, "content_index": block.content_index}
            out = self._event("response.output_text.done", {**at, "text": text, "logprobs": []})
            out += self._event("response.content_part.done", {**at, "part": text_content(text)})
            item.open_blocks -= 1
            if item.open_blocks == 0:
                if self._pending is not None:
                    out += self._flush_pending()
                self._pending = item
            return out
        if block.kind == "tool_call":
            out = self._event("response.function_call_arguments.done", {**ref, "arguments": text})
            return out + self._finish_item(item, {**item.body, "arguments": text, "status": "completed"})
        out = b""
        if block.summary_open:
            where = {**ref, "summary_index": 0}
            out = self._event("response.reasoning_summary_text.done", {**where, "text": text})
            out += self._event(
                "response.reasoning_summary_part.done",
                {**where, "part": {"type": "summary_text", "text": text}},
            )
        part = ThinkingPart(text, block.signature or None, block.redacted, block.provider_details)
        final = reasoning_item(item.body["id"], part, self._req.include_reasoning)
        return out + self._finish_item(item, final)

    # --- the encoder protocol --------------------------------------------------------------------

    def encode(self, event: StreamEvent) -> bytes:
        if self._ended:
            return b""
        if not self._started:
            head = self._start(event if isinstance(event, StreamStart) else None)
            if isinstance(event, StreamStart):
                return head
        else:
            head = b""
        if isinstance(event, BlockDelta):
            return head + (self._block_delta(event) if event.choice == 0 else b"")
        if isinstance(event, BlockStart):
            return head + (self._block_start(event) if event.choice == 0 else b"")
        if isinstance(event, BlockStop):
            block = self._blocks.pop(event.index, None) if event.choice == 0 else None
            return head + (self._block_stop(block) if block is not None else b"")
        if isinstance(event, Finish):
            if event.choice == 0:
                self._reason = event.reason
        elif isinstance(event, UsageEvent):
            self._usage = event.usage
        elif isinstance(event, StreamError):
            return head + self.error(event.error)
        return head

    def close(self) -> bytes:
        if self._ended:
            return b""
        out = b"" if self._started else self._start(None)
        for index in sorted(self._blocks):  # blocks the upstream never stopped
            out += self._block_stop(self._blocks.pop(index))
        out += self._flush_pending(last=True)
        self._ended = True
        status, incomplete, error = outcome(self._reason)
        self.response = self._snapshot(
            status,
            output=[item.body for item in self._items],
            usage=self._usage,
            incomplete_details=incomplete,
            error=error,
        )
        kind = {"completed": "response.completed", "incomplete": "response.incomplete"}.get(
            status, "response.failed"
        )
        return out + self._event(kind, {"response": self.response})

    def error(self, err: GatewayError) -> bytes:
        """An `error` event, then `response.failed` with the items finished so far."""
        if self._ended:
            return b""
        out = b"" if self._started else self._start(None)
        self._ended = True
        code = err.code or err.type
        out += self._event("error", {"code": code, "message": err.message, "param": err.param})
        self.response = self._snapshot(
            "failed",
            output=[item.body for item in self._items if item.done],
            usage=self._usage,
            error=error_object(err),
        )
        return out + self._event("response.failed", {"response": self.response})
