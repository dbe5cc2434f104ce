"""An Anthropic client in front of a non-Anthropic upstream: `message_start` carries the prompt's
counted tokens (the upstream's usage only arrives at the end), and the final message the SDK
accumulates carries the upstream's own figures from `message_delta`."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anthropic
import pytest

from omnirelay.accounting.tokenizer import count_input, count_text
from omnirelay.ingress.anthropic import decode
from tests.conftest import MASTER_KEY, UPSTREAM_KEYS, Gateway, serve
from tests.fakes import FakeState

TEXT = "Summarise the plot of Hamlet in two sentences, please, and name the play's author."
SYSTEM = "You are a concise literary assistant."


@pytest.fixture(scope="module")
def gw(fake: FakeState, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    yield from serve(
        tmp_path_factory,
        "start-usage",
        {
            "providers": [
                {
                    "name": "oai",
                    "type": "openai",
                    "base_url": fake.base_url + "/v1",  # type: ignore[attr-defined]
                    "api_keys": UPSTREAM_KEYS[:1],
                    "models": [
                        {"name": "claude-via-openai", "upstream": "gpt-4o-mini"},
                        {"name": "claude-no-usage", "upstream": "no-usage"},
                    ],
                }
            ],
        },
    )


def counted(model: str) -> int:
    """The tokenizer's count of the request's prompt, as the gateway decodes it."""
    body = {
        "model": model,
        "max_tokens": 100,
        "system": SYSTEM,
        "messages": [{"role": "user", "content": TEXT}],
    }
    expected = count_input(decode(body))
    # OpenAI's chat framing: 3 a message (system, user), their roles and texts, 3 priming the reply.
    by_hand = 3 + 3 + sum(count_text(t, model) for t in ("system", SYSTEM, "user", TEXT)) + 3
    assert expected == by_hand
    return expected


def stream(gw: Gateway, model: str) -> tuple[list[Any], anthropic.types.Message, str]:
    api = anthropic.Anthropic(base_url=gw.base_url, api_key=MASTER_KEY, max_retries=0, timeout=10)
    with api.messages.stream(
        model=model, max_tokens=100, system=SYSTEM, messages=[{"role": "user", "content": TEXT}]
    ) as s:
        events = list(s)
        final = s.get_final_message()
        request_id = s.response.headers["x-request-id"]
    return events, final, request_id


def test_message_start_carries_the_counted_prompt_and_the_final_message_the_upstreams(gw: Gateway) -> None:
    events, final, request_id = stream(gw, "claude-via-openai")
    assert events[0].type == "message_start"
    estimate = counted("claude-via-openai")
    assert events[0].message.usage.input_tokens == estimate > 0
    record = gw.usage(request_id)[0]
    assert record["usage_estimated"] == 0  # the upstream reported its usage (the fake counts words)
    assert final.usage.input_tokens == record["input_tokens"] != estimate
    assert final.usage.output_tokens == record["output_tokens"] > 0


def test_without_upstream_usage_the_estimate_stands(gw: Gateway) -> None:
    events, final, request_id = stream(gw, "claude-no-usage")
    estimate = counted("claude-no-usage")
    assert events[0].type == "message_start" and events[0].message.usage.input_tokens == estimate
    delta = next(e for e in events if e.type == "message_delta")
    assert delta.usage.input_tokens is None  # nothing invented: message_start's estimate stands
    record = gw.usage(request_id)[0]
    assert record["usage_estimated"] == 1 and record["input_tokens"] == estimate
    assert final.usage.input_tokens == estimate
