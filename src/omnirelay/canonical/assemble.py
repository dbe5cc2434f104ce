"""Fold stream events into a complete response: the one place that accumulates deltas."""

from __future__ import annotations

from collections.abc import Iterable

from omnirelay.canonical.messages import Message, Part, TextPart, ThinkingPart, ToolCallPart
from omnirelay.canonical.response import ChatResponse, Choice
from omnirelay.canonical.stream import (
    BlockDelta,
    BlockStart,
    Finish,
    StreamError,
    StreamEvent,
    StreamStart,
    UsageEvent,
)


class Assembler:
    def __init__(self) -> None:
        self.response = ChatResponse(id="", model="", created=0)
        self._blocks: dict[tuple[int, int], Part] = {}
        self.error: StreamError | None = None

    def _choice(self, index: int) -> Choice:
        for choice in self.response.choices:
            if choice.index == index:
                return choice
        choice = Choice(index=index, message=Message(role="assistant"))
        self.response.choices.append(choice)
        self.response.choices.sort(key=lambda c: c.index)
        return choice

    def feed(self, event: StreamEvent) -> None:
        if isinstance(event, BlockDelta):
            part = self._blocks.get((event.choice, event.index))
            if isinstance(part, TextPart):
                part.text += event.text
            elif isinstance(part, ThinkingPart):
                part.text += event.text
                if event.signature:
                    part.signature = (part.signature or "") + event.signature
            elif isinstance(part, ToolCallPart):
                part.arguments += event.text
        elif isinstance(event, BlockStart):
            new: Part
            if event.kind == "text":
                new = TextPart("")
            elif event.kind == "thinking":
                new = ThinkingPart("", redacted=event.redacted, provider_details=event.provider_details)
            else:
                new = ToolCallPart(
                    id=event.tool_call_id or "",
                    name=event.tool_name or "",
                    arguments="",
                    provider_details=event.provider_details,
                )
            self._blocks[(event.choice, event.index)] = new
            self._choice(event.choice).message.parts.append(new)
        elif isinstance(event, Finish):
            self._choice(event.choice).finish_reason = event.reason
        elif isinstance(event, UsageEvent):
            self.response.usage = event.usage
        elif isinstance(event, StreamStart):
            self.response.id, self.response.model, self.response.created = (
                event.id,
                event.model,
                event.created,
            )
        elif isinstance(event, StreamError):
            self.error = event


def assemble(events: Iterable[StreamEvent]) -> ChatResponse:
    asm = Assembler()
    for event in events:
        asm.feed(event)
    return asm.response
