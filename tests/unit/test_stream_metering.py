"""What streams keep to charge their output when the upstream's usage never comes: compact, bounded,
and counted the same as the whole texts would be; settled even when closing the upstream fails, and
counted off the event loop when the text is large."""

from __future__ import annotations

import asyncio
import random
import threading
import tracemalloc
from collections.abc import AsyncIterator, Iterable
from types import SimpleNamespace
from typing import Any

import pytest

from omnirelay import passthrough
from omnirelay.accounting import metering
from omnirelay.accounting.metering import Generated, Transcript, from_events, off_loop
from omnirelay.accounting.tokenizer import count_output, count_text
from omnirelay.call import Call
from omnirelay.canonical.stream import BlockDelta, BlockStart, BlockStop, StreamEvent, UsageEvent
from omnirelay.canonical.usage import Usage
from omnirelay.passthrough import Tap
from omnirelay.passthrough import anthropic as anthropic_passthrough
from omnirelay.passthrough import gemini as gemini_passthrough
from omnirelay.passthrough import openai as openai_passthrough
from omnirelay.transport import json

MODEL = "gpt-4o"


def reference(events: Iterable[StreamEvent]) -> Generated:
    """How a canonical stream's texts were read before (every event kept, grouped at the end)."""
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


def canonical_stream(seed: int, deltas: int) -> list[StreamEvent]:
    """Thinking, text and tool blocks over two choices, their deltas interleaved at random."""
    rng = random.Random(seed)
    events: list[StreamEvent] = []
    for choice in (0, 1):
        events += [
            BlockStart(0, "thinking", choice=choice),
            BlockStart(1, "text", choice=choice),
            BlockStart(2, "tool_call", choice=choice, tool_call_id="c", tool_name=f"tool{choice}"),
        ]
    for n in range(deltas):
        events.append(
            BlockDelta(
                rng.randrange(3), rng.choice([" word", "s", f" {n}", "é", ""]), choice=rng.randrange(2)
            )
        )
        if rng.random() < 0.01:
            events.append(UsageEvent(Usage(input_tokens=3)))
    events.append(BlockStop(0))
    return events


def totals(gen: Generated) -> tuple[int, int]:
    reasoning = count_output(gen.reasoning, MODEL) + gen.counted_reasoning
    return count_output(gen.texts, MODEL) + gen.counted + reasoning, reasoning


@pytest.mark.parametrize("seed", range(4))
def test_a_translated_stream_keeps_its_texts_not_its_events(
    seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(metering, "FOLD_PIECES", 64)  # many folds, some inside runs
    events = canonical_stream(seed, 3000)
    expected = reference(events)
    got = from_events(events)
    assert sorted(got.texts) == sorted(expected.texts)
    assert sorted(got.reasoning) == sorted(expected.reasoning)


def test_a_long_translated_stream_keeps_about_its_text() -> None:
    deltas = [BlockDelta(0, f" w{n % 1000}") for n in range(100_000)]
    tracemalloc.start()
    kept = Transcript()
    kept.add(BlockStart(0, "text"))
    for event in deltas:
        kept.add(event)
    size, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    text = sum(len(d.text) for d in deltas)  # ~550 kB; every event kept was ~13 MB
    assert size < 2 * text
    assert kept.result().texts == ["".join(d.text for d in deltas)]


def openai_events(tokens: int) -> list[bytes]:
    events = []
    for n in range(tokens):
        delta: dict[str, Any] = {"content": f" word{n}"} if n % 5 else {"reasoning_content": f" think{n}"}
        chunk = {"id": "chatcmpl-x", "object": "chat.completion.chunk", "created": 1, "model": MODEL}
        events.append(b"data: " + json.dumps({**chunk, "choices": [{"index": 0, "delta": delta}]}) + b"\n\n")
    return events


@pytest.mark.parametrize(
    ("raw", "packed"),
    [(10**9, 10**9), (1024, 10**9), (1024, 4096), (1024, 0)],
    ids=["kept", "packed", "packed-then-read", "read"],
)
def test_a_long_passthrough_stream_is_counted_the_same(
    raw: int, packed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(passthrough, "TAP_RAW_BYTES", raw)
    monkeypatch.setattr(passthrough, "TAP_PACKED_BYTES", packed)
    monkeypatch.setattr(passthrough, "TAP_COUNT_EVENTS", 100)
    count_text("warm", MODEL)  # the read-and-count phase counts only with a loaded encoding
    events = openai_events(3000)
    whole = openai_passthrough.Texts()
    for event in events:
        whole.feed(event)
    tap = Tap(openai_passthrough.Texts, MODEL)
    for n in range(0, len(events), 7):
        batch = events[n : n + 7]
        tap.keep(batch, sum(map(len, batch)))
    if packed == 0:
        assert tap.counted.counted > 0  # its texts were counted as it went, not kept
    assert totals(tap._generated()) == totals(whole.result())


def test_a_passthrough_stream_keeps_a_bounded_amount() -> None:
    count_text("warm", MODEL)
    events = openai_events(400_000)  # ~50 MB of events
    tracemalloc.start()
    tap = Tap(openai_passthrough.Texts, MODEL)
    for n in range(0, len(events), 4):
        batch = events[n : n + 4]
        tap.keep(batch, sum(map(len, batch)))
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < passthrough.TAP_RAW_BYTES + passthrough.TAP_PACKED_BYTES + 4 * 1024 * 1024


class FakeResponse:
    """An upstream answer whose body breaks off after some chunks and whose close fails."""

    status = 200
    headers: dict[str, str] = {}

    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = chunks

    async def read(self) -> bytes:
        return b"".join(self.chunks)

    async def iter_bytes(self) -> AsyncIterator[bytes]:
        for chunk in self.chunks:
            yield chunk

    async def aclose(self) -> None:
        raise RuntimeError("closing failed")


def fake_dep() -> Any:
    return SimpleNamespace(upstream_model=MODEL, provider=SimpleNamespace(name="p", target=None))


def anthropic_events() -> list[bytes]:
    start = {"type": "message_start", "message": {"usage": {"input_tokens": 7, "output_tokens": 1}}}
    block = {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}
    delta = {
        "type": "content_block_delta",
        "index": 0,
        "delta": {"type": "text_delta", "text": "hello there"},
    }
    return [
        b"event: " + d["type"].encode() + b"\ndata: " + json.dumps(d) + b"\n\n"  # type: ignore[index]
        for d in (start, block, delta)
    ]


def gemini_item(text: str, final: bool = False) -> dict[str, Any]:
    item: dict[str, Any] = {"candidates": [{"content": {"parts": [{"text": text}], "role": "model"}}]}
    item["usageMetadata"] = {"promptTokenCount": 7, "candidatesTokenCount": 1 if not final else 999}
    return item


@pytest.mark.parametrize("dialect", ["openai", "anthropic", "gemini-sse", "gemini-array"])
async def test_a_cut_stream_is_charged_even_when_closing_the_upstream_fails(dialect: str) -> None:
    call = Call("r", "chat", None)
    dep = fake_dep()
    relay: AsyncIterator[bytes]
    if dialect == "openai":
        resp = FakeResponse(openai_events(3))
        relay = openai_passthrough.relay_stream(call, dep, resp, False, lambda: 7)
    elif dialect == "anthropic":
        resp = FakeResponse(anthropic_events())
        relay = anthropic_passthrough.relay_stream(call, dep, resp, lambda: 7)
    elif dialect == "gemini-sse":
        resp = FakeResponse([b"data: " + json.dumps(gemini_item("hello there")) + b"\r\n\r\n"])
        relay = gemini_passthrough._relay_sse(call, dep, resp, lambda: 7)
    else:
        resp = FakeResponse([b"[" + json.dumps(gemini_item("hello there")) + b",\r\n"])
        relay = gemini_passthrough._relay_array(call, dep, resp, lambda: 7)
    with pytest.raises(RuntimeError, match="closing failed"):
        async for _ in relay:
            pass
    assert call.usage is not None and call.usage.estimated
    assert call.usage.input_tokens == 7 and call.usage.output_tokens > 1


@pytest.mark.parametrize("ended", [True, False], ids=["whole", "cut"])
async def test_a_long_json_array_stream_is_read_as_it_comes(
    ended: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(gemini_passthrough, "ARRAY_TAP_LIMIT", 256)
    monkeypatch.setattr(gemini_passthrough, "ITEMS_COUNTED", 10)
    count_text("warm", MODEL)
    items = [gemini_item(f" word{n} é") for n in range(200)]
    body = b"[" + b",\r\n".join(json.dumps(i) for i in items) + b"]"
    if not ended:
        body = body[: len(body) * 2 // 3]
    chunks = [body[n : n + 37] for n in range(0, len(body), 37)]  # cut anywhere, inside characters too

    class Response(FakeResponse):
        async def aclose(self) -> None:
            return None

    call = Call("r", "chat", None)
    relayed = b"".join(
        [c async for c in gemini_passthrough._relay_array(call, fake_dep(), Response(chunks), lambda: 7)]
    )
    assert relayed == body
    assert call.usage is not None and call.usage.input_tokens == 7
    if ended:  # the upstream's own usage, read from the items past the limit
        assert call.status == 200 and not call.usage.estimated
        return
    whole = gemini_passthrough.complete_items(body)
    text = "".join(i["candidates"][0]["content"]["parts"][0]["text"] for i in whole)
    assert call.usage.estimated
    assert abs(call.usage.output_tokens - count_text(text, MODEL)) <= len(whole) // 10  # counted in parts


async def test_large_counts_run_off_the_event_loop() -> None:
    loop_thread = threading.get_ident()
    count_text("warm", MODEL)
    assert await off_loop(threading.get_ident, MODEL, 10) == loop_thread
    assert await off_loop(threading.get_ident, MODEL, metering.OFF_LOOP_CHARS + 1) != loop_thread
    assert await off_loop(threading.get_ident, "gpt-4", 10) != loop_thread or metering.loaded("gpt-4")


async def test_the_loop_keeps_running_while_a_large_prompt_is_counted() -> None:
    count_text("warm", MODEL)
    text = "lorem ipsum dolor sit amet " * 200_000  # ~5 MB: about 0.15 s to count
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.005)

    ticker = asyncio.create_task(tick())
    await asyncio.sleep(0)
    tokens = await off_loop(lambda: count_text(text, MODEL), MODEL, len(text))
    ticker.cancel()
    assert tokens > 0 and ticks > 3


def test_a_count_at_the_streams_end_survives_the_client_leaving() -> None:
    """The client leaves right after the last chunk while the end-of-stream count runs in a worker
    thread: the relay is cancelled, but the count still sets the usage, and on_close sees it."""
    import asyncio
    import time

    from omnirelay.accounting.metering import OFF_LOOP_CHARS
    from omnirelay.call import Call
    from omnirelay.canonical.usage import Usage
    from omnirelay.transport.responses import StreamResponse

    call = Call("req_test", "chat.completions", None)

    def slow_count() -> Usage:
        time.sleep(0.2)
        return Usage(input_tokens=3, output_tokens=7, estimated=True)

    async def body() -> Any:
        try:
            yield b"data: [DONE]\n\n"
        finally:
            await call.meter(slow_count, "gpt-4o", OFF_LOOP_CHARS + 1)

    seen: list[Any] = []

    async def main() -> None:
        sent = asyncio.Event()

        async def send(message: dict[str, Any]) -> None:
            if message.get("body"):
                sent.set()

        async def receive() -> dict[str, Any]:
            await sent.wait()
            await asyncio.sleep(0.02)  # the client closes right after [DONE]
            return {"type": "http.disconnect"}

        response = StreamResponse(body(), [])

        async def on_close(disconnected: bool) -> None:
            if call.metering is not None:
                await call.metering
            seen.append((disconnected, call.usage))

        response.on_close = on_close
        await response({}, receive, send)

    asyncio.run(main())
    assert seen and seen[0][1] == Usage(input_tokens=3, output_tokens=7, estimated=True)


def test_a_long_gemini_array_loads_the_encoding_off_the_loop_to_stay_bounded(monkeypatch: Any) -> None:
    """Items are counted (and dropped) every ITEMS_COUNTED items once the encoding is loaded; when it
    is not loaded yet, it is loaded in a worker thread rather than the texts kept forever."""
    import asyncio

    from omnirelay.call import Call
    from omnirelay.passthrough import gemini

    monkeypatch.setattr(gemini, "ITEMS_COUNTED", 2)
    state = {"loaded": False}
    monkeypatch.setattr(gemini, "loaded", lambda model: state["loaded"])
    call = Call("req_items", "gemini", None)
    item = b'{"candidates":[{"content":{"parts":[{"text":"one two three"}]}}]}'

    async def main() -> None:
        items = gemini.Items("gemini-2.5-flash")
        items.feed(call, b"[" + b",".join([item] * 3))
        assert items.warming is not None  # not loaded: a worker thread loads it
        await items.warming
        state["loaded"] = True
        items.feed(call, b"," + b",".join([item] * 2))
        assert items.seen == 0 and items.counted.counted > 0  # counted and dropped

    asyncio.run(main())


def test_a_long_gemini_array_with_an_invalid_byte_keeps_its_items_aligned() -> None:
    from omnirelay.call import Call
    from omnirelay.passthrough import gemini

    call = Call("req_utf8", "gemini", None)
    good = b'{"candidates":[{"content":{"parts":[{"text":"fine"}]}}]}'
    bad = b'{"candidates":[{"content":{"parts":[{"text":"bad \xff byte"}]}}]}'
    items = gemini.Items("gemini-2.5-flash")
    items.feed(call, b"[" + bad + b"," + good[:20])  # the next item arrives in two pieces
    items.feed(call, good[20:] + b"]")
    assert items.finish(call)  # still a whole JSON array
    assert items.seen == 2
