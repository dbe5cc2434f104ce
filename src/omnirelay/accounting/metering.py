"""Usage for answers whose upstream reported none, or not all of it.

A stream keeps what it generated cheaply while it runs (references to its events or bytes, nothing
parsed); only when it ends without the upstream's final usage — the client went away, the upstream
cut the stream or timed out, or the vendor never reports usage — is that counted here with the
offline tokenizer, and the result marked `estimated`. The upstream's own usage, when it arrived,
is always kept.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from omnirelay.accounting.tokenizer import count_input, count_output, count_text
from omnirelay.canonical.messages import RefusalPart, TextPart, ThinkingPart, ToolCallPart
from omnirelay.canonical.request import ChatRequest
from omnirelay.canonical.response import ChatResponse
from omnirelay.canonical.stream import BlockDelta, BlockStart, StreamEvent
from omnirelay.canonical.usage import Usage

log = logging.getLogger("omnirelay")


@dataclass(slots=True)
class Generated:
    """The texts of an answer, as the model generated them."""

    texts: list[str] = field(default_factory=list)  # answer text, tool names, tool-call arguments
    reasoning: list[str] = field(default_factory=list)  # thinking text

    def __bool__(self) -> bool:
        return any(self.texts) or any(self.reasoning)


def from_events(events: Iterable[StreamEvent]) -> Generated:
    """What a canonical stream generated: each block's deltas joined, tool names apart."""
    out = Generated()
    kinds: dict[tuple[int, int], str] = {}
    blocks: dict[tuple[int, int], list[str]] = {}
    for event in events:
        if isinstance(event, BlockDelta):
            blocks.setdefault((event.choice, event.index), []).append(event.text)
        elif isinstance(event, BlockStart):
            kinds[(event.choice, event.index)] = event.kind
            if event.tool_name:
                out.texts.append(event.tool_name)
    for key, pieces in blocks.items():
        (out.reasoning if kinds.get(key) == "thinking" else out.texts).append("".join(pieces))
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
        reasoning = count_output(generated.reasoning, model)
        output = count_output(generated.texts, model) + reasoning
        if reported is not None and reported.input_tokens:
            if output <= reported.output_tokens:
                return reported
            return replace(reported, output_tokens=output, reasoning_tokens=reasoning, estimated=True)
        return Usage(input_tokens=prompt(), output_tokens=output, reasoning_tokens=reasoning, estimated=True)
    except Exception:
        log.exception("counting the tokens of an answer without usage failed")
        return reported
