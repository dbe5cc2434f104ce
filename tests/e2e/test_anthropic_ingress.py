"""The Anthropic Messages surface, driven by the official anthropic SDK."""

from __future__ import annotations

import anthropic
import httpx
import pytest

from omnirelay.accounting.tokenizer import count_text
from tests.conftest import MASTER_KEY, Gateway
from tests.fakes import FakeState

TOOL = {
    "name": "lookup",
    "description": "Look a thing up",
    "input_schema": {"type": "object", "properties": {"input": {"type": "string"}}},
}


@pytest.fixture(params=["", "/anthropic"], ids=["root", "prefix"])
def client(gateway: Gateway, request: pytest.FixtureRequest) -> anthropic.Anthropic:
    return anthropic.Anthropic(
        base_url=gateway.base_url + request.param, api_key=MASTER_KEY, max_retries=0, timeout=10
    )


def test_text_to_mock(client: anthropic.Anthropic) -> None:
    message = client.messages.create(
        model="mock",
        max_tokens=100,
        system="be brief",
        messages=[{"role": "user", "content": "hello claude"}],
    )
    assert message.type == "message" and message.role == "assistant"
    assert message.content[0].type == "text" and message.content[0].text == "echo: hello claude"
    assert message.stop_reason == "end_turn"
    assert message.usage.input_tokens > 0 and message.usage.output_tokens == 3


def test_stream_final_message(client: anthropic.Anthropic) -> None:
    with client.messages.stream(
        model="mock", max_tokens=100, messages=[{"role": "user", "content": "stream it now"}]
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "echo: stream it now"
    assert final.content[0].text == text  # type: ignore[union-attr]
    assert final.usage.output_tokens == 4


def test_tool_use_round_trip(client: anthropic.Anthropic) -> None:
    first = client.messages.create(
        model="mock",
        max_tokens=100,
        tools=[TOOL],  # type: ignore[list-item]
        messages=[{"role": "user", "content": "find the cat"}],
    )
    assert first.stop_reason == "tool_use"
    call = next(b for b in first.content if b.type == "tool_use")
    assert call.name == "lookup" and call.input == {"input": "find the cat"}
    second = client.messages.create(
        model="mock",
        max_tokens=100,
        tools=[TOOL],  # type: ignore[list-item]
        messages=[
            {"role": "user", "content": "find the cat"},
            {"role": "assistant", "content": first.content},  # type: ignore[typeddict-item]
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "on the mat"}],
            },
        ],
    )
    assert second.content[0].text == "tool result: on the mat"  # type: ignore[union-attr]


def test_streamed_tool_use(client: anthropic.Anthropic) -> None:
    with client.messages.stream(
        model="mock",
        max_tokens=100,
        tools=[TOOL],  # type: ignore[list-item]
        messages=[{"role": "user", "content": "stream a call"}],
    ) as stream:
        final = stream.get_final_message()
    call = final.content[-1]
    assert call.type == "tool_use" and call.input == {"input": "stream a call"}
    assert final.stop_reason == "tool_use"


def test_errors_in_anthropic_shape(client: anthropic.Anthropic, gateway: Gateway) -> None:
    with pytest.raises(anthropic.NotFoundError) as info:
        client.messages.create(model="nope", max_tokens=10, messages=[{"role": "user", "content": "x"}])
    assert info.value.body["type"] == "error"  # type: ignore[index]
    assert info.value.body["error"]["type"] == "not_found_error"  # type: ignore[index]
    resp = httpx.post(
        gateway.base_url + "/v1/messages",
        headers={"x-api-key": MASTER_KEY},
        json={"model": "mock", "messages": [{"role": "user", "content": "x"}]},
    )
    assert resp.status_code == 400
    assert resp.json() == {
        "type": "error",
        "error": {
            "type": "invalid_request_error",
            "message": "max_tokens: Field required (a positive integer)",
        },
    }
    bad = anthropic.Anthropic(base_url=gateway.base_url, api_key="sk-wrong", max_retries=0)
    with pytest.raises(anthropic.AuthenticationError):
        bad.messages.create(model="mock", max_tokens=10, messages=[{"role": "user", "content": "x"}])


def test_count_tokens_and_models(client: anthropic.Anthropic) -> None:
    count = client.messages.count_tokens(model="mock", messages=[{"role": "user", "content": "a" * 400}])
    # Counted offline with o200k_base: 3 per message + the role + the text + 3 priming the reply.
    assert count.input_tokens == 3 + count_text("user", "mock") + count_text("a" * 400, "mock") + 3
    ids = [m.id for m in client.models.list()]
    assert "mock" in ids and "gpt-4o-mini" in ids


# --- Anthropic clients reaching an OpenAI-protocol upstream (Claude Code against a GPT model) ---


def test_anthropic_client_to_openai_upstream(client: anthropic.Anthropic, fake: FakeState) -> None:
    message = client.messages.create(
        model="gpt-4o-mini",
        max_tokens=64,
        system="be brief",
        messages=[{"role": "user", "content": "hello gpt"}],
    )
    assert message.content[0].text == "echo: hello gpt"  # type: ignore[union-attr]
    sent = fake.last_request["json"]
    assert sent["messages"][0] == {"role": "system", "content": "be brief"}
    assert sent["max_tokens"] == 64
    assert message.usage.output_tokens == 3 and message.usage.input_tokens > 0


def test_anthropic_tools_round_trip_via_openai(client: anthropic.Anthropic, fake: FakeState) -> None:
    tools = [
        {
            "name": "get_weather",
            "description": "weather",
            "input_schema": {"type": "object", "properties": {"query": {"type": "string"}}},
        }
    ]
    with client.messages.stream(
        model="gpt-4o-mini",
        max_tokens=64,
        tools=tools,  # type: ignore[arg-type]
        messages=[{"role": "user", "content": "weather in Oslo"}],
    ) as stream:
        first = stream.get_final_message()
    assert first.stop_reason == "tool_use"
    call = next(b for b in first.content if b.type == "tool_use")
    assert call.name == "get_weather" and call.input == {"query": "weather in Oslo"}
    assert fake.last_request["json"]["tools"][0]["function"]["name"] == "get_weather"
    second = client.messages.create(
        model="gpt-4o-mini",
        max_tokens=64,
        tools=tools,  # type: ignore[arg-type]
        messages=[
            {"role": "user", "content": "weather in Oslo"},
            {"role": "assistant", "content": first.content},  # type: ignore[typeddict-item]
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "rainy"}],
            },
        ],
    )
    assert second.content[0].text == "tool said: rainy"  # type: ignore[union-attr]
    sent = fake.last_request["json"]["messages"]
    assert sent[1]["tool_calls"][0]["id"] == call.id and sent[2] == {
        "role": "tool",
        "tool_call_id": call.id,
        "content": "rainy",
    }


def test_openai_upstream_error_in_anthropic_shape(client: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.RateLimitError) as info:
        client.messages.create(model="fail-429", max_tokens=10, messages=[{"role": "user", "content": "x"}])
    assert info.value.response.headers["retry-after"] == "2"
    assert info.value.body["error"]["type"] == "rate_limit_error"  # type: ignore[index]


def test_system_role_messages_between_turns(client: anthropic.Anthropic, fake: FakeState) -> None:
    # Claude Code sends role "system" messages inside `messages` (newer Messages API).
    message = client.messages.create(
        model="gpt-4o-mini",
        max_tokens=32,
        messages=[
            {"role": "user", "content": "first"},
            {"role": "system", "content": "agents: none"},  # type: ignore[list-item, misc]
            {"role": "user", "content": "second"},
        ],
    )
    assert message.content[0].text == "echo: second"  # type: ignore[union-attr]
    roles = [m["role"] for m in fake.last_request["json"]["messages"]]
    assert "system" in roles and roles[-1] == "user"
