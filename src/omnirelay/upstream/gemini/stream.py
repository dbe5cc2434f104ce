"""Gemini `GenerateContentResponse` chunks → canonical stream events.

One `Translator` serves both paths: a streamed answer is fed chunk by chunk, a complete answer is fed as
one chunk and folded with the shared assembler, so the two can never disagree.

Per candidate (= choice): text parts extend one open text block; `thought` parts one thinking block
(a part carrying a `thoughtSignature` starts a new one, so each thinking part holds at most one signature,
kept in `provider_details["gemini"]`); each `functionCall` arrives whole and becomes a tool-call block
with one delta. Block indices are contiguous per choice. `finishReason` ends the choice; the last
`usageMetadata` wins. A signature on a plain text part has no place in the canonical model and is dropped.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from omnirelay.canonical.messages import ImagePart
from omnirelay.canonical.stream import (
    BlockDelta,
    BlockKind,
    BlockStart,
    BlockStop,
    Finish,
    StreamEvent,
    StreamStart,
)
from omnirelay.canonical.usage import Usage
from omnirelay.errors import UpstreamError
from omnirelay.transport import json
from omnirelay.transport.http import TransportError, UpstreamResponse
from omnirelay.transport.sse import EventSplitter, decode_event
from omnirelay.upstream.base import Target
from omnirelay.upstream.gemini.errors import malformed, stream_error
from omnirelay.upstream.gemini.response import finish_reason, new_call_id, new_response_id, parse_usage
from omnirelay.upstream.openai import transport_error


@dataclass(slots=True)
class _Candidate:
    blocks: int = 0  # index of the next block
    open_kind: BlockKind | None = None
    open_index: int = -1
    has_calls: bool = False
    finished: bool = False
    images: list[tuple[int, ImagePart]] = field(default_factory=list)  # (position among parts, image)


class Translator:
    def __init__(self, target: Target, model: str, keep_images: bool = False) -> None:
        self.target = target
        self.model = model
        self.keep_images = keep_images  # streams have no image block; complete answers keep them
        self.started = False
        self.usage: Usage | None = None
        self.candidates: dict[int, _Candidate] = {}

    def feed(self, chunk: Any) -> list[StreamEvent]:
        if not isinstance(chunk, dict):
            raise malformed(self.target, "a response chunk is not a JSON object")
        err = stream_error(self.target, chunk)
        if err is not None:
            raise err
        events: list[StreamEvent] = []
        if not self.started:
            self.started = True
            rid = chunk.get("responseId")
            events.append(
                StreamStart(
                    id=rid if isinstance(rid, str) and rid else new_response_id(),
                    model=self.model,
                    created=int(time.time()),
                )
            )
        if "usageMetadata" in chunk:
            self.usage = parse_usage(chunk["usageMetadata"]) or self.usage
        candidates = chunk.get("candidates")
        if not isinstance(candidates, list):
            candidates = []
        feedback = chunk.get("promptFeedback")
        blocked = isinstance(feedback, dict) and feedback.get("blockReason")
        if blocked and not candidates and not self.candidates:
            # The prompt was blocked: one empty, filtered choice.
            self.candidates[0] = _Candidate(finished=True)
            events.append(Finish(reason="content_filter", choice=0))
        for pos, cand in enumerate(candidates):
            if not isinstance(cand, dict):
                raise malformed(self.target, "a candidate is not an object")
            index = cand.get("index")
            choice = index if isinstance(index, int) else pos
            state = self.candidates.setdefault(choice, _Candidate())
            if state.finished:
                continue
            content = cand.get("content")
            parts = content.get("parts") if isinstance(content, dict) else None
            for part in parts if isinstance(parts, list) else []:
                if isinstance(part, dict):
                    self._part(choice, state, part, events)
            reason = cand.get("finishReason")
            if isinstance(reason, str) and reason:
                self._close(choice, state, events)
                state.finished = True
                events.append(Finish(reason=finish_reason(reason, state.has_calls), choice=choice))
        return events

    def incomplete(self) -> UpstreamError | None:
        """Why the answer is unfinished (no finishReason for some choice), or None."""
        if not self.candidates:
            return malformed(self.target, "the answer ended before any candidate arrived")
        missing = sorted(i for i, c in self.candidates.items() if not c.finished)
        if missing:
            return malformed(self.target, f"the stream ended without a finish reason (choice {missing[0]})")
        return None

    def images(self, choice: int) -> list[tuple[int, ImagePart]]:
        state = self.candidates.get(choice)
        return state.images if state else []

    # --- parts ------------------------------------------------------------------------------------

    def _close(self, choice: int, state: _Candidate, events: list[StreamEvent]) -> None:
        if state.open_kind is not None:
            events.append(BlockStop(index=state.open_index, choice=choice))
            state.open_kind = None

    def _open(
        self,
        choice: int,
        state: _Candidate,
        kind: BlockKind,
        events: list[StreamEvent],
        **extra: Any,
    ) -> int:
        self._close(choice, state, events)
        index = state.blocks
        state.blocks += 1
        events.append(BlockStart(index=index, kind=kind, choice=choice, **extra))
        return index

    def _part(self, choice: int, state: _Candidate, part: dict[str, Any], events: list[StreamEvent]) -> None:
        signature = part.get("thoughtSignature")
        signature = signature if isinstance(signature, str) and signature else None
        call = part.get("functionCall")
        if isinstance(call, dict):
            details: dict[str, Any] = {}
            if signature:
                details["thoughtSignature"] = signature
            call_id = call.get("id")
            if isinstance(call_id, str) and call_id:
                details["id"] = call_id
            else:
                call_id = new_call_id()
            index = self._open(
                choice,
                state,
                "tool_call",
                events,
                tool_call_id=call_id,
                tool_name=str(call.get("name") or ""),
                provider_details={"gemini": details} if details else None,
            )
            args = call.get("args")
            events.append(BlockDelta(index=index, text=json.dumps(args or {}).decode(), choice=choice))
            events.append(BlockStop(index=index, choice=choice))
            state.has_calls = True
            return
        text = part.get("text")
        if isinstance(text, str):
            if part.get("thought") is True:
                if state.open_kind != "thinking" or signature:
                    if not text and not signature:
                        return
                    gemini = {"thoughtSignature": signature} if signature else {}
                    state.open_index = self._open(
                        choice, state, "thinking", events, provider_details={"gemini": gemini}
                    )
                    state.open_kind = "thinking"
            else:
                if not text:
                    return
                if state.open_kind != "text":
                    state.open_index = self._open(choice, state, "text", events)
                    state.open_kind = "text"
            if text:
                events.append(BlockDelta(index=state.open_index, text=text, choice=choice))
            return
        blob = part.get("inlineData")
        if isinstance(blob, dict) and self.keep_images and isinstance(blob.get("data"), str):
            self._close(choice, state, events)
            image = ImagePart(data=blob["data"], media_type=blob.get("mimeType"))
            state.images.append((state.blocks + len(state.images), image))


async def sse_chunks(target: Target, resp: UpstreamResponse) -> AsyncIterator[Any]:
    """The JSON payloads of a `?alt=sse` body; transport failures become UpstreamErrors."""
    splitter = EventSplitter()
    try:
        async for data in resp.iter_bytes():
            for raw in splitter.feed(data):
                payload = _decode(target, raw)
                if payload is not None:
                    yield payload
    except TransportError as exc:
        raise transport_error(target, exc) from None
    rest = splitter.rest()
    if rest.strip():
        payload = _decode(target, rest)
        if payload is not None:
            yield payload


def _decode(target: Target, raw: bytes) -> Any:
    event = decode_event(raw)
    data = event.data if event is not None and event.data else b""
    if not data.strip():
        # An error may arrive as a bare (pretty-printed) JSON object instead of a `data:` line.
        data = raw.strip()
        if not data.startswith((b"{", b"[")):
            return None
    try:
        return json.loads(data)
    except json.JSONDecodeError:
        raise malformed(target, "a stream event is not valid JSON") from None
