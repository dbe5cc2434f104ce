"""Usage for answers whose upstream reported none, or not all of it.

A stream keeps what it generated cheaply while it runs (references to its events or bytes, nothing
parsed); only when it ends without the upstream's final usage — the client went away, the upstream
cut the stream or timed out, or the vendor never reports usage — is that counted here with the
offline tokenizer, and the result marked `estimated`. The upstream's own usage, when it arrived,
is always kept.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

from omnirelay.accounting.tokenizer import count_input, count_output, count_text, loaded
from omnirelay.canonical.messages import RefusalPart, TextPart, ThinkingPart, ToolCallPart
from omnirelay.canonical.request import ChatRequest
from omnirelay.canonical.response import ChatResponse
from omnirelay.canonical.stream import BlockDelta, BlockStart, StreamEvent
from omnirelay.canonical.usage import Usage

log = logging.getLogger("omnirelay")

T = TypeVar("T")

# Counting more text than this (characters, or request bytes for a prompt) in an async context goes
# to a worker thread: tiktoken takes about 30 ms a megabyte, which would stall every other request.
OFF_LOOP_CHARS = 64 * 1024
FOLD_PIECES = 4096  # delta texts a translated stream keeps apart before joining them per block


@dataclass(slots=True)
class Generated:
    """The texts of an answer, as the model generated them."""

    texts: list[str] = field(default_factory=list)  # answer text, tool names, tool-call arguments
    reasoning: list[str] = field(default_factory=list)  # thinking text
    counted: int = 0  # tokens of earlier texts, already counted (a very long stream's), reasoning apart
    counted_reasoning: int = 0

    def __bool__(self) -> bool:
        return any(self.texts) or any(self.reasoning) or self.counted > 0 or self.counted_reasoning > 0

    def chars(self) -> int:
        return sum(map(len, self.texts)) + sum(map(len, self.reasoning))


def from_events(events: Iterable[StreamEvent]) -> Generated:
    """What a canonical stream generated: each block's deltas joined, tool names apart."""
    kept = Transcript()
    for event in events:
        kept.add(event)
    return kept.result()


class Transcript:
    """What a translated stream generated, kept compactly while it runs (the texts only, not the
    events): a delta costs a list append; a new run of deltas, a block start or every FOLD_PIECES
    texts (the pieces are then joined per block) a little more. A long stream keeps about its text."""

    __slots__ = ("choice", "folded", "index", "kinds", "names", "pieces", "runs", "size")

    def __init__(self) -> None:
        self.pieces: list[str] = []  # delta texts since the last fold, in order
        self.runs: list[tuple[int, tuple[int, int]]] = []  # (first piece, block) of each run of deltas
        self.choice = self.index = -1  # the block of the current run
        self.folded: dict[tuple[int, int], list[str]] = {}  # block → its earlier texts, joined per fold
        self.kinds: dict[tuple[int, int], str] = {}
        self.names: list[str] = []
        self.size = 0  # characters folded so far

    def add(self, event: StreamEvent) -> None:
        if type(event) is BlockDelta:  # the common case first, and as cheap as it can be
            pieces = self.pieces
            if event.index != self.index or event.choice != self.choice:
                self.choice, self.index = event.choice, event.index
                self.runs.append((len(pieces), (event.choice, event.index)))
            pieces.append(event.text)
            if len(pieces) >= FOLD_PIECES:
                self._fold()
        elif isinstance(event, BlockStart):
            self.kinds[(event.choice, event.index)] = event.kind
            if event.tool_name:
                self.names.append(event.tool_name)

    def _fold(self) -> None:
        pieces, runs = self.pieces, self.runs
        joined: dict[tuple[int, int], list[str]] = {}
        for n, (start, key) in enumerate(runs):
            end = runs[n + 1][0] if n + 1 < len(runs) else len(pieces)
            joined.setdefault(key, []).extend(pieces[start:end])
        for key, texts in joined.items():
            text = "".join(texts)
            self.size += len(text)
            self.folded.setdefault(key, []).append(text)
        self.pieces, self.runs = [], []
        self.choice = self.index = -1

    def chars(self) -> int:
        """How many characters were generated (what counting them costs)."""
        return self.size + sum(map(len, self.pieces))

    def result(self) -> Generated:
        self._fold()
        out = Generated(texts=list(self.names))
        for key, texts in self.folded.items():
            (out.reasoning if self.kinds.get(key) == "thinking" else out.texts).append("".join(texts))
        return out


def from_response(resp: ChatResponse) -> Generated:
    out = Generated()
    for choice in resp.choices:
        for part in choice.message.parts:
            if isinstance(part, (TextPart, RefusalPart)):
                out.texts.append(part.text)
            elif isinstance(part, ThinkingPart):
                out.reasoning.append(part.text)
            elif isinstance(part, ToolCallPart):
                out.texts += (part.name, part.arguments)
    return out


def counted(before: Generated, more: Generated, model: str) -> Generated:
    """`before`'s counts plus `more`'s texts, counted (a long stream keeps numbers, not texts)."""
    return Generated(
        counted=before.counted + count_output(more.texts, model),
        counted_reasoning=before.counted_reasoning + count_output(more.reasoning, model),
    )


def prompt_of(decode: Callable[[], ChatRequest] | None, body: Any, model: str) -> Callable[[], int]:
    """A lazy count of a request body's prompt tokens: decoded canonically where the body decodes,
    else every string in it outside media fields."""

    def count() -> int:
        if decode is not None:
            try:
                return count_input(decode(), model)
            except Exception:
                pass
        return sum(count_text(s, model) for s in _strings(body))

    return count


_MEDIA_KEYS = frozenset({"data", "url", "image_url", "input_audio", "inlineData", "inline_data", "file_data"})


def _strings(value: Any) -> Iterable[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)
    elif isinstance(value, dict):
        for key, item in value.items():
            if key not in _MEDIA_KEYS and key != "model":
                yield from _strings(item)


def prompt_usage(prompt: Callable[[], int]) -> Usage | None:
    """The usage of a stream that ended before anything about its usage was known (the client went
    away before the first chunk): its prompt, counted, which the upstream has already processed."""
    try:  # runs while a request is being closed: a failure here must not lose its usage record
        return Usage(input_tokens=prompt(), estimated=True)
    except Exception:
        log.exception("counting the prompt of a stream without usage failed")
        return None


def settle_usage(
    model: str,
    generated: Generated,
    reported: Usage | None,
    prompt: Callable[[], int],
    complete: bool,
) -> Usage | None:
    """The usage to charge for an answer that ended without the upstream's final usage.

    `reported` is what the upstream said so far (the prompt side of an Anthropic stream, Gemini's
    running counts); its prompt figures are kept, and the output is what was generated, counted,
    when that is more. An incomplete answer that generated nothing adds nothing.
    """
    if not complete and not generated:
        return reported
    try:  # runs while a request is being closed: a failure here must not lose its usage record
        reasoning = count_output(generated.reasoning, model) + generated.counted_reasoning
        output = count_output(generated.texts, model) + generated.counted + reasoning
        if reported is not None and reported.input_tokens:
            if output <= reported.output_tokens:
                return reported
            return replace(reported, output_tokens=output, reasoning_tokens=reasoning, estimated=True)
        return Usage(input_tokens=prompt(), output_tokens=output, reasoning_tokens=reasoning, estimated=True)
    except Exception:
        log.exception("counting the tokens of an answer without usage failed")
        return reported


async def off_loop(fn: Callable[[], T], model: str, size: int) -> T:
    """Run a count from an async context: inline when its text is small (`size`, in characters or
    bytes) and the model's encoding is loaded, else in a worker thread so the loop never stalls on a
    large text or on an encoding's first load (about 0.2 s)."""
    if size > OFF_LOOP_CHARS or not loaded(model):
        return await asyncio.to_thread(fn)
    return fn()
