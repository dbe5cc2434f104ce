"""The built-in mock provider answers in OpenAI's protocol through the canonical translation path."""

from __future__ import annotations

import json

import openai
import pytest

from tests.conftest import MASTER_KEY, Gateway

TOOL = {
    "type": "function",
    "function": {"name": "lookup", "parameters": {"type": "object", "properties": {}}},
}


@pytest.fixture
def client(gateway: Gateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.base_url + "/v1", api_key=MASTER_KEY, max_retries=0, timeout=10)


def test_mock_echo(client: openai.OpenAI, gateway: Gateway) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model="mock", messages=[{"role": "user", "content": "ping pong"}]
    )
    completion = raw.parse()
    assert completion.choices[0].message.content == "echo: ping pong"
    assert completion.usage is not None and completion.usage.prompt_tokens == 2
    assert raw.headers["x-omnirelay-provider"] == "mock/mock"
    record = gateway.usage(raw.headers["x-request-id"])[0]
    assert record["provider"] == "mock" and record["output_tokens"] == 3


def test_mock_stream_with_usage(client: openai.OpenAI) -> None:
    chunks = list(
        client.chat.completions.create(
            model="mock",
            messages=[{"role": "user", "content": "a b c d e"}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "echo: a b c d e"
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens == 5 + 6
    assert len({c.id for c in chunks}) == 1


def test_mock_stream_helper_and_tool_call(client: openai.OpenAI) -> None:
    with client.chat.completions.stream(
        model="mock",
        messages=[{"role": "user", "content": "find it"}],
        tools=[TOOL],  # type: ignore[list-item]
    ) as stream:
        final = stream.get_final_completion()
    call = (final.choices[0].message.tool_calls or [])[0]
    assert final.choices[0].finish_reason == "tool_calls"
    assert call.function.name == "lookup" and json.loads(call.function.arguments) == {"input": "find it"}  # type: ignore[union-attr]


def test_mock_json_schema(client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(
        model="mock",
        messages=[{"role": "user", "content": "x"}],
        response_format={
            "type": "json_schema",
            "json_schema": {
                "name": "t",
                "schema": {
                    "type": "object",
                    "properties": {"n": {"type": "integer"}, "s": {"type": "string"}},
                },
            },
        },
    )
    assert json.loads(completion.choices[0].message.content or "") == {"n": 1, "s": "mock"}


def test_mock_rejects_bad_content_part(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(
            model="mock",
            messages=[{"role": "user", "content": [{"type": "hologram"}]}],  # type: ignore[list-item]
        )
    assert "hologram" in info.value.message
