"""Usage accuracy: a stream cut short (the client went away, the upstream broke off) and a vendor that
reports no usage are charged for what was really generated, counted with the offline tokenizer and
flagged as estimated; the upstream's own usage is kept whenever it arrives."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import openai
import orjson
import pytest

from omnirelay.accounting.prices import Price, charge
from omnirelay.accounting.tokenizer import count_text
from omnirelay.canonical.usage import Usage
from omnirelay.passthrough import gemini as gemini_passthrough
from omnirelay.passthrough.gemini import complete_items
from tests.conftest import (
    ANTHROPIC_KEY,
    GEMINI_KEY,
    MASTER_KEY,
    UPSTREAM_KEYS,
    Gateway,
    chat_prompt_tokens,
    serve,
)
from tests.fakes import FakeState
from tests.fakes.anthropic_upstream import FakeAnthropicState
from tests.fakes.gemini_upstream import FakeGeminiState

PRICE = {"input": "1", "output": "2.5"}  # credits per 1M tokens: 1 and 2.5 micro-units a token
MODELS = ["slow-stream", "cut-stream", "no-usage", "gpt-4o-mini"]
WORDS = " ".join(f"word{i}" for i in range(40))  # the fake echoes it back one word per chunk


@pytest.fixture(scope="module")
def gw(fake: FakeState, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    # Load the encoding before the first stream: its one-time load holds the GIL for a moment, which
    # here (gateway and fake upstream as threads of one process) would delay the fake noticing the
    # disconnect, and let it send an event the gateway never read.
    count_text("warm up", "gpt-4o")
    yield from serve(
        tmp_path_factory,
        "usage-accuracy",
        {
            "providers": [
                {
                    "name": "oai",
                    "type": "openai",
                    "base_url": fake.base_url + "/v1",  # type: ignore[attr-defined]
                    "api_keys": UPSTREAM_KEYS[:1],
                    "models": [*MODELS, {"name": "translated", "upstream": "no-usage"}],
                },
                {
                    "name": "compat",
                    "type": "openai-compatible",
                    "base_url": fake.base_url + "/v1",  # type: ignore[attr-defined]
                    "api_keys": UPSTREAM_KEYS[1:],
                    "models": [{"name": "compat-slow", "upstream": "slow-stream"}],
                },
            ],
            "prices": {name: PRICE for name in [*MODELS, "translated", "compat-slow"]},
        },
    )


def client(gw: Gateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.base_url + "/v1", api_key=MASTER_KEY, max_retries=0, timeout=10)


def sent_text(events: list[bytes]) -> str:
    """The answer text in the SSE events the fake upstream really sent."""
    text = []
    for event in events:
        payload = event.removeprefix(b"data: ").strip()
        if payload.startswith(b"{"):
            for choice in orjson.loads(payload).get("choices") or []:
                text.append((choice.get("delta") or {}).get("content") or "")
    return "".join(text)


def cost(input_tokens: int, output_tokens: int) -> int:
    price = Price.from_credits(**PRICE)
    return charge(price, Usage(input_tokens=input_tokens, output_tokens=output_tokens))


@pytest.mark.parametrize("model", ["slow-stream", "compat-slow"])
def test_client_disconnecting_mid_stream_is_charged_for_what_was_generated(
    gw: Gateway, fake: FakeState, model: str
) -> None:
    stream = client(gw).chat.completions.create(
        model=model, stream=True, messages=[{"role": "user", "content": WORDS}]
    )
    request_id = stream.response.headers["x-request-id"]
    received = ""
    for _, chunk in zip(range(4), stream, strict=False):  # the role chunk and three words
        received += chunk.choices[0].delta.content or "" if chunk.choices else ""
    stream.close()

    record = gw.record(request_id)
    sent = sent_text(fake.sent_events)
    assert sent.startswith(received)
    assert 0 < len(sent) < len("echo: " + WORDS), "the upstream should have been stopped mid-way"
    assert record["status"] == 499
    assert record["output_tokens"] == count_text(sent, "slow-stream") > 0
    assert record["input_tokens"] == chat_prompt_tokens(WORDS, "slow-stream")
    assert record["usage_estimated"] == 1
    expected = cost(record["input_tokens"], record["output_tokens"])
    whole = cost(record["input_tokens"], count_text("echo: " + WORDS, "slow-stream"))
    assert record["cost"] == expected and 0 < expected < whole


def test_upstream_cut_mid_stream_is_charged_its_partial_output(gw: Gateway, fake: FakeState) -> None:
    text = "alpha beta gamma delta epsilon"
    stream = client(gw).chat.completions.create(
        model="cut-stream", stream=True, messages=[{"role": "user", "content": text}]
    )
    request_id = stream.response.headers["x-request-id"]
    with pytest.raises(openai.APIError):
        for _ in stream:
            pass
    record = gw.record(request_id)
    sent = sent_text(fake.sent_events)
    assert sent and len(sent) < len("echo: " + text)
    assert record["status"] == 502
    assert record["output_tokens"] == count_text(sent, "cut-stream")
    assert record["input_tokens"] == chat_prompt_tokens(text, "cut-stream")
    assert record["usage_estimated"] == 1
    assert record["cost"] == cost(record["input_tokens"], record["output_tokens"]) > 0


TEXT = "how many tokens is this sentence, exactly?"


def assert_counted(gw: Gateway, request_id: str) -> None:
    record = gw.record(request_id)
    assert record["status"] == 200 and record["usage_estimated"] == 1
    assert record["output_tokens"] == count_text("echo: " + TEXT, "no-usage")
    assert record["input_tokens"] == chat_prompt_tokens(TEXT, "no-usage")
    assert record["cost"] == cost(record["input_tokens"], record["output_tokens"]) > 0


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_vendor_without_usage_is_charged_from_the_tokenizer_and_flagged(gw: Gateway, stream: bool) -> None:
    messages: Any = [{"role": "user", "content": TEXT}]
    api = client(gw)
    model = "no-usage"
    if stream:
        with api.chat.completions.with_streaming_response.create(
            model=model, messages=messages, stream=True
        ) as r:
            lines = list(r.iter_lines())
            request_id = r.headers["x-request-id"]
        assert not any('"usage":{' in line for line in lines)  # nothing is invented for the client
    else:
        raw = api.chat.completions.with_raw_response.create(model=model, messages=messages)
        request_id = raw.headers["x-request-id"]
        assert raw.parse().usage is None
    assert_counted(gw, request_id)


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_translated_answer_without_usage_is_counted(gw: Gateway, stream: bool) -> None:
    """An Anthropic client in front of an OpenAI-compatible vendor that reports no usage."""
    api = anthropic.Anthropic(base_url=gw.base_url, api_key=MASTER_KEY, max_retries=0, timeout=10)
    messages: Any = [{"role": "user", "content": TEXT}]
    if stream:
        with api.messages.with_streaming_response.create(
            model="translated", max_tokens=100, messages=messages, stream=True
        ) as r:
            list(r.iter_lines())
            request_id = r.headers["x-request-id"]
    else:
        raw = api.messages.with_raw_response.create(model="translated", max_tokens=100, messages=messages)
        request_id = raw.headers["x-request-id"]
    assert_counted(gw, request_id)


def test_upstream_usage_is_kept_when_it_arrives(gw: Gateway) -> None:
    with client(gw).chat.completions.with_streaming_response.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "one two three"}], stream=True
    ) as r:
        list(r.iter_lines())
        request_id = r.headers["x-request-id"]
    record = gw.record(request_id)
    # The fake counts words: 3 in, 4 out ("echo: one two three"), reported by the upstream itself.
    assert (record["input_tokens"], record["output_tokens"], record["usage_estimated"]) == (3, 4, 0)


# --- an Anthropic upstream relayed to an Anthropic client (passthrough) ----------------------------


@pytest.fixture(scope="module")
def agw(anthropic_fake: FakeAnthropicState, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    count_text("warm up", "claude-sonnet-4-6")  # see gw
    yield from serve(
        tmp_path_factory,
        "usage-anth",
        {
            "providers": [
                {
                    "name": "anth",
                    "type": "anthropic",
                    "base_url": anthropic_fake.base_url,  # type: ignore[attr-defined]
                    "api_keys": [ANTHROPIC_KEY],
                    "models": ["slow-stream", "cut-stream", "claude-sonnet-4-6"],
                }
            ],
            "prices": {name: PRICE for name in ["slow-stream", "cut-stream", "claude-sonnet-4-6"]},
        },
    )


def anthropic_text(events: list[bytes]) -> tuple[str, int]:
    """The text deltas the fake Anthropic upstream really sent, and the input tokens it reported."""
    text, input_tokens = [], 0
    for event in events:
        data = orjson.loads(event.split(b"data: ", 1)[1])
        if data["type"] == "message_start":
            input_tokens = data["message"]["usage"]["input_tokens"]
        elif data["type"] == "content_block_delta" and data["delta"]["type"] == "text_delta":
            text.append(data["delta"]["text"])
    return "".join(text), input_tokens


def aclient(gw: Gateway) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=gw.base_url, api_key=MASTER_KEY, max_retries=0, timeout=10)


def test_anthropic_client_disconnecting_is_charged_for_what_was_generated(
    agw: Gateway, anthropic_fake: FakeAnthropicState
) -> None:
    stream = aclient(agw).messages.create(
        model="slow-stream", max_tokens=500, stream=True, messages=[{"role": "user", "content": WORDS}]
    )
    request_id = stream.response.headers["x-request-id"]
    deltas = 0
    for event in stream:
        deltas += event.type == "content_block_delta"
        if deltas == 3:
            break
    stream.close()
    record = agw.record(request_id)
    sent, input_tokens = anthropic_text(anthropic_fake.sent_events)
    assert sent and len(sent) < len("echo: " + WORDS)
    assert record["status"] == 499 and record["usage_estimated"] == 1
    assert record["input_tokens"] == input_tokens  # the upstream's own figure, from message_start
    assert record["output_tokens"] == count_text(sent, "slow-stream") > 1
    whole = cost(input_tokens, count_text("echo: " + WORDS, "slow-stream"))
    assert 0 < record["cost"] == cost(input_tokens, record["output_tokens"]) < whole


def test_anthropic_upstream_cut_is_charged_its_partial_output(
    agw: Gateway, anthropic_fake: FakeAnthropicState
) -> None:
    with aclient(agw).messages.with_streaming_response.create(
        model="cut-stream", max_tokens=500, stream=True, messages=[{"role": "user", "content": WORDS}]
    ) as r:
        lines = list(r.iter_lines())
        request_id = r.headers["x-request-id"]
    assert "event: error" in lines
    record = agw.record(request_id)
    sent, input_tokens = anthropic_text(anthropic_fake.sent_events)
    assert record["status"] == 502 and record["usage_estimated"] == 1
    assert (record["input_tokens"], record["output_tokens"]) == (input_tokens, count_text(sent, "cut-stream"))


def test_anthropic_upstream_usage_is_kept(agw: Gateway) -> None:
    with aclient(agw).messages.with_streaming_response.create(
        model="claude-sonnet-4-6", max_tokens=500, stream=True, messages=[{"role": "user", "content": "a b"}]
    ) as r:
        list(r.iter_lines())
        request_id = r.headers["x-request-id"]
    record = agw.record(request_id)
    assert record["status"] == 200 and record["usage_estimated"] == 0
    assert (record["input_tokens"], record["output_tokens"]) == (2, 3)  # the fake counts words


# --- a Gemini upstream relayed to a Gemini client (passthrough) ------------------------------------


@pytest.fixture(scope="module")
def ggw(gemini_fake: FakeGeminiState, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    yield from serve(
        tmp_path_factory,
        "usage-gem",
        {
            "providers": [
                {
                    "name": "gem",
                    "type": "gemini",
                    "base_url": gemini_fake.base_url,  # type: ignore[attr-defined]
                    "api_keys": [GEMINI_KEY],
                    "models": ["cut-stream"],
                }
            ],
            "prices": {"cut-stream": PRICE},
        },
    )


@pytest.mark.parametrize("use_sse", [True, False, None], ids=["sse", "array", "long-array"])
def test_gemini_upstream_cut_is_charged_its_partial_output(
    ggw: Gateway, use_sse: bool | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    if use_sse is None:  # an array too long to keep whole: its items are read as they come
        monkeypatch.setattr(gemini_passthrough, "ARRAY_TAP_LIMIT", 64)
        use_sse = False
    url = ggw.base_url + "/v1beta/models/cut-stream:streamGenerateContent" + ("?alt=sse" if use_sse else "")
    body = {"contents": [{"role": "user", "parts": [{"text": WORDS}]}]}
    resp = httpx.post(url, json=body, headers={"x-goog-api-key": MASTER_KEY}, timeout=10)
    request_id = resp.headers["x-request-id"]
    # What arrived before the cut: whole chunks, each with the prompt count and some text.
    raw = resp.content
    items = [orjson.loads(line[6:]) for line in raw.split(b"\r\n\r\n") if line.startswith(b"data: {")]
    if not use_sse:
        items = complete_items(raw)
    chunks = [i for i in items if "candidates" in i]
    text = "".join(p["text"] for c in chunks for p in c["candidates"][0]["content"]["parts"])
    assert text and len(text) < len("echo: " + WORDS)
    record = ggw.record(request_id)
    assert record["status"] == 502 and record["usage_estimated"] == 1
    assert record["input_tokens"] == chunks[-1]["usageMetadata"]["promptTokenCount"]  # the upstream's
    assert record["output_tokens"] == count_text(text, "cut-stream") > 0
