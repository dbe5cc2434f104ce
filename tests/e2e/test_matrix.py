"""The translation matrix: every client protocol (ingress) x every upstream family x every feature.

Each cell drives the gateway with the ingress's official SDK (`matrix_drivers`) and checks both what
the client saw and what the fake upstream received, in that vendor's own shape. Same-protocol cells
exercise the byte passthrough, the others the canonical translation.

A cell that fails because of a gateway bug keeps asserting the correct behaviour and is listed in
`KNOWN_BUGS` (strict xfail: it turns red once the bug is fixed, so the entry can go).
"""

from __future__ import annotations

import base64
import json
import time
from dataclasses import dataclass
from typing import Any

import pytest

from tests.conftest import Gateway
from tests.e2e.matrix_drivers import DRIVERS, PNG_BYTES, SCHEMA, TOOL_NAME
from tests.fakes import FakeState
from tests.fakes.anthropic_upstream import FakeAnthropicState
from tests.fakes.gemini_upstream import FakeGeminiState

INGRESSES = ["openai-chat", "anthropic", "gemini", "responses"]
FAMILIES = ["openai", "anthropic", "gemini"]

# (feature, ingress, upstream family) → why the cell fails today.
KNOWN_BUGS: dict[tuple[str, str, str], str] = {}


def cells(feature: str) -> list[Any]:
    out = []
    for ingress in INGRESSES:
        for family in FAMILIES:
            reason = KNOWN_BUGS.get((feature, ingress, family))
            marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
            out.append(pytest.param(ingress, family, id=f"{ingress}->{family}", marks=marks))
    return out


def matrix(feature: str) -> Any:
    return pytest.mark.parametrize(("ingress", "family"), cells(feature))


# --- upstream views -----------------------------------------------------------------------------


def get(obj: Any, name: str) -> Any:
    """A Gemini field in camelCase or snake_case (the API accepts both)."""
    if not isinstance(obj, dict):
        return None
    snake = "".join("_" + c.lower() if c.isupper() else c for c in name)
    return obj.get(name, obj.get(snake))


def _b64(data: str) -> bytes:
    return base64.b64decode(data.replace("-", "+").replace("_", "/") + "=" * (-len(data) % 4))


def _texts(content: Any) -> str:
    if isinstance(content, str):
        return content
    return "".join(str(b.get("text", "")) for b in content or [] if isinstance(b, dict))


@dataclass
class Upstream:
    """One fake upstream family: its models and how its wire format spells each feature."""

    name: str
    state: Any
    model: str
    cache_model: str | None
    fail_model: str
    cut_model: str
    retry_after: str
    cache_usage: tuple[int, int, int] | None  # (input incl. cache, cache reads, cache writes)
    thought_prefix: str | None  # the fake's thinking text before the user text

    def mark(self) -> int:
        return len(self.state.requests)

    def chat_requests(self, mark: int) -> list[dict[str, Any]]:
        out = []
        for record in self.state.requests[mark:]:
            path = record["path"]
            if path.endswith(("/chat/completions", "/v1/messages")) or "enerateContent" in path:
                out.append(record)
        assert out, f"the {self.name} fake received no chat request"
        return out

    def last(self, mark: int) -> dict[str, Any]:
        body = self.chat_requests(mark)[-1]["json"]
        assert isinstance(body, dict)
        return body

    def streamed(self, mark: int) -> bool:
        record = self.chat_requests(mark)[-1]
        return bool(record["json"].get("stream")) or "streamGenerateContent" in record["path"]

    # Each returns the feature as this vendor spells it, in a vendor-neutral form.

    def system(self, body: dict[str, Any]) -> str:
        if self.name == "openai":
            first = body["messages"][0]
            assert first["role"] in ("system", "developer")
            return _texts(first["content"])
        if self.name == "anthropic":
            return _texts(body["system"])
        return "".join(p.get("text", "") for p in get(get(body, "systemInstruction"), "parts"))

    def images(self, body: dict[str, Any]) -> list[tuple[str, bytes]]:
        out = []
        if self.name == "openai":
            for message in body["messages"]:
                for part in message["content"] if isinstance(message["content"], list) else []:
                    if part.get("type") == "image_url":
                        head, _, data = part["image_url"]["url"].partition(",")
                        assert head.startswith("data:") and head.endswith(";base64"), head
                        out.append((head[5:].split(";")[0], _b64(data)))
        elif self.name == "anthropic":
            for turn in body["messages"]:
                for block in turn["content"] if isinstance(turn["content"], list) else []:
                    if block.get("type") == "image":
                        assert block["source"]["type"] == "base64"
                        out.append((block["source"]["media_type"], _b64(block["source"]["data"])))
        else:
            for content in body["contents"]:
                for part in content["parts"]:
                    if (blob := get(part, "inlineData")) is not None:
                        out.append((get(blob, "mimeType"), _b64(blob["data"])))
        return out

    def tool_exchange(self, body: dict[str, Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """The last assistant tool calls and the tool results that follow them: [{id, name, text}]."""
        calls: list[dict[str, Any]] = []
        results: list[dict[str, Any]] = []
        if self.name == "openai":
            for message in body["messages"]:
                if message["role"] == "assistant" and message.get("tool_calls"):
                    calls = [{"id": c["id"], "name": c["function"]["name"]} for c in message["tool_calls"]]
                    results = []
                elif message["role"] == "tool":
                    results.append({"id": message["tool_call_id"], "text": _texts(message["content"])})
        elif self.name == "anthropic":
            for turn in body["messages"]:
                blocks = turn["content"] if isinstance(turn["content"], list) else []
                if turn["role"] == "assistant" and any(b["type"] == "tool_use" for b in blocks):
                    calls = [{"id": b["id"], "name": b["name"]} for b in blocks if b["type"] == "tool_use"]
                    results = []
                for b in blocks:
                    if b["type"] == "tool_result":
                        results.append({"id": b["tool_use_id"], "text": _texts(b.get("content"))})
        else:
            for content in body["contents"]:
                for part in content["parts"]:
                    if (call := get(part, "functionCall")) is not None:
                        calls, results = [*calls, {"id": call.get("id"), "name": call["name"]}], []
                    if (resp := get(part, "functionResponse")) is not None:
                        text = json.dumps(resp["response"])
                        results.append({"id": resp.get("id"), "name": resp["name"], "text": text})
        return calls, results

    def structured_schema(self, body: dict[str, Any]) -> Any:
        if self.name == "openai":
            assert body["response_format"]["type"] == "json_schema"
            return body["response_format"]["json_schema"]["schema"]
        if self.name == "anthropic":
            assert body["output_config"]["format"]["type"] == "json_schema"
            return body["output_config"]["format"]["schema"]
        config = get(body, "generationConfig")
        assert get(config, "responseMimeType") == "application/json"
        return get(config, "responseJsonSchema")

    def check_reasoning_control(self, body: dict[str, Any]) -> None:
        """The request asked for low-effort reasoning (a 1024-token budget) in this vendor's terms."""
        if self.name == "openai":
            assert body.get("reasoning_effort") == "low", body
        elif self.name == "anthropic":
            assert body.get("thinking") == {"type": "enabled", "budget_tokens": 1024}, body
            assert body["max_tokens"] > 1024
        else:
            thinking = get(get(body, "generationConfig"), "thinkingConfig")
            assert get(thinking, "thinkingBudget") == 1024 and get(thinking, "includeThoughts") is True, body


def upstream_view(family: str, fake: FakeState, anth: FakeAnthropicState, gem: FakeGeminiState) -> Upstream:
    if family == "openai":
        return Upstream("openai", fake, "gpt-4o-mini", None, "fail-429", "cut-stream", "2", None, None)
    if family == "anthropic":
        return Upstream(
            "anthropic",
            anth,
            "claude-sonnet-4-6",
            "anth-cache-hit",
            "anth-fail-429",
            "anth-cut-stream",
            "3",
            (1050, 900, 50),
            "thinking about: ",
        )
    return Upstream(
        "gemini",
        gem,
        "gemini-2.5-flash",
        "gem-cache-hit",
        "gem-fail-429",
        "gem-cut-stream",
        "7",
        (1000, 900, 0),
        "Thinking about: ",
    )


_drivers: dict[tuple[str, str], Any] = {}


@pytest.fixture
def driver(ingress: str, gateway: Gateway) -> Any:
    key = (ingress, gateway.base_url)
    if key not in _drivers:
        _drivers[key] = DRIVERS[ingress](gateway.base_url)
    return _drivers[key]


@pytest.fixture
def upstream(
    family: str, fake: FakeState, anthropic_fake: FakeAnthropicState, gemini_fake: FakeGeminiState
) -> Upstream:
    return upstream_view(family, fake, anthropic_fake, gemini_fake)


# --- the features -------------------------------------------------------------------------------


@matrix("text")
def test_text(driver: Any, upstream: Upstream) -> None:
    mark = upstream.mark()
    assert driver.text(upstream.model, "be brief", "hello matrix") == "echo: hello matrix"
    assert upstream.system(upstream.last(mark)) == "be brief"


# --- stream grammar, per client protocol, on what the SDK parsed ---------------------------------


def _chat_chunks(events: list[Any]) -> None:
    chunks = [e.chunk for e in events if e.type == "chunk"]
    assert chunks and chunks[0].id and {c.id for c in chunks} == {chunks[0].id}
    assert {c.object for c in chunks} == {"chat.completion.chunk"}
    choices = [choice for c in chunks for choice in c.choices]
    assert choices[0].delta.role == "assistant"
    assert [bool(c.finish_reason) for c in choices] == [False] * (len(choices) - 1) + [True]


_ANTHROPIC_RAW = {"message_start", "content_block_start", "content_block_delta", "content_block_stop"}
_ANTHROPIC_RAW |= {"message_delta", "message_stop"}


def _anthropic_events(events: list[Any]) -> None:
    raw = [e for e in events if e.type in _ANTHROPIC_RAW]
    assert raw[0].type == "message_start"
    assert [e.type for e in raw[-2:]] == ["message_delta", "message_stop"]
    open_block, next_block = None, 0
    for event in raw[1:-2]:
        if event.type == "content_block_start":
            assert open_block is None and event.index == next_block, event
            open_block = event.index
            continue
        assert event.type in ("content_block_delta", "content_block_stop") and event.index == open_block
        if event.type == "content_block_stop":
            open_block, next_block = None, next_block + 1
    assert open_block is None and next_block > 0


def _gemini_chunks(chunks: list[Any]) -> None:
    assert chunks and chunks[0].response_id and {c.response_id for c in chunks} == {chunks[0].response_id}
    assert all(c.candidates and c.candidates[0].content.parts for c in chunks), "every chunk has parts"
    finishes = [c.candidates[0].finish_reason for c in chunks]
    assert finishes[-1] is not None and not any(finishes[:-1])
    assert chunks[-1].usage_metadata is not None and chunks[-1].usage_metadata.total_token_count


def _responses_events(events: list[Any]) -> None:
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert [e.type for e in events[:2]] == ["response.created", "response.in_progress"]
    assert events[-1].type == "response.completed"
    assert len({e.response.id for e in (events[0], events[1], events[-1])}) == 1
    added = [e.item.id for e in events if e.type == "response.output_item.added"]
    done = [e.item.id for e in events if e.type == "response.output_item.done"]
    assert added == done == [item.id for item in events[-1].response.output]


WELL_FORMED = {
    "openai-chat": _chat_chunks,
    "anthropic": _anthropic_events,
    "gemini": _gemini_chunks,
    "responses": _responses_events,
}


@matrix("stream")
def test_stream(driver: Any, upstream: Upstream) -> None:
    mark = upstream.mark()
    streamed = driver.stream(upstream.model, "stream me please")
    assert streamed.text == streamed.final_text == "echo: stream me please"
    assert streamed.finish == driver.stop_finish
    WELL_FORMED[driver.name](streamed.events)
    assert upstream.streamed(mark)


def _check_calls(driver: Any, upstream: Upstream, turn: Any, user: str) -> None:
    assert [(c.name, c.args) for c in turn.calls] == [(TOOL_NAME, {"query": user})]
    assert turn.finish == driver.tool_finish
    if not (driver.name == upstream.name == "gemini"):  # Gemini's own calls carry no id
        assert all(c.id for c in turn.calls)


@matrix("tools")
def test_tools(driver: Any, upstream: Upstream) -> None:
    mark = upstream.mark()
    _check_calls(driver, upstream, driver.tools_call(upstream.model, "weather in Paris"), "weather in Paris")
    assert not upstream.streamed(mark)


@matrix("stream_tools")
def test_stream_tools(driver: Any, upstream: Upstream) -> None:
    mark = upstream.mark()
    turn = driver.stream_tools(upstream.model, "weather in Oslo")
    _check_calls(driver, upstream, turn, "weather in Oslo")
    WELL_FORMED[driver.name](turn.events)
    assert upstream.streamed(mark)


@matrix("tool_result")
def test_tool_result(driver: Any, upstream: Upstream) -> None:
    user = "weather in Lima"
    turn = driver.tools_call(upstream.model, user)
    client_call = turn.calls[0]
    mark = upstream.mark()
    answer = driver.tool_result(upstream.model, user, turn, "sunny")
    assert answer.startswith("tool said:") and "sunny" in answer
    calls, results = upstream.tool_exchange(upstream.last(mark))
    assert len(calls) == len(results) == 1
    assert calls[0]["name"] == TOOL_NAME and "sunny" in results[0]["text"]
    if upstream.name == "gemini":
        assert results[0]["name"] == TOOL_NAME  # Gemini pairs results with calls by name
        assert results[0]["id"] == calls[0]["id"]
    else:
        assert calls[0]["id"] == results[0]["id"] == client_call.id


@matrix("image")
def test_image(driver: Any, upstream: Upstream) -> None:
    mark = upstream.mark()
    assert driver.image(upstream.model, "what is this") == "echo: what is this [images: 1]"
    assert upstream.images(upstream.last(mark)) == [("image/png", PNG_BYTES)]


@matrix("json_schema")
def test_json_schema(driver: Any, upstream: Upstream) -> None:
    mark = upstream.mark()
    answer = json.loads(driver.json_schema(upstream.model, "a city"))
    assert isinstance(answer, dict) and set(answer) == {"name", "population"}
    assert upstream.structured_schema(upstream.last(mark)) == SCHEMA


@matrix("thinking")
def test_thinking(driver: Any, upstream: Upstream) -> None:
    mark = upstream.mark()
    thought = driver.thinking(upstream.model, "think it over")
    upstream.check_reasoning_control(upstream.last(mark))
    assert thought.answer == "echo: think it over"
    if upstream.thought_prefix is None:  # the OpenAI fake returns no reasoning text
        assert not thought.reasoning
    else:
        assert thought.reasoning == upstream.thought_prefix + "think it over"
    if driver.name == upstream.name and upstream.name in ("anthropic", "gemini"):
        _thinking_tool_round_trip(driver, upstream, signed_replay=True)


def _thinking_tool_round_trip(driver: Any, upstream: Upstream, signed_replay: bool) -> None:
    """A tool round trip with thinking on; the fakes answer 400 to a replayed Anthropic thinking block
    or Gemini function call without the signature they issued for it."""
    user = "weather in Rome"
    mark = upstream.mark()
    first, answer = driver.thinking_tools(upstream.model, user, "windy")
    assert [(c.name, c.args) for c in first.calls] == [(TOOL_NAME, {"query": user})]
    if upstream.thought_prefix is not None:
        assert first.reasoning == upstream.thought_prefix + user
    assert answer.startswith("tool said:") and "windy" in answer
    first_body, second_body = (r["json"] for r in upstream.chat_requests(mark))
    upstream.check_reasoning_control(first_body)
    if not signed_replay:
        return
    upstream.check_reasoning_control(second_body)  # thinking stays on for the continuation
    if upstream.name == "anthropic":
        assistant = next(t for t in second_body["messages"] if t["role"] == "assistant")
        assert assistant["content"][0]["type"] == "thinking"
        assert assistant["content"][0]["signature"] in upstream.state.signatures
    else:
        model = next(c for c in second_body["contents"] if c.get("role") == "model")
        signed = [get(p, "thoughtSignature") for p in model["parts"] if get(p, "functionCall")]
        assert signed and all(s in upstream.state.issued_signatures for s in signed)


@matrix("thinking_tools")
def test_thinking_tools(driver: Any, upstream: Upstream) -> None:
    """Beyond the brief's feature list: the thinking tool round trip on every cell. The continuation
    must be accepted everywhere; where the client protocol can carry the upstream's signature back
    (the same protocol, or Responses' `encrypted_content` envelope to Anthropic), thinking stays on
    and the signed thinking is replayed. An OpenAI Chat or Gemini client of Anthropic cannot send the
    signature back: the gateway then turns thinking off for the continuation, which Anthropic accepts."""
    carries = driver.name == upstream.name or (driver.name, upstream.name) == ("responses", "anthropic")
    _thinking_tool_round_trip(driver, upstream, signed_replay=carries and upstream.name != "openai")


def _check_usage(driver: Any, upstream: Upstream, gateway: Gateway, stream: bool) -> None:
    model = upstream.cache_model or upstream.model
    view = (driver.stream_usage if stream else driver.usage)(model, "count my tokens")
    [record] = gateway.usage(view.request_id)
    assert record["status"] == 200 and record["stream"] == int(stream)
    assert (record["input_tokens"], record["cached_input_tokens"], record["output_tokens"]) == (
        view.input_total,
        view.cached,
        view.output,
    )
    assert view.output > 0
    if upstream.cache_usage is None:
        assert view.input_total > 0 and view.cached == 0 and view.native_input == view.input_total
        return
    total, cached, written = upstream.cache_usage
    assert (view.input_total, view.cached, record["cache_write_tokens"]) == (total, cached, written)
    assert view.native_input == (total - cached - written if driver.input_excludes_cache else total)


@matrix("usage")
def test_usage(driver: Any, upstream: Upstream, gateway: Gateway) -> None:
    _check_usage(driver, upstream, gateway, stream=False)


@matrix("stream_usage")
def test_stream_usage(driver: Any, upstream: Upstream, gateway: Gateway) -> None:
    _check_usage(driver, upstream, gateway, stream=True)


@matrix("error")
def test_error(driver: Any, upstream: Upstream) -> None:
    err = driver.error(upstream.fail_model)
    assert (err.status, err.kind) == (429, driver.error_kind)
    if driver.name == "gemini":  # Google errors carry the delay in a RetryInfo detail
        assert err.retry_delay == upstream.retry_after + "s"
    else:
        assert err.retry_after == upstream.retry_after


@matrix("cut_stream")
def test_cut_stream(driver: Any, upstream: Upstream, gateway: Gateway) -> None:
    mark, since = upstream.mark(), time.time()
    driver.cut_stream(upstream.cut_model)
    assert upstream.streamed(mark)
    deadline = time.monotonic() + 3
    while not (rows := [r for r in gateway.usage() if r["model"] == upstream.cut_model and r["ts"] >= since]):
        assert time.monotonic() < deadline, "no usage record for the cut stream"
        time.sleep(0.05)
    assert rows[-1]["status"] >= 500 and rows[-1]["error"], "the record must not look like a clean end"
