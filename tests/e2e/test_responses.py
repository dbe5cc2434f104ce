"""The OpenAI Responses surface through the gateway, on every upstream family."""

from __future__ import annotations

import json

import openai
import pytest

from tests.conftest import MASTER_KEY, Gateway

UPSTREAMS = ["mock", "gpt-4o-mini", "claude-sonnet-4-6", "gemini-2.5-flash"]
TOOL = {
    "type": "function",
    "name": "get_weather",
    "description": "weather",
    "parameters": {"type": "object", "properties": {"query": {"type": "string"}}},
}


@pytest.fixture
def client(gateway: Gateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.base_url + "/v1", api_key=MASTER_KEY, max_retries=0, timeout=10)


@pytest.mark.parametrize("model", UPSTREAMS)
def test_text(client: openai.OpenAI, model: str) -> None:
    response = client.responses.create(model=model, instructions="be brief", input="hello responses")
    assert response.status == "completed"
    assert response.output_text == "echo: hello responses"
    assert response.usage is not None and response.usage.output_tokens > 0


@pytest.mark.parametrize("model", UPSTREAMS)
def test_stream(client: openai.OpenAI, model: str) -> None:
    with client.responses.stream(model=model, input="stream responses") as stream:
        deltas = [e.delta for e in stream if e.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert "".join(deltas) == "echo: stream responses" == final.output_text


@pytest.mark.parametrize("model", ["gpt-4o-mini", "claude-sonnet-4-6", "gemini-2.5-flash"])
def test_function_call_and_output(client: openai.OpenAI, model: str) -> None:
    first = client.responses.create(model=model, input="weather in Accra", tools=[TOOL])  # type: ignore[list-item]
    call = next(item for item in first.output if item.type == "function_call")
    assert call.name == "get_weather" and json.loads(call.arguments) == {"query": "weather in Accra"}
    second = client.responses.create(
        model=model,
        tools=[TOOL],
        previous_response_id=first.id,  # type: ignore[list-item]
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": "hot"}],
    )
    assert "hot" in second.output_text and second.output_text.startswith("tool said:")


def test_previous_response_and_retrieve(client: openai.OpenAI, fake: object) -> None:
    first = client.responses.create(model="gpt-4o-mini", input="my name is Ada")
    again = client.responses.retrieve(first.id)
    assert again.id == first.id and again.output_text == first.output_text
    follow = client.responses.create(
        model="gpt-4o-mini", input="what is my name?", previous_response_id=first.id
    )
    sent = fake.last_request["json"]["messages"]  # type: ignore[attr-defined]
    assert [m["role"] for m in sent] == ["user", "assistant", "user"]
    assert sent[0]["content"] == "my name is Ada" and follow.output_text == "echo: what is my name?"


def test_unknown_previous_response_is_404(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        client.responses.create(model="mock", input="x", previous_response_id="resp_missing")
    assert info.value.param == "previous_response_id"
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve("resp_missing")


def test_store_false_is_not_retrievable(client: openai.OpenAI) -> None:
    response = client.responses.create(model="mock", input="forget me", store=False)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(response.id)


def test_builtin_tool_is_a_clear_400(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.responses.create(model="gpt-4o-mini", input="x", tools=[{"type": "web_search"}])  # type: ignore[list-item]
    assert "web_search" in info.value.message
