"""The OpenAI Chat adapter driven with canonical requests against the fake OpenAI upstream."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import pytest_asyncio

from omnirelay.canonical.assemble import assemble
from omnirelay.canonical.messages import (
    AudioPart,
    FilePart,
    ImagePart,
    Message,
    TextPart,
    ThinkingPart,
    ToolCallPart,
    ToolResultPart,
)
from omnirelay.canonical.request import ChatRequest, EmbeddingRequest, ResponseFormat, Tool, ToolChoice
from omnirelay.canonical.response import ChatResponse
from omnirelay.canonical.stream import (
    BlockDelta,
    BlockStart,
    BlockStop,
    Finish,
    StreamEvent,
    StreamStart,
    UsageEvent,
)
from omnirelay.errors import UpstreamError
from omnirelay.transport.http import AiohttpClient, Timeouts
from omnirelay.upstream.base import Target
from omnirelay.upstream.openai_chat import OpenAIChatAdapter, max_tokens_field
from tests.fakes import FakeState, ServerThread, create_app

KEY = "sk-test"
PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
WEATHER = {"type": "object", "properties": {"query": {"type": "string"}}, "required": ["query"]}
TOOLS = [Tool("get_weather", "Weather for a city", WEATHER), Tool("get_time")]
SSE = {"content-type": "text/event-stream"}

pytestmark = pytest.mark.timeout(20)


@pytest.fixture(scope="module")
def fake() -> Iterator[tuple[FakeState, str]]:
    state = FakeState()
    with ServerThread(create_app(state)) as server:
        yield state, server.base_url


@pytest.fixture
def state(fake: tuple[FakeState, str]) -> FakeState:
    fake[0].reset()
    return fake[0]


@pytest_asyncio.fixture(loop_scope="function")
async def adapter(fake: tuple[FakeState, str], state: FakeState) -> AsyncIterator[OpenAIChatAdapter]:
    client = AiohttpClient(Timeouts(connect=2, first_byte=5, idle=5))
    target = Target(name="oai", base_url=fake[1] + "/v1", client=client, secrets=(KEY,))
    try:
        yield OpenAIChatAdapter(target)
    finally:
        await client.close()


def user(*parts: Any) -> Message:
    return Message("user", [TextPart(p) if isinstance(p, str) else p for p in parts])


def request(*messages: Message, model: str = "gpt-4o-mini", **fields: Any) -> ChatRequest:
    return ChatRequest(model=model, messages=list(messages), **fields)


def sent(state: FakeState) -> dict[str, Any]:
    body: dict[str, Any] = state.last_request["json"]
    return body


async def collect(adapter: OpenAIChatAdapter, req: ChatRequest) -> list[StreamEvent]:
    return [event async for event in adapter.stream(req, KEY)]


def sse_body(*chunks: dict[str, Any] | str) -> bytes:
    return b"".join(b"data: %s\n\n" % (c if isinstance(c, str) else json.dumps(c)).encode() for c in chunks)


def chunk(delta: dict[str, Any] | None = None, finish: str | None = None, **extra: Any) -> dict[str, Any]:
    choices = [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish}]
    head = {"id": "chatcmpl-x", "object": "chat.completion.chunk", "created": 1, "model": "m"}
    return {**head, "choices": choices, **extra}


def check_blocks(events: list[StreamEvent]) -> None:
    """The canonical stream contract: contiguous indices per choice, one open block, all closed."""
    assert isinstance(events[0], StreamStart)
    next_index: dict[int, int] = {}
    open_block: dict[int, int | None] = {}
    finished: set[int] = set()
    for event in events[1:]:
        if isinstance(event, BlockStart):
            assert open_block.get(event.choice) is None and event.choice not in finished
            assert event.index == next_index.get(event.choice, 0)
            next_index[event.choice] = event.index + 1
            open_block[event.choice] = event.index
        elif isinstance(event, BlockDelta):
            assert open_block.get(event.choice) == event.index
        elif isinstance(event, BlockStop):
            assert open_block.get(event.choice) == event.index
            open_block[event.choice] = None
        elif isinstance(event, Finish):
            assert open_block.get(event.choice) is None and event.choice not in finished
            finished.add(event.choice)
    assert finished and set(next_index) <= finished


def shape(resp: ChatResponse) -> list[tuple[Any, ...]]:
    out: list[tuple[Any, ...]] = []
    for choice in resp.choices:
        for part in choice.message.parts:
            if isinstance(part, ToolCallPart):
                assert part.id.startswith("call_")
                out.append(("call", choice.index, part.name, json.loads(part.arguments)))
            else:
                out.append((type(part).__name__, choice.index, getattr(part, "text", None)))
        out.append(("finish", choice.index, choice.finish_reason))
    return out


# --- requests and answers -----------------------------------------------------------------------


async def test_text_and_system(adapter: OpenAIChatAdapter, state: FakeState) -> None:
    fields: dict[str, Any] = {"temperature": 0.2, "top_p": 0.9, "seed": 7, "user": "u-1", "max_tokens": 50}
    fields |= {"stop": ["\n\n"], "frequency_penalty": 0.5, "presence_penalty": -0.5, "top_k": 5}
    fields |= {"metadata": {"user_id": "x"}, "extra": {"thinking": {"type": "enabled"}, "system": "x"}}
    req = request(Message("system", [TextPart("be brief")]), user("hello there"), **fields)
    resp = await adapter.complete(req, KEY)
    assert resp.choices[0].message.text() == "echo: hello there"
    assert resp.choices[0].finish_reason == "stop"
    assert resp.id.startswith("chatcmpl-") and resp.model == "gpt-4o-mini" and resp.created > 0
    assert resp.usage is not None and resp.usage.input_tokens == 4 and resp.usage.output_tokens == 3
    body = sent(state)
    assert state.last_request["key"] == KEY and state.last_request["path"] == "/v1/chat/completions"
    assert body["messages"] == [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "hello there"},
    ]
    assert body["max_tokens"] == 50 and "max_completion_tokens" not in body
    assert (body["temperature"], body["top_p"], body["seed"], body["user"]) == (0.2, 0.9, 7, "u-1")
    assert (body["stop"], body["frequency_penalty"], body["presence_penalty"]) == (["\n\n"], 0.5, -0.5)
    for absent in ("stream", "stream_options", "thinking", "system", "top_k", "metadata", "n", "tools"):
        assert absent not in body


async def test_max_tokens_field(adapter: OpenAIChatAdapter, state: FakeState) -> None:
    await adapter.complete(request(user("x"), model="o4-mini", max_tokens=30), KEY)
    assert sent(state)["max_completion_tokens"] == 30 and "max_tokens" not in sent(state)
    assert max_tokens_field("gpt-4o", "https://api.openai.com/v1") == "max_completion_tokens"
    assert max_tokens_field("gpt-4o", "https://x.openai.azure.com/openai") == "max_completion_tokens"
    assert max_tokens_field("gpt-5-mini", "http://vllm:8000/v1") == "max_completion_tokens"
    assert max_tokens_field("deepseek-chat", "https://api.deepseek.com") == "max_tokens"
    assert max_tokens_field("openai/o3", "https://openrouter.ai/api/v1") == "max_tokens"


async def test_multi_turn(adapter: OpenAIChatAdapter, state: FakeState) -> None:
    req = request(user("first"), Message("assistant", [TextPart("echo: first")]), user("second", "part"), n=2)
    resp = await adapter.complete(req, KEY)
    assert [c.index for c in resp.choices] == [0, 1]
    assert all(c.message.text() == "echo: second\n\npart" for c in resp.choices)
    assert sent(state)["n"] == 2
    assert sent(state)["messages"] == [
        {"role": "user", "content": "first"},
        {"role": "assistant", "content": "echo: first"},
        {"role": "user", "content": "second\n\npart"},
    ]


async def test_multimodal_parts(adapter: OpenAIChatAdapter, state: FakeState) -> None:
    req = request(
        user(
            "look",
            ImagePart(data=PNG, media_type="image/png", detail="low"),
            ImagePart(url="https://example.com/cat.jpg"),
            ImagePart(data=PNG),  # no media type: sniffed from the bytes
            AudioPart(data="UklGRg==", format="wav"),
            FilePart(data="JVBERi0=", media_type="application/pdf", filename="a.pdf"),
            FilePart(file_id="file-123"),
        )
    )
    resp = await adapter.complete(req, KEY)
    assert resp.choices[0].message.text() == "echo: look [images: 3] [audio: 1]"
    assert sent(state)["messages"][0]["content"] == [
        {"type": "text", "text": "look"},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}", "detail": "low"}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
        {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}},
        {"type": "file", "file": {"file_data": "data:application/pdf;base64,JVBERi0=", "filename": "a.pdf"}},
        {"type": "file", "file": {"file_id": "file-123"}},
    ]


@pytest.mark.parametrize(
    ("choice", "wire", "names"),
    [
        (None, None, ["get_weather", "get_time"]),
        (ToolChoice("auto"), "auto", ["get_weather", "get_time"]),
        (ToolChoice("required"), "required", ["get_weather", "get_time"]),
        (ToolChoice("none"), "none", []),
        (
            ToolChoice("tool", "get_time"),
            {"type": "function", "function": {"name": "get_time"}},
            ["get_time"],
        ),
    ],
)
async def test_tools_and_tool_choice(
    adapter: OpenAIChatAdapter, state: FakeState, choice: ToolChoice | None, wire: Any, names: list[str]
) -> None:
    resp = await adapter.complete(request(user("Paris"), tools=TOOLS, tool_choice=choice), KEY)
    body = sent(state)
    assert body.get("tool_choice") == wire
    weather = {"name": "get_weather", "description": "Weather for a city", "parameters": WEATHER}
    no_parameters = {"name": "get_time", "parameters": {"type": "object", "properties": {}}}
    assert body["tools"] == [{"type": "function", "function": fn} for fn in (weather, no_parameters)]
    calls = [p for p in resp.choices[0].message.parts if isinstance(p, ToolCallPart)]
    assert [c.name for c in calls] == names
    assert resp.choices[0].finish_reason == ("tool_calls" if names else "stop")
    assert all(json.loads(c.arguments) == {"query": "Paris"} for c in calls)


async def test_parallel_tool_calls(adapter: OpenAIChatAdapter, state: FakeState) -> None:
    resp = await adapter.complete(request(user("Paris"), tools=TOOLS), KEY)
    calls = [p for p in resp.choices[0].message.parts if isinstance(p, ToolCallPart)]
    assert len(calls) == 2 and len({c.id for c in calls}) == 2 and "parallel_tool_calls" not in sent(state)
    resp = await adapter.complete(request(user("Paris"), tools=TOOLS, parallel_tool_calls=False), KEY)
    assert sent(state)["parallel_tool_calls"] is False
    assert [p.name for p in resp.choices[0].message.parts if isinstance(p, ToolCallPart)] == ["get_weather"]
    # Without tools, neither tool_choice nor parallel_tool_calls is sent (OpenAI rejects them).
    await adapter.complete(request(user("x"), tool_choice=ToolChoice("auto"), parallel_tool_calls=True), KEY)
    assert "tool_choice" not in sent(state) and "parallel_tool_calls" not in sent(state)


async def test_tool_result_round_trip(adapter: OpenAIChatAdapter, state: FakeState) -> None:
    first = await adapter.complete(request(user("Paris"), tools=TOOLS[:1]), KEY)
    call = first.choices[0].message.parts[0]
    assert isinstance(call, ToolCallPart)
    req = request(
        user("Paris"),
        first.choices[0].message,
        Message("tool", [ToolResultPart(call.id, [TextPart("sunny")])]),
        tools=TOOLS[:1],
    )
    resp = await adapter.complete(req, KEY)
    assert resp.choices[0].message.text() == "tool said: sunny"
    wire = {
        "id": call.id,
        "type": "function",
        "function": {"name": "get_weather", "arguments": call.arguments},
    }
    assert sent(state)["messages"][1:] == [
        {"role": "assistant", "content": None, "tool_calls": [wire]},
        {"role": "tool", "tool_call_id": call.id, "content": "sunny"},
    ]


async def test_anthropic_style_tool_results_split(adapter: OpenAIChatAdapter, state: FakeState) -> None:
    """A user turn holding tool results (with an image and an error) and text: tool messages come first."""
    calls = [ToolCallPart("toolu_1", "get_weather", '{"query":"a"}'), ToolCallPart("toolu_2", "get_time", "")]
    results = [
        ToolResultPart("toolu_1", [TextPart("sunny"), ImagePart(data=PNG, media_type="image/png")]),
        ToolResultPart("toolu_2", [TextPart("no clock")], is_error=True),
        TextPart("and now?"),
    ]
    await adapter.complete(request(user("q"), Message("assistant", calls), Message("user", results)), KEY)
    messages = sent(state)["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "tool", "tool", "user"]
    assert messages[1]["tool_calls"][1]["function"]["arguments"] == "{}"
    assert messages[2] == {"role": "tool", "tool_call_id": "toolu_1", "content": "sunny"}
    assert messages[3] == {"role": "tool", "tool_call_id": "toolu_2", "content": "Error: no clock"}
    assert messages[4]["content"] == [
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
        {"type": "text", "text": "and now?"},
    ]


async def test_json_schema_and_json_object(adapter: OpenAIChatAdapter, state: FakeState) -> None:
    properties = {"city": {"type": "string"}, "temp": {"type": "number"}}
    schema = {"type": "object", "properties": properties, "required": ["city", "temp"]}
    fmt = ResponseFormat("json_schema", schema=schema, strict=True)
    resp = await adapter.complete(request(user("weather"), response_format=fmt), KEY)
    assert json.loads(resp.choices[0].message.text()) == {"city": "x", "temp": 1.5}
    assert sent(state)["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "response", "schema": schema, "strict": True},
    }
    fmt = ResponseFormat("json_schema", name="weather", schema=schema)
    await adapter.complete(request(user("weather"), response_format=fmt), KEY)
    assert sent(state)["response_format"]["json_schema"] == {"name": "weather", "schema": schema}
    resp = await adapter.complete(request(user("hi"), response_format=ResponseFormat("json_object")), KEY)
    assert sent(state)["response_format"] == {"type": "json_object"}
    assert json.loads(resp.choices[0].message.text()) == {"echo": "hi"}
    await adapter.complete(request(user("hi"), response_format=ResponseFormat("text")), KEY)
    assert "response_format" not in sent(state)


# --- streams ------------------------------------------------------------------------------------


async def test_stream_text_matches_complete(adapter: OpenAIChatAdapter, state: FakeState) -> None:
    req = request(Message("system", [TextPart("s")]), user("one two three four"), n=2)
    whole = await adapter.complete(req, KEY)
    events = await collect(adapter, req)
    body = sent(state)
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    check_blocks(events)
    streamed = assemble(events)
    assert shape(streamed) == shape(whole)
    assert streamed.usage == whole.usage and streamed.usage is not None
    assert streamed.id.startswith("chatcmpl-") and streamed.model == "gpt-4o-mini"
    assert sum(isinstance(e, UsageEvent) for e in events) == 1 and isinstance(events[-1], UsageEvent)


async def test_stream_tool_calls_match_complete(adapter: OpenAIChatAdapter, state: FakeState) -> None:
    req = request(user("Paris"), tools=TOOLS)
    whole = await adapter.complete(req, KEY)
    events = await collect(adapter, req)
    check_blocks(events)
    starts = [e for e in events if isinstance(e, BlockStart)]
    assert [(s.index, s.kind, s.tool_name) for s in starts] == [
        (0, "tool_call", "get_weather"),
        (1, "tool_call", "get_time"),
    ]
    assert len([e for e in events if isinstance(e, BlockDelta)]) > 2  # arguments arrive in fragments
    streamed = assemble(events)
    assert shape(streamed) == shape(whole)
    ids = [p.id for p in streamed.choices[0].message.parts if isinstance(p, ToolCallPart)]
    assert len(set(ids)) == 2


USAGE = {
    "prompt_tokens": 5,
    "completion_tokens": 12,
    "total_tokens": 17,
    "completion_tokens_details": {"reasoning_tokens": 8},
}


async def test_stream_thinking_block(adapter: OpenAIChatAdapter, state: FakeState) -> None:
    body = sse_body(
        chunk({"role": "assistant", "content": None, "reasoning_content": ""}),
        chunk({"reasoning_content": "Let me"}),
        chunk({"reasoning_content": " think."}),
        chunk({"content": "Answer"}),
        chunk({"content": "."}),
        chunk({}, "stop"),
        chunk(usage=USAGE | {"prompt_tokens_details": {"cached_tokens": 2}}),
        "[DONE]",
    )
    for include in (True, False):
        state.next_responses.append((200, SSE, body))
        events = await collect(
            adapter, request(user("q"), model="deepseek-reasoner", include_reasoning=include)
        )
        check_blocks(events)
        resp = assemble(events)
        parts = resp.choices[0].message.parts
        if include:
            assert parts == [ThinkingPart("Let me think."), TextPart("Answer.")]
        else:
            assert parts == [TextPart("Answer.")]
        assert resp.choices[0].finish_reason == "stop"
        assert resp.usage is not None
        assert (resp.usage.input_tokens, resp.usage.cached_input_tokens) == (5, 2)
        assert (resp.usage.output_tokens, resp.usage.reasoning_tokens) == (12, 8)


async def test_stream_lenient_endings(adapter: OpenAIChatAdapter, state: FakeState) -> None:
    """Usage on the last content chunk, no [DONE] after finish_reason, all calls in one chunk with "stop"."""
    usage = {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}
    calls = [
        {"index": 0, "id": "call_a", "type": "function", "function": {"name": "f", "arguments": '{"x":1}'}},
        {"index": 1, "id": "call_b", "type": "function", "function": {"name": "g", "arguments": "{}"}},
    ]
    body = sse_body(
        chunk({"role": "assistant", "content": "hi "}), chunk({"tool_calls": calls}, "stop", usage=usage)
    )
    state.next_responses.append((200, SSE, body))
    events = await collect(adapter, request(user("q")))
    check_blocks(events)
    resp = assemble(events)
    expected = [("TextPart", 0, "hi "), ("call", 0, "f", {"x": 1}), ("call", 0, "g", {})]
    assert shape(resp) == [*expected, ("finish", 0, "tool_calls")]
    assert resp.usage is not None and resp.usage.total_tokens == 7


async def test_stream_reasoning_field_and_missing_tool_index(
    adapter: OpenAIChatAdapter, state: FakeState
) -> None:
    """`reasoning` (OpenRouter) instead of `reasoning_content`; tool deltas without an index."""
    body = sse_body(
        chunk({"role": "assistant", "reasoning": "hmm"}),
        chunk({"tool_calls": [{"id": "call_1", "function": {"name": "f", "arguments": '{"a"'}}]}),
        chunk({"tool_calls": [{"function": {"arguments": ":1}"}}]}),
        chunk({"tool_calls": [{"id": "call_2", "function": {"name": "f", "arguments": "{}"}}]}),
        chunk({}, "tool_calls"),
        "[DONE]",
    )
    state.next_responses.append((200, SSE, body))
    events = await collect(adapter, request(user("q")))
    check_blocks(events)
    parts = assemble(events).choices[0].message.parts
    assert parts == [
        ThinkingPart("hmm"),
        ToolCallPart("call_1", "f", '{"a":1}'),
        ToolCallPart("call_2", "f", "{}"),
    ]


async def test_stream_incomplete_raises(adapter: OpenAIChatAdapter, state: FakeState) -> None:
    state.next_responses.append((200, SSE, sse_body(chunk({"content": "partial"}))))
    seen: list[StreamEvent] = []
    with pytest.raises(UpstreamError) as info:
        async for event in adapter.stream(request(user("q")), KEY):
            seen.append(event)
    assert info.value.status == 502 and info.value.code == "upstream_stream_incomplete"
    assert not info.value.retryable and isinstance(seen[0], StreamStart)
    # Nothing at all: retryable, raised before the first event.
    state.next_responses.append((200, SSE, b": keep-alive\n\n"))
    with pytest.raises(UpstreamError) as info:
        await collect(adapter, request(user("q")))
    assert info.value.retryable


async def test_cut_stream_raises(adapter: OpenAIChatAdapter) -> None:
    seen: list[StreamEvent] = []
    with pytest.raises(UpstreamError):
        async for event in adapter.stream(request(user("a b c d e f"), model="cut-stream"), KEY):
            seen.append(event)
    assert isinstance(seen[0], StreamStart) and any(isinstance(e, BlockDelta) for e in seen)


async def test_stream_error_event_and_bad_json(adapter: OpenAIChatAdapter, state: FakeState) -> None:
    error = {"error": {"message": "overloaded, key sk-test", "type": "server_error", "code": None}}
    state.next_responses.append((200, SSE, sse_body(chunk({"content": "a"}), error)))
    with pytest.raises(UpstreamError) as info:
        await collect(adapter, request(user("q")))
    assert info.value.status == 502 and "overloaded" in info.value.message and KEY not in info.value.message
    with pytest.raises(UpstreamError) as info:
        await collect(adapter, request(user("q"), model="bad-stream-json"))
    assert info.value.status == 502 and info.value.code == "bad_upstream_response"


async def test_stream_answered_with_json(adapter: OpenAIChatAdapter, state: FakeState) -> None:
    """A vendor that ignores `stream: true` and answers with one JSON body still yields a stream."""
    choice = {"index": 0, "message": {"role": "assistant", "content": "whole"}, "finish_reason": "stop"}
    answer = {"id": "chatcmpl-j", "created": 5, "model": "m", "choices": [choice], "usage": USAGE}
    state.next_responses.append((200, {"content-type": "application/json"}, json.dumps(answer).encode()))
    events = await collect(adapter, request(user("q")))
    check_blocks(events)
    assert shape(assemble(events)) == [("TextPart", 0, "whole"), ("finish", 0, "stop")]


# --- reasoning ----------------------------------------------------------------------------------


EFFORTS: list[tuple[str | None, int | None, str | None]] = [("low", None, "low"), ("high", 500, "high")]
EFFORTS += [(None, 500, "low"), (None, 1024, "low"), (None, 4000, "medium"), (None, 20000, "high")]
EFFORTS += [(None, 0, None), (None, None, None)]


@pytest.mark.parametrize(("effort", "budget", "wire"), EFFORTS)
async def test_reasoning_effort_and_usage(
    adapter: OpenAIChatAdapter, state: FakeState, effort: str | None, budget: int | None, wire: str | None
) -> None:
    resp = await adapter.complete(request(user("a b"), reasoning_effort=effort, reasoning_budget=budget), KEY)
    assert sent(state).get("reasoning_effort") == wire
    assert resp.usage is not None
    assert resp.usage.reasoning_tokens == (7 if wire else 0)
    assert resp.usage.output_tokens == 3 + resp.usage.reasoning_tokens  # "echo: a b" + reasoning


async def test_thinking_replayed_on_tool_call_turns(adapter: OpenAIChatAdapter, state: FakeState) -> None:
    call = ToolCallPart("call_1", "get_weather", '{"query":"Paris"}')
    req = request(
        user("Paris"),
        Message("assistant", [ThinkingPart("I need the weather.", signature="sig"), call]),
        Message("tool", [ToolResultPart("call_1", [TextPart("sunny")])]),
        Message("assistant", [ThinkingPart("Done."), TextPart("It is sunny.")]),
        Message("assistant", [ThinkingPart("", redacted=True, provider_details={"data": "x"}), call]),
        user("thanks"),
        tools=TOOLS[:1],
    )
    await adapter.complete(req, KEY)
    messages = sent(state)["messages"]
    assert messages[1]["reasoning_content"] == "I need the weather."
    assert messages[1]["tool_calls"][0]["id"] == "call_1"
    assert messages[3] == {"role": "assistant", "content": "It is sunny."}  # not a tool-call turn
    assert "reasoning_content" not in messages[4]  # redacted thinking has no text


async def test_reasoning_in_complete_answer(adapter: OpenAIChatAdapter, state: FakeState) -> None:
    message = {"role": "assistant", "content": "42", "reasoning_content": "think", "reasoning": "think"}
    # xAI counts reasoning apart from completion_tokens; DeepSeek names cached tokens its own way.
    usage = USAGE | {
        "prompt_tokens": 10,
        "completion_tokens": 2,
        "total_tokens": 20,
        "prompt_cache_hit_tokens": 6,
    }
    choices = [{"index": 0, "message": message, "finish_reason": "stop"}]
    answer = {
        "id": "x",
        "object": "chat.completion",
        "created": 1,
        "model": "r1",
        "choices": choices,
        "usage": usage,
    }
    state.next_responses.append((200, {}, json.dumps(answer).encode()))
    resp = await adapter.complete(request(user("q")), KEY)
    assert resp.choices[0].message.parts == [ThinkingPart("think"), TextPart("42")]
    assert resp.usage is not None
    assert (resp.usage.input_tokens, resp.usage.cached_input_tokens) == (10, 6)
    assert (resp.usage.output_tokens, resp.usage.reasoning_tokens, resp.usage.total_tokens) == (10, 8, 20)


# --- errors -------------------------------------------------------------------------------------


ERRORS = [
    ("fail-429", 429, True, "rate_limit_exceeded", None),
    ("fail-500", 502, True, None, None),
    ("fail-503", 503, True, None, None),
    ("fail-400", 400, False, "invalid_value", "messages"),
    ("fail-401", 401, False, "invalid_api_key", None),
]


@pytest.mark.parametrize(
    ("stream", "model", "status", "retryable", "code", "param"),
    [(s, *case) for s in (False, True) for case in ERRORS]
    + [(False, "bad-json", 502, True, "bad_upstream_response", None)],
)
async def test_error_mapping(
    adapter: OpenAIChatAdapter, stream: bool, model: str, status: int, retryable: bool, code: Any, param: Any
) -> None:
    """Errors before the first stream event are raised by the first `anext`, so failover still works."""
    with pytest.raises(UpstreamError) as info:
        if stream:
            await anext(adapter.stream(request(user("q"), model=model), KEY))
        else:
            await adapter.complete(request(user("q"), model=model), KEY)
    err = info.value
    assert (err.status, err.retryable, err.code, err.param) == (status, retryable, code, param)
    assert err.provider == "oai"
    if model == "fail-429":
        assert err.headers["retry-after"] == "2" and err.upstream_status == 429
    if model == "fail-500":
        assert err.upstream_status == 500
    if model == "fail-401":
        assert "refused the gateway's credentials" in err.message


async def test_error_messages_are_scrubbed(adapter: OpenAIChatAdapter, state: FakeState) -> None:
    body = {"error": {"message": f"bad key {KEY}", "type": "invalid_request_error", "code": "x"}}
    state.next_responses.append((400, {}, json.dumps(body).encode()))
    with pytest.raises(UpstreamError) as info:
        await adapter.complete(request(user("q")), KEY)
    assert KEY not in info.value.message and "***" in info.value.message
    # An error envelope inside a 200 answer (some vendors) is an error too.
    state.next_responses.append((200, {}, json.dumps({"error": {"message": "no", "code": 429}}).encode()))
    with pytest.raises(UpstreamError) as info:
        await adapter.complete(request(user("q")), KEY)
    assert info.value.status == 429 and info.value.retryable


async def test_connection_refused(state: FakeState) -> None:
    client = AiohttpClient(Timeouts(connect=2, first_byte=5, idle=5))
    target = Target(name="down", base_url="http://127.0.0.1:9/v1", client=client)
    try:
        with pytest.raises(UpstreamError) as info:
            await OpenAIChatAdapter(target).complete(request(user("q")), KEY)
    finally:
        await client.close()
    assert info.value.status == 502 and info.value.retryable and info.value.code == "upstream_unavailable"


# --- embeddings ---------------------------------------------------------------------------------


async def test_embeddings(adapter: OpenAIChatAdapter, state: FakeState) -> None:
    resp = await adapter.embed(EmbeddingRequest("text-embedding-3-small", ["a b", "c"], dimensions=4), KEY)
    body = sent(state)
    assert state.last_request["path"] == "/v1/embeddings"
    assert body == {"model": "text-embedding-3-small", "input": ["a b", "c"], "encoding_format": "float"} | {
        "dimensions": 4
    }
    assert resp.model == "text-embedding-3-small" and resp.usage.input_tokens == 3
    assert len(resp.vectors) == 2 and all(len(v) == 4 for v in resp.vectors)
    again = await adapter.embed(EmbeddingRequest("text-embedding-3-small", ["a b"], dimensions=4), KEY)
    assert again.vectors[0] == resp.vectors[0]
    with pytest.raises(UpstreamError) as info:
        await adapter.embed(EmbeddingRequest("fail-429", ["x"]), KEY)
    assert info.value.status == 429
