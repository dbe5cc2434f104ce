"""The Anthropic Messages upstream: (a) the fake is faithful to the official ``anthropic`` SDK,
(b) `AnthropicAdapter` driven with canonical requests against that fake."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import anthropic
import httpx
import pytest
import pytest_asyncio
from anthropic.types import MessageParam, ToolParam

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
from omnirelay.canonical.stream import BlockDelta, BlockStart, BlockStop, Finish, StreamEvent, StreamStart
from omnirelay.errors import BadRequest, UpstreamError
from omnirelay.transport.http import AiohttpClient, Timeouts
from omnirelay.upstream.anthropic import AnthropicAdapter
from omnirelay.upstream.anthropic.request import tool_id
from omnirelay.upstream.base import Target
from tests.fakes.anthropic_upstream import FakeAnthropicState, create_app
from tests.fakes.server import ServerThread

KEY = "sk-ant-test"
MODEL = "claude-sonnet-4-6"
PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
PDF = base64.b64encode(b"%PDF-1.4\n%fake\n").decode()
SCHEMA = {"type": "object", "properties": {"query": {"type": "string"}}, "required": ["query"]}
TOOLS = [Tool("get_weather", "Weather for a city", SCHEMA), Tool("get_time")]
SDK_TOOLS: list[ToolParam] = [
    {"name": "get_weather", "description": "Weather", "input_schema": SCHEMA},
    {"name": "get_time", "input_schema": {"type": "object", "properties": {}}},
]
HELLO: list[MessageParam] = [{"role": "user", "content": "hello brave new world"}]
BAD_TOOL_ID = [
    *HELLO,
    {"role": "assistant", "content": [{"type": "tool_use", "id": "a:1", "name": "t", "input": {}}]},
    {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "a:1"}]},
]

pytestmark = pytest.mark.timeout(20)


@dataclass
class Fake:
    state: FakeAnthropicState
    base_url: str


@pytest.fixture(scope="module")
def running() -> Iterator[Fake]:
    state = FakeAnthropicState()
    with ServerThread(create_app(state)) as server:
        yield Fake(state, server.base_url)


@pytest.fixture
def fake(running: Fake) -> Fake:
    running.state.reset()
    running.state.valid_keys.clear()
    return running


@pytest_asyncio.fixture(loop_scope="function")
async def adapter(fake: Fake) -> AsyncIterator[AnthropicAdapter]:
    client = AiohttpClient(Timeouts(connect=2, first_byte=5, idle=5))
    target = Target(name="anth", base_url=fake.base_url, client=client, secrets=(KEY,))
    try:
        yield AnthropicAdapter(target)
    finally:
        await client.close()


def sdk(fake: Fake) -> anthropic.Anthropic:
    return anthropic.Anthropic(
        api_key=KEY, base_url=fake.base_url, max_retries=0, timeout=5.0, _strict_response_validation=True
    )


def user(*parts: Any) -> Message:
    return Message("user", [TextPart(p) if isinstance(p, str) else p for p in parts])


def chat(*messages: Message, **kwargs: Any) -> ChatRequest:
    return ChatRequest(model=kwargs.pop("model", MODEL), messages=list(messages), **kwargs)


def sent(fake: Fake) -> dict[str, Any]:
    body = fake.state.requests_to("/v1/messages")[-1]["json"]
    assert isinstance(body, dict)
    return body


async def collect(adapter: AnthropicAdapter, req: ChatRequest) -> list[StreamEvent]:
    return [event async for event in adapter.stream(req, KEY)]


def text_of(resp: ChatResponse) -> str:
    return resp.choices[0].message.text()


def calls(resp: ChatResponse) -> list[ToolCallPart]:
    return [p for p in resp.choices[0].message.parts if isinstance(p, ToolCallPart)]


# --- (a) the fake, driven by the official SDK --------------------------------------------------


def test_sdk_message(fake: Fake) -> None:
    message = sdk(fake).messages.create(model=MODEL, max_tokens=64, messages=HELLO, system="be brief")
    assert message.content[0].type == "text" and message.content[0].text == "echo: hello brave new world"
    assert message.stop_reason == "end_turn" and message.id.startswith("msg_")
    assert (message.usage.input_tokens, message.usage.output_tokens) == (6, 5)
    assert fake.state.last_request["auth"] == "bearer"  # SDK 2.x sends the key as a bearer token


def test_sdk_stream_final_message(fake: Fake) -> None:
    with sdk(fake).messages.stream(model=MODEL, max_tokens=64, messages=HELLO) as stream:
        pieces = list(stream.text_stream)
        final = stream.get_final_message()
    assert "".join(pieces) == "echo: hello brave new world" and len(pieces) > 1
    assert final.content[0].type == "text" and final.content[0].text == "echo: hello brave new world"
    assert final.stop_reason == "end_turn" and final.usage.output_tokens == 5


def test_sdk_tools_and_results(fake: Fake) -> None:
    client = sdk(fake)
    with client.messages.stream(model=MODEL, max_tokens=64, messages=HELLO, tools=SDK_TOOLS) as stream:
        final = stream.get_final_message()
    uses = [b for b in final.content if b.type == "tool_use"]
    assert [u.name for u in uses] == ["get_weather", "get_time"] and final.stop_reason == "tool_use"
    assert all(u.id.startswith("toolu_") and u.input == {"query": "hello brave new world"} for u in uses)
    single = client.messages.create(
        model=MODEL,
        max_tokens=64,
        messages=HELLO,
        tools=SDK_TOOLS,
        tool_choice={"type": "auto", "disable_parallel_tool_use": True},
    )
    assert [b.type for b in single.content] == ["tool_use"]
    history: list[MessageParam] = [
        *HELLO,
        {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in uses]},
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": u.id, "content": "42"} for u in uses],
        },
    ]
    answer = client.messages.create(model=MODEL, max_tokens=64, messages=history, tools=SDK_TOOLS)
    assert answer.content[0].type == "text" and answer.content[0].text == "tool said: 42; 42"
    with pytest.raises(anthropic.BadRequestError, match="without `tool_result`"):
        client.messages.create(model=MODEL, max_tokens=64, messages=[*history[:2], HELLO[0]], tools=SDK_TOOLS)


def test_sdk_thinking_round_trip(fake: Fake) -> None:
    client = sdk(fake)
    thinking: Any = {"type": "enabled", "budget_tokens": 1024}
    with client.messages.stream(
        model=MODEL, max_tokens=2048, messages=HELLO, tools=SDK_TOOLS[:1], thinking=thinking
    ) as stream:
        final = stream.get_final_message()
    assert [b.type for b in final.content] == ["thinking", "tool_use"]
    block = final.content[0]
    assert block.type == "thinking" and block.signature.startswith("sig_")
    assert block.thinking == "thinking about: hello brave new world"
    use = final.content[1]
    assert use.type == "tool_use"
    result: MessageParam = {
        "role": "user",
        "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "ok"}],
    }
    replay: list[Any] = [b.model_dump(exclude_none=True) for b in final.content]
    again: Any = {"model": MODEL, "max_tokens": 2048, "thinking": thinking, "tools": SDK_TOOLS[:1]}
    ok = client.messages.create(**again, messages=[*HELLO, {"role": "assistant", "content": replay}, result])
    assert [b.type for b in ok.content] == ["thinking", "text"]
    with pytest.raises(anthropic.BadRequestError, match="Expected `thinking` or `redacted_thinking`"):
        client.messages.create(
            **again, messages=[*HELLO, {"role": "assistant", "content": replay[1:]}, result]
        )
    forged = [{**replay[0], "signature": "sig_forged"}, replay[1]]
    with pytest.raises(anthropic.BadRequestError, match="Invalid `signature`"):
        client.messages.create(
            model=MODEL, max_tokens=2048, messages=[*HELLO, {"role": "assistant", "content": forged}, result]
        )


@pytest.mark.parametrize(
    ("model", "error", "status"),
    [
        ("fail-429", anthropic.RateLimitError, 429),
        ("fail-529", anthropic.OverloadedError, 529),
        ("fail-500", anthropic.InternalServerError, 500),
        ("fail-400", anthropic.BadRequestError, 400),
        ("fail-403", anthropic.PermissionDeniedError, 403),
        ("fail-404", anthropic.NotFoundError, 404),
    ],
)
def test_sdk_errors(fake: Fake, model: str, error: type[anthropic.APIStatusError], status: int) -> None:
    with pytest.raises(error) as info:
        sdk(fake).messages.create(model=model, max_tokens=64, messages=HELLO)
    assert info.value.status_code == status
    assert isinstance(info.value.body, dict) and info.value.body["type"] == "error"
    if status == 429:
        assert info.value.response.headers["retry-after"] == "3"


def test_sdk_auth_and_mid_stream_failures(fake: Fake) -> None:
    fake.state.valid_keys.add("sk-ant-other")
    with pytest.raises(anthropic.AuthenticationError):
        sdk(fake).messages.create(model=MODEL, max_tokens=64, messages=HELLO)
    fake.state.valid_keys.clear()
    client = sdk(fake)
    with (
        pytest.raises(anthropic.APIStatusError, match="overloaded_error"),
        client.messages.stream(model="stream-error", max_tokens=64, messages=HELLO) as stream,
    ):
        stream.get_final_message()
    with (
        pytest.raises(Exception),  # noqa: B017 - the SDK surfaces the dropped connection as it comes
        client.messages.stream(model="cut-stream", max_tokens=64, messages=HELLO) as stream,
    ):
        stream.get_final_message()


def test_sdk_count_tokens_and_models(fake: Fake) -> None:
    client = sdk(fake)
    assert client.messages.count_tokens(model=MODEL, messages=HELLO).input_tokens == 4
    models = client.models.list()
    assert MODEL in [m.id for m in models.data]
    assert client.models.retrieve(MODEL).id == MODEL


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"model": MODEL, "messages": HELLO}, "max_tokens: Field required"),
        ({"model": MODEL, "max_tokens": 9, "messages": [{"role": "user", "content": ""}]}, "non-empty"),
        ({"model": MODEL, "max_tokens": 9, "messages": HELLO, "n": 2}, "Extra inputs"),
        ({"model": MODEL, "max_tokens": 9, "messages": BAD_TOOL_ID}, "should match pattern"),
    ],
)
def test_fake_validates_like_the_api(fake: Fake, body: dict[str, Any], message: str) -> None:
    headers = {"x-api-key": KEY, "anthropic-version": "2023-06-01"}
    resp = httpx.post(fake.base_url + "/v1/messages", json=body, headers=headers, timeout=5)
    assert resp.status_code == 400 and message in resp.json()["error"]["message"]
    no_version = httpx.post(fake.base_url + "/v1/messages", json=body, headers={"x-api-key": KEY}, timeout=5)
    assert no_version.status_code == 400 and "anthropic-version" in no_version.json()["error"]["message"]


# --- (b) the adapter ----------------------------------------------------------------------------


async def test_text_headers_and_defaults(fake: Fake, adapter: AnthropicAdapter) -> None:
    resp = await adapter.complete(chat(user("hello brave new world")), KEY)
    assert text_of(resp) == "echo: hello brave new world"
    assert resp.choices[0].finish_reason == "stop" and resp.model == MODEL and resp.id.startswith("msg_")
    assert resp.usage is not None and (resp.usage.input_tokens, resp.usage.output_tokens) == (4, 5)
    record = fake.state.last_request
    assert record["auth"] == "x-api-key" and record["key"] == KEY
    assert record["headers"]["anthropic-version"] == "2023-06-01"
    assert record["json"] == {
        "model": MODEL,
        "max_tokens": 4096,
        "messages": [{"role": "user", "content": [{"type": "text", "text": "hello brave new world"}]}],
    }


async def test_system_prompts_and_json_mode(fake: Fake, adapter: AnthropicAdapter) -> None:
    one = chat(Message("system", [TextPart("be brief")]), user("hi"))
    await adapter.complete(one, KEY)
    assert sent(fake)["system"] == "be brief"
    two = chat(
        Message("system", [TextPart("be brief")]),
        user("hi"),
        Message("system", [TextPart("be kind")]),
        response_format=ResponseFormat("json_object"),
    )
    await adapter.complete(two, KEY)
    system = sent(fake)["system"]
    assert [b["text"] for b in system][:2] == ["be brief", "be kind"] and "JSON object" in system[2]["text"]
    schema = {"type": "object", "properties": {"city": {"type": "string"}, "n": {"type": "integer"}}}
    resp = await adapter.complete(
        chat(user("hi"), response_format=ResponseFormat("json_schema", "x", schema)), KEY
    )
    assert sent(fake)["output_config"] == {"format": {"type": "json_schema", "schema": schema}}
    assert json.loads(text_of(resp)) == {"city": "x", "n": 1}
    assert "tools" not in sent(fake)  # structured output is native, never a hidden tool


async def test_multi_turn_merges_and_skips_empty_text(fake: Fake, adapter: AnthropicAdapter) -> None:
    req = chat(
        user("first"),
        Message("assistant", [TextPart(""), TextPart("answer")]),
        user("second"),
        user("third", TextPart("  ")),
        Message("assistant", [TextPart("prefill  ")]),
    )
    await adapter.complete(req, KEY)
    messages = sent(fake)["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "user", "assistant"]
    assert messages[1]["content"] == [{"type": "text", "text": "answer"}]
    assert [b["text"] for b in messages[2]["content"]] == ["second", "third"]
    assert messages[3]["content"] == [{"type": "text", "text": "prefill"}]


async def test_images_and_documents(fake: Fake, adapter: AnthropicAdapter) -> None:
    req = chat(
        user(
            "look",
            ImagePart(data=PNG),
            ImagePart(url="https://example.com/cat.jpg"),
            FilePart(data=PDF, media_type="application/pdf", filename="a.pdf"),
        )
    )
    resp = await adapter.complete(req, KEY)
    assert text_of(resp) == "echo: look [images: 2] [documents: 1]"
    blocks = sent(fake)["messages"][0]["content"]
    assert blocks[1]["source"] == {"type": "base64", "media_type": "image/png", "data": PNG}
    assert blocks[2]["source"] == {"type": "url", "url": "https://example.com/cat.jpg"}
    assert blocks[3]["source"]["media_type"] == "application/pdf" and blocks[3]["title"] == "a.pdf"


@pytest.mark.parametrize(
    ("choice", "parallel", "expected", "wire"),
    [
        (None, None, ["get_weather", "get_time"], None),
        (ToolChoice("auto"), None, ["get_weather", "get_time"], {"type": "auto"}),
        (ToolChoice("required"), None, ["get_weather", "get_time"], {"type": "any"}),
        (ToolChoice("tool", "get_time"), None, ["get_time"], {"type": "tool", "name": "get_time"}),
        (ToolChoice("none"), None, [], {"type": "none"}),
        (None, False, ["get_weather"], {"type": "auto", "disable_parallel_tool_use": True}),
    ],
)
async def test_tools_and_tool_choice(
    fake: Fake,
    adapter: AnthropicAdapter,
    choice: ToolChoice | None,
    parallel: bool | None,
    expected: list[str],
    wire: dict[str, Any] | None,
) -> None:
    req = chat(user("weather in Paris"), tools=TOOLS, tool_choice=choice, parallel_tool_calls=parallel)
    resp = await adapter.complete(req, KEY)
    assert [c.name for c in calls(resp)] == expected
    assert resp.choices[0].finish_reason == ("tool_calls" if expected else "stop")
    assert all(json.loads(c.arguments) == {"query": "weather in Paris"} for c in calls(resp))
    body = sent(fake)
    assert body.get("tool_choice") == wire
    assert body["tools"][0] == {
        "name": "get_weather",
        "description": "Weather for a city",
        "input_schema": SCHEMA,
    }
    assert body["tools"][1] == {"name": "get_time", "input_schema": {"type": "object", "properties": {}}}


async def test_tool_results_with_foreign_ids(fake: Fake, adapter: AnthropicAdapter) -> None:
    history = [
        user("run it"),
        Message(
            "assistant",
            [
                TextPart(""),
                ToolCallPart("call_abc|fc_1", "get_weather", '{"query": "x"}'),
                ToolCallPart("Bash:12", "get_time", ""),
                ToolCallPart("call_ok-1", "get_time", "not json"),
            ],
        ),
        Message("tool", [ToolResultPart("call_abc|fc_1", [TextPart("sunny")])]),
        Message("tool", [ToolResultPart("Bash:12", [TextPart("noon")], is_error=True)]),
        Message("tool", [ToolResultPart("call_ok-1", [])]),
        user("thanks"),
    ]
    resp = await adapter.complete(chat(*history, tools=TOOLS), KEY)
    assert text_of(resp) == "tool said: sunny; noon; "
    messages = sent(fake)["messages"]
    uses = messages[1]["content"]
    assert [u["id"] for u in uses] == [tool_id("call_abc|fc_1"), tool_id("Bash:12"), "call_ok-1"]
    assert tool_id("call_abc|fc_1") != tool_id("call_abc.fc_1") and tool_id("Bash:12").startswith("Bash_12_")
    assert [u["input"] for u in uses] == [{"query": "x"}, {}, {"_raw": "not json"}]
    results = messages[2]["content"]
    assert [r.get("tool_use_id") for r in results[:3]] == [u["id"] for u in uses]
    assert results[1]["is_error"] is True and "content" not in results[2] and results[3]["text"] == "thanks"


async def test_stream_text_matches_complete(fake: Fake, adapter: AnthropicAdapter) -> None:
    req = chat(user("hello brave new world"))
    whole = await adapter.complete(req, KEY)
    events = await collect(adapter, chat(user("hello brave new world"), stream=True))
    assert isinstance(events[0], StreamStart)
    assert sum(isinstance(e, BlockDelta) for e in events) > 1
    assert [type(e) for e in events if isinstance(e, (BlockStart, BlockStop, Finish))] == [
        BlockStart,
        BlockStop,
        Finish,
    ]
    streamed = assemble(events)
    assert streamed.choices[0].message.parts == whole.choices[0].message.parts
    assert streamed.choices[0].finish_reason == "stop" and streamed.usage == whole.usage
    assert sent(fake)["stream"] is True


async def test_stream_tool_arguments(fake: Fake, adapter: AnthropicAdapter) -> None:
    whole = await adapter.complete(chat(user("weather in Paris"), tools=TOOLS), KEY)
    streamed = assemble(await collect(adapter, chat(user("weather in Paris"), tools=TOOLS, stream=True)))
    assert streamed.choices[0].finish_reason == "tool_calls"
    got, want = calls(streamed), calls(whole)
    assert [(c.name, json.loads(c.arguments)) for c in got] == [
        (c.name, json.loads(c.arguments)) for c in want
    ]
    assert all(c.id.startswith("toolu_") for c in got)


async def test_thinking_round_trip(fake: Fake, adapter: AnthropicAdapter) -> None:
    req = chat(
        user("plan a trip"), tools=TOOLS[:1], reasoning_effort="low", temperature=0.3, top_k=5, stream=True
    )
    streamed = assemble(await collect(adapter, req))
    body = sent(fake)
    assert body["thinking"] == {"type": "enabled", "budget_tokens": 1024} and body["max_tokens"] == 4096
    assert "temperature" not in body and "top_k" not in body
    parts = streamed.choices[0].message.parts
    assert isinstance(parts[0], ThinkingPart) and parts[0].signature and parts[0].signature.startswith("sig_")
    assert parts[0].text == "thinking about: plan a trip" and isinstance(parts[1], ToolCallPart)
    assert streamed.usage is not None and streamed.usage.reasoning_tokens == 5
    result = Message("tool", [ToolResultPart(parts[1].id, [TextPart("booked")])])
    follow = chat(
        user("plan a trip"), streamed.choices[0].message, result, tools=TOOLS[:1], reasoning_effort="low"
    )
    resp = await adapter.complete(follow, KEY)
    assert text_of(resp) == "tool said: booked"
    assert sent(fake)["messages"][1]["content"][0]["type"] == "thinking"
    # Reasoning from another vendor has no signature: it is dropped and thinking is switched off.
    foreign = Message("assistant", [ThinkingPart("hmm"), parts[1]])
    resp = await adapter.complete(
        chat(user("plan a trip"), foreign, result, tools=TOOLS[:1], reasoning_effort="high"), KEY
    )
    assert text_of(resp) == "tool said: booked" and "thinking" not in sent(fake)
    assert [b["type"] for b in sent(fake)["messages"][1]["content"]] == ["tool_use"]


async def test_redacted_thinking_and_budgets(fake: Fake, adapter: AnthropicAdapter) -> None:
    redacted = ThinkingPart("", redacted=True, provider_details={"anthropic": {"data": "opaque"}})
    req = chat(user("a"), Message("assistant", [TextPart("b"), redacted]), user("c"), reasoning_effort="high")
    await adapter.complete(req, KEY)
    body = sent(fake)
    assert body["messages"][1]["content"] == [
        {"type": "redacted_thinking", "data": "opaque"},
        {"type": "text", "text": "b"},
    ]
    assert body["thinking"]["budget_tokens"] == 16384 and body["max_tokens"] == 4096 + 16384
    await adapter.complete(chat(user("a"), reasoning_budget=500, max_tokens=8000), KEY)
    assert sent(fake)["thinking"]["budget_tokens"] == 1024 and sent(fake)["max_tokens"] == 8000
    await adapter.complete(
        chat(user("a"), reasoning_effort="medium", tools=TOOLS, tool_choice=ToolChoice("required")), KEY
    )
    assert "thinking" not in sent(fake) and sent(fake)["tool_choice"] == {"type": "any"}
    with pytest.raises(BadRequest, match="reasoning_effort"):
        await adapter.complete(chat(user("a"), reasoning_effort="extreme"), KEY)


async def test_cache_usage(fake: Fake, adapter: AnthropicAdapter) -> None:
    resp = await adapter.complete(chat(user("hello"), model="cache-hit"), KEY)
    streamed = assemble(await collect(adapter, chat(user("hello"), model="cache-hit", stream=True)))
    for usage in (resp.usage, streamed.usage):
        assert usage is not None
        assert (usage.input_tokens, usage.cached_input_tokens, usage.cache_write_tokens) == (1050, 900, 50)
        assert usage.output_tokens == 2


async def test_stop_sequences_limits_and_sampling(fake: Fake, adapter: AnthropicAdapter) -> None:
    resp = await adapter.complete(chat(user("hello brave new world"), stop=["new", " "]), KEY)
    assert text_of(resp) == "echo: hello brave " and resp.stop_sequence == "new"
    assert resp.choices[0].finish_reason == "stop" and sent(fake)["stop_sequences"] == ["new"]
    resp = await adapter.complete(chat(user("hello brave new world"), max_tokens=2, user="u-1"), KEY)
    assert resp.choices[0].finish_reason == "length" and text_of(resp) == "echo: hello"
    assert sent(fake)["max_tokens"] == 2 and sent(fake)["metadata"] == {"user_id": "u-1"}
    await adapter.complete(chat(user("hi"), temperature=1.7, top_p=0.5, seed=3, presence_penalty=1.0), KEY)
    body = sent(fake)
    assert body["temperature"] == 1.0 and "top_p" not in body and "seed" not in body
    resp = await adapter.complete(chat(user("hi"), model="refuse"), KEY)
    assert resp.choices[0].finish_reason == "content_filter"


@pytest.mark.parametrize(
    ("model", "status", "upstream", "retryable", "etype"),
    [
        ("fail-429", 429, 429, True, "rate_limit_error"),
        ("fail-529", 503, 529, True, "overloaded_error"),
        ("fail-500", 502, 500, True, "api_error"),
        ("fail-400", 400, 400, False, "invalid_request_error"),
        ("fail-403", 403, 403, False, "permission_error"),
        ("fail-404", 404, 404, False, "not_found_error"),
        ("fail-413", 413, 413, False, "request_too_large"),
    ],
)
async def test_error_mapping(
    adapter: AnthropicAdapter, model: str, status: int, upstream: int, retryable: bool, etype: str
) -> None:
    for stream in (False, True):
        with pytest.raises(UpstreamError) as info:
            if stream:
                await collect(adapter, chat(user("x"), model=model, stream=True))
            else:
                await adapter.complete(chat(user("x"), model=model), KEY)
        err = info.value
        assert (err.status, err.upstream_status, err.retryable, err.type) == (
            status,
            upstream,
            retryable,
            etype,
        )
        assert err.headers.get("retry-after") == ("3" if status == 429 else None) and err.provider == "anth"


async def test_credentials_refused_and_secrets_scrubbed(fake: Fake, adapter: AnthropicAdapter) -> None:
    fake.state.valid_keys.add("sk-ant-other")
    with pytest.raises(UpstreamError, match="refused the gateway's credentials") as info:
        await adapter.complete(chat(user("x")), KEY)
    assert info.value.status == 401 and not info.value.retryable
    fake.state.valid_keys.clear()
    leak = {"type": "error", "error": {"type": "invalid_request_error", "message": f"bad key {KEY}"}}
    fake.state.next_responses.append((400, {}, json.dumps(leak).encode()))
    with pytest.raises(UpstreamError) as info:
        await adapter.complete(chat(user("x")), KEY)
    assert KEY not in info.value.message and "***" in info.value.message


async def test_connection_refused() -> None:
    client = AiohttpClient(Timeouts(connect=2, first_byte=2, idle=2))
    try:
        target = Target(name="down", base_url="http://127.0.0.1:9", client=client, secrets=(KEY,))
        with pytest.raises(UpstreamError) as info:
            await AnthropicAdapter(target).complete(chat(user("x")), KEY)
        assert info.value.retryable and info.value.status == 502
    finally:
        await client.close()


async def test_broken_streams(fake: Fake, adapter: AnthropicAdapter) -> None:
    seen: list[StreamEvent] = []
    with pytest.raises(UpstreamError):
        async for event in adapter.stream(
            chat(user("hello brave new world"), model="cut-stream", stream=True), KEY
        ):
            seen.append(event)
    assert isinstance(seen[0], StreamStart) and not any(isinstance(e, Finish) for e in seen)
    with pytest.raises(UpstreamError) as info:
        await collect(adapter, chat(user("hello brave new world"), model="stream-error", stream=True))
    assert info.value.status == 503 and info.value.type == "overloaded_error"
    # A stream that ends cleanly but without message_stop.
    head = {"id": "msg_1", "model": MODEL, "usage": {"input_tokens": 3}}
    start = {"type": "message_start", "message": head}
    truncated = f"event: message_start\ndata: {json.dumps(start)}\n\n".encode()
    fake.state.next_responses.append((200, {"content-type": "text/event-stream"}, truncated))
    with pytest.raises(UpstreamError, match="ended the stream before it was complete"):
        await collect(adapter, chat(user("x"), stream=True))


async def test_json_answer_to_a_stream_request(fake: Fake, adapter: AnthropicAdapter) -> None:
    content = [{"type": "text", "text": "plain"}]
    message = {"id": "msg_2", "type": "message", "role": "assistant", "model": MODEL, "content": content}
    message |= {"stop_reason": "max_tokens", "usage": {"input_tokens": 1, "output_tokens": 1}}
    fake.state.next_responses.append((200, {}, json.dumps(message).encode()))
    streamed = assemble(await collect(adapter, chat(user("x"), stream=True)))
    assert text_of(streamed) == "plain" and streamed.choices[0].finish_reason == "length"


async def test_unsupported_requests(fake: Fake, adapter: AnthropicAdapter) -> None:
    with pytest.raises(BadRequest, match="n > 1"):
        await adapter.complete(chat(user("x"), n=2), KEY)
    with pytest.raises(BadRequest, match="audio"):
        await adapter.complete(chat(user("x", AudioPart(data="AAAA", format="wav"))), KEY)
    with pytest.raises(BadRequest, match="audio"):
        await collect(adapter, chat(user("x", AudioPart(data="AAAA", format="wav")), stream=True))
    with pytest.raises(BadRequest, match="embeddings"):
        await adapter.embed(EmbeddingRequest(model=MODEL, inputs=["x"]), KEY)
    assert fake.state.requests == []
