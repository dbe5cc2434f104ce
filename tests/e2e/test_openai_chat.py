"""Chat completions through the gateway, driven by the official openai SDK against the fake upstream."""

from __future__ import annotations

import json

import openai
import pytest
from pydantic import BaseModel

from tests.conftest import MASTER_KEY, UPSTREAM_KEYS, Gateway
from tests.fakes import FakeState

PNG_1PX = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather for a city",
            "parameters": {
                "type": "object",
                "properties": {"query": {"type": "string"}},
                "required": ["query"],
            },
        },
    },
    {
        "type": "function",
        "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}},
    },
]


@pytest.fixture
def client(gateway: Gateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.base_url + "/v1", api_key=MASTER_KEY, max_retries=0, timeout=10)


@pytest.fixture
def aclient(gateway: Gateway) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(
        base_url=gateway.base_url + "/v1", api_key=MASTER_KEY, max_retries=0, timeout=10
    )


def test_chat_non_streaming(client: openai.OpenAI, fake: FakeState, gateway: Gateway) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini",
        messages=[{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello there"}],
        temperature=0.2,
        seed=7,
        user="u-1",
        max_completion_tokens=50,
        stop=["\n\n"],
    )
    completion = raw.parse()
    assert completion.choices[0].message.content == "echo: hello there"
    assert completion.usage is not None and completion.usage.total_tokens > 0
    assert raw.headers["x-omnirelay-provider"] == "oai/gpt-4o-mini"
    request_id = raw.headers["x-request-id"]
    sent = fake.last_request["json"]
    assert sent["seed"] == 7 and sent["user"] == "u-1" and sent["stop"] == ["\n\n"]
    assert sent["max_completion_tokens"] == 50 and "stream_options" not in sent
    assert fake.last_request["key"] in UPSTREAM_KEYS
    record = gateway.usage(request_id)[0]
    assert record["provider"] == "oai" and record["status"] == 200 and record["key_id"] == "master"
    assert record["input_tokens"] == completion.usage.prompt_tokens
    assert record["output_tokens"] == completion.usage.completion_tokens


def test_alias_maps_to_upstream_model(client: openai.OpenAI, fake: FakeState) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model="fast", messages=[{"role": "user", "content": "x"}]
    )
    assert fake.last_request["json"]["model"] == "gpt-4o-mini"
    assert raw.headers["x-omnirelay-provider"] == "oai/gpt-4o-mini"


def test_keys_are_used_in_turn(client: openai.OpenAI, fake: FakeState) -> None:
    used = set()
    for i in range(4):  # four different conversations (one conversation would stick to one key)
        client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": f"k{i}"}])
        used.add(fake.last_request["key"])
    assert used == set(UPSTREAM_KEYS)


def test_unknown_fields_pass_through_untouched(client: openai.OpenAI, fake: FakeState) -> None:
    client.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "x", "name": "bob"}],
        extra_body={"vendor_knob": {"nested": [1, 2.5, None, "s"]}, "top_k": 3},
        logit_bias={"50256": -100},
        presence_penalty=0.5,
        metadata={"a": "b"},
    )
    sent = fake.last_request["json"]
    assert sent["vendor_knob"] == {"nested": [1, 2.5, None, "s"]} and sent["top_k"] == 3
    assert sent["logit_bias"] == {"50256": -100} and sent["metadata"] == {"a": "b"}
    assert sent["messages"][0]["name"] == "bob"


async def test_stream_without_usage_request(
    aclient: openai.AsyncOpenAI, fake: FakeState, gateway: Gateway
) -> None:
    stream = await aclient.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "stream me please"}], stream=True
    )
    assert stream.headers["content-type"].startswith("text/event-stream")
    request_id = stream.headers["x-request-id"]
    chunks = [chunk async for chunk in stream.parse()]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "echo: stream me please"
    # The gateway asked the upstream for usage, and hid the extra chunk from this client.
    assert fake.last_request["json"]["stream_options"] == {"include_usage": True}
    assert all(c.choices for c in chunks)
    record = gateway.usage(request_id)[0]
    assert record["stream"] == 1 and record["output_tokens"] > 0 and record["ttfb_ms"] is not None


def test_stream_with_usage(client: openai.OpenAI) -> None:
    chunks = list(
        client.chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": "count me"}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 3


def test_sse_framing_is_relayed(gateway: Gateway) -> None:
    import httpx

    body = {"model": "gpt-4o-mini", "stream": True, "messages": [{"role": "user", "content": "frame"}]}
    with httpx.stream(
        "POST",
        gateway.base_url + "/v1/chat/completions",
        json=body,
        timeout=10,
        headers={"Authorization": f"Bearer {MASTER_KEY}"},
    ) as resp:
        raw = b"".join(resp.iter_raw())
    events = [e for e in raw.split(b"\n\n") if e]
    assert all(e.startswith(b"data: ") for e in events)
    assert events[-1] == b"data: [DONE]"
    assert resp.headers["cache-control"] == "no-cache"


def test_tools_non_streaming(client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "weather in Paris"}],
        tools=TOOLS,  # type: ignore[arg-type]
        tool_choice="auto",
    )
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    calls = choice.message.tool_calls or []
    assert [c.function.name for c in calls] == ["get_weather", "get_time"]  # type: ignore[union-attr]
    assert json.loads(calls[0].function.arguments) == {"query": "weather in Paris"}  # type: ignore[union-attr]


async def test_streamed_parallel_tool_calls(aclient: openai.AsyncOpenAI) -> None:
    calls: dict[int, dict[str, str]] = {}
    finish = None
    async for chunk in await aclient.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "time and weather"}],
        tools=TOOLS,  # type: ignore[arg-type]
        stream=True,
        parallel_tool_calls=True,
    ):
        for choice in chunk.choices:
            finish = choice.finish_reason or finish
            for tc in choice.delta.tool_calls or []:
                entry = calls.setdefault(tc.index, {"id": "", "name": "", "arguments": ""})
                entry["id"] = entry["id"] or (tc.id or "")
                entry["name"] = entry["name"] or (tc.function.name or "" if tc.function else "")
                entry["arguments"] += (tc.function.arguments or "") if tc.function else ""
    assert finish == "tool_calls"
    assert sorted(calls) == [0, 1]
    assert {c["name"] for c in calls.values()} == {"get_weather", "get_time"}
    assert all(c["id"].startswith("call_") for c in calls.values())
    assert json.loads(calls[0]["arguments"]) == {"query": "time and weather"}


def test_tool_result_round_trip(client: openai.OpenAI, fake: FakeState) -> None:
    messages = [
        {"role": "user", "content": "weather?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
    ]
    completion = client.chat.completions.create(model="gpt-4o-mini", messages=messages, tools=TOOLS)  # type: ignore[arg-type]
    assert completion.choices[0].message.content == "tool said: sunny"
    assert fake.last_request["json"]["messages"] == messages


class City(BaseModel):
    name: str
    population: int


def test_json_schema_output(client: openai.OpenAI, fake: FakeState) -> None:
    completion = client.chat.completions.parse(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "a city"}], response_format=City
    )
    parsed = completion.choices[0].message.parsed
    assert isinstance(parsed, City)
    assert fake.last_request["json"]["response_format"]["type"] == "json_schema"


def test_json_object_mode(client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "json please"}],
        response_format={"type": "json_object"},
    )
    assert json.loads(completion.choices[0].message.content or "") == {"echo": "json please"}


def test_images_in_input(client: openai.OpenAI, fake: FakeState) -> None:
    content = [
        {"type": "text", "text": "what is this"},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG_1PX}", "detail": "low"}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}},
    ]
    completion = client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": content}]
    )  # type: ignore[misc,list-item]
    assert completion.choices[0].message.content == "echo: what is this [images: 2]"
    assert fake.last_request["json"]["messages"][0]["content"] == content


def test_every_role_and_n_logprobs_reasoning(client: openai.OpenAI, fake: FakeState) -> None:
    completion = client.chat.completions.create(
        model="gpt-4o-mini",
        messages=[
            {"role": "developer", "content": [{"type": "text", "text": "rules"}]},
            {
                "role": "user",
                "content": [
                    {"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}},
                    {"type": "text", "text": "hear"},
                ],
            },
            {"role": "assistant", "content": [{"type": "text", "text": "ok"}]},
            {"role": "user", "content": "again"},
        ],
        n=2,
        logprobs=True,
        top_logprobs=2,
        reasoning_effort="low",
    )
    assert [c.index for c in completion.choices] == [0, 1]
    assert completion.choices[0].logprobs is not None
    assert completion.usage and completion.usage.completion_tokens_details
    assert completion.usage.completion_tokens_details.reasoning_tokens == 7
    assert fake.last_request["json"]["reasoning_effort"] == "low"


def test_legacy_functions_pass_through(client: openai.OpenAI, fake: FakeState) -> None:
    client.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "x"}],
        extra_body={"functions": [{"name": "f", "parameters": {}}], "function_call": "auto"},
    )
    assert fake.last_request["json"]["functions"] == [{"name": "f", "parameters": {}}]
