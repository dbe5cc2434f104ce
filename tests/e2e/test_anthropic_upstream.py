"""Anthropic as the upstream: byte passthrough for Anthropic clients, translation for OpenAI clients."""

from __future__ import annotations

import anthropic
import openai
import pytest

from tests.conftest import ANTHROPIC_KEY, MASTER_KEY, Gateway
from tests.fakes.anthropic_upstream import FakeAnthropicState

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {"type": "object", "properties": {"query": {"type": "string"}}},
        },
    }
]


@pytest.fixture
def aclient(gateway: Gateway) -> anthropic.Anthropic:
    return anthropic.Anthropic(
        base_url=gateway.base_url + "/anthropic", api_key=MASTER_KEY, max_retries=0, timeout=10
    )


@pytest.fixture
def oclient(gateway: Gateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.base_url + "/v1", api_key=MASTER_KEY, max_retries=0, timeout=10)


def test_passthrough_keeps_cache_control_and_beta_header(
    aclient: anthropic.Anthropic, anthropic_fake: FakeAnthropicState, gateway: Gateway
) -> None:
    system = [{"type": "text", "text": "long shared prefix", "cache_control": {"type": "ephemeral"}}]
    raw = aclient.messages.with_raw_response.create(
        model="anth-cache-hit",
        max_tokens=50,
        system=system,  # type: ignore[arg-type]
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "hi there", "cache_control": {"type": "ephemeral", "ttl": "5m"}}
                ],
            }
        ],
        extra_headers={"anthropic-beta": "prompt-caching-2024-07-31"},
    )
    message = raw.parse()
    assert message.content[0].text == "echo: hi there"  # type: ignore[union-attr]
    assert message.usage.cache_read_input_tokens == 900
    sent = anthropic_fake.last_request
    assert sent["json"]["model"] == "cache-hit"
    assert sent["json"]["system"] == system
    assert sent["json"]["messages"][0]["content"][0]["cache_control"] == {"type": "ephemeral", "ttl": "5m"}
    assert sent["headers"]["anthropic-beta"] == "prompt-caching-2024-07-31"
    assert sent["headers"]["x-api-key"] == ANTHROPIC_KEY
    record = gateway.usage(raw.headers["x-request-id"])[0]
    assert (record["input_tokens"], record["cached_input_tokens"], record["cache_write_tokens"]) == (
        1050,
        900,
        50,
    )


def test_passthrough_stream_is_relayed_with_usage(
    aclient: anthropic.Anthropic, anthropic_fake: FakeAnthropicState, gateway: Gateway
) -> None:
    with aclient.messages.with_streaming_response.create(
        model="anth-cache-hit",
        max_tokens=50,
        stream=True,
        messages=[{"role": "user", "content": "stream it"}],
    ) as resp:
        raw = b"".join(resp.iter_bytes())
        request_id = resp.headers["x-request-id"]
    assert raw.startswith(b"event: message_start")
    assert b"event: message_stop" in raw
    record = gateway.usage(request_id)[0]
    assert record["input_tokens"] == 1050 and record["output_tokens"] > 0 and record["stream"] == 1


def test_passthrough_errors_and_cut_stream(aclient: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.RateLimitError) as info:
        aclient.messages.create(
            model="anth-fail-429", max_tokens=5, messages=[{"role": "user", "content": "x"}]
        )
    assert info.value.response.headers["retry-after"] == "3"
    with pytest.raises(anthropic.APIStatusError) as overloaded:
        aclient.messages.create(
            model="anth-fail-529", max_tokens=5, messages=[{"role": "user", "content": "x"}]
        )
    assert overloaded.value.status_code == 503
    with (
        pytest.raises(anthropic.APIError),
        aclient.messages.stream(
            model="anth-cut-stream", max_tokens=50, messages=[{"role": "user", "content": "a b c d"}]
        ) as stream,
    ):
        stream.get_final_message()


def test_openai_client_to_anthropic_upstream(
    oclient: openai.OpenAI, anthropic_fake: FakeAnthropicState
) -> None:
    completion = oclient.chat.completions.create(
        model="claude-sonnet-4-6",
        messages=[{"role": "system", "content": "terse"}, {"role": "user", "content": "hello claude"}],
    )
    assert completion.choices[0].message.content == "echo: hello claude"
    sent = anthropic_fake.last_request["json"]
    assert sent["system"] in ("terse", [{"type": "text", "text": "terse"}]) and sent["max_tokens"] > 0


def test_openai_client_cached_usage_means_the_same(oclient: openai.OpenAI) -> None:
    completion = oclient.chat.completions.create(
        model="anth-cache-hit", messages=[{"role": "user", "content": "count"}]
    )
    usage = completion.usage
    assert usage is not None and usage.prompt_tokens == 1050
    assert usage.prompt_tokens_details is not None and usage.prompt_tokens_details.cached_tokens == 900


def test_openai_client_streamed_tool_round_trip_via_anthropic(oclient: openai.OpenAI) -> None:
    with oclient.chat.completions.stream(
        model="claude-sonnet-4-6",
        tools=TOOLS,  # type: ignore[arg-type]
        messages=[{"role": "user", "content": "weather in Rome"}],
    ) as stream:
        first = stream.get_final_completion()
    calls = first.choices[0].message.tool_calls or []
    assert first.choices[0].finish_reason == "tool_calls" and calls[0].function.name == "get_weather"  # type: ignore[union-attr]
    second = oclient.chat.completions.create(
        model="claude-sonnet-4-6",
        tools=TOOLS,  # type: ignore[arg-type]
        messages=[
            {"role": "user", "content": "weather in Rome"},
            first.choices[0].message.model_dump(exclude_none=True),  # type: ignore[list-item]
            {"role": "tool", "tool_call_id": calls[0].id, "content": "sunny"},
        ],
    )
    assert second.choices[0].message.content == "tool said: sunny"


def test_openai_client_gets_anthropic_429_as_openai_429(oclient: openai.OpenAI) -> None:
    with pytest.raises(openai.RateLimitError) as info:
        oclient.chat.completions.create(model="anth-fail-429", messages=[{"role": "user", "content": "x"}])
    assert info.value.response.headers["retry-after"] == "3"
