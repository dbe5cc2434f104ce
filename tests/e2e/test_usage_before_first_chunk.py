"""A stream the client leaves before anything about its usage is known (no chunk read yet, or none
with usage or generated text) is charged its prompt: the upstream was called and has processed it.
A request refused before any upstream was called is charged nothing."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anthropic
import openai
import pytest

from omnirelay.accounting.prices import Price, charge
from omnirelay.accounting.tokenizer import count_text
from omnirelay.canonical.usage import Usage
from tests.conftest import MASTER_KEY, UPSTREAM_KEYS, Gateway, chat_prompt_tokens, serve
from tests.fakes import FakeState

PRICE = {"input": "1", "output": "2.5"}  # credits per 1M tokens: 1 and 2.5 micro-units a token
MODELS = ["slow-first-chunk", "slow-stream", "fail-400", {"name": "claude-x", "upstream": "slow-stream"}]
TEXT = "the prompt the upstream has already read before the client went away"


@pytest.fixture(scope="module")
def gw(fake: FakeState, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    count_text("warm up", "gpt-4o")  # load the encoding before the first stream (see test_usage_accuracy)
    yield from serve(
        tmp_path_factory,
        "first-chunk",
        {
            "providers": [
                {
                    "name": "oai",
                    "type": "openai",
                    "base_url": fake.base_url + "/v1",  # type: ignore[attr-defined]
                    "api_keys": UPSTREAM_KEYS[:1],
                    "models": MODELS,
                }
            ],
            "prices": {name: PRICE for name in ["slow-first-chunk", "slow-stream", "fail-400", "claude-x"]},
        },
    )


def assert_prompt_charged(record: dict[str, Any], model: str) -> None:
    expected = chat_prompt_tokens(TEXT, model)
    assert record["status"] == 499
    assert (record["input_tokens"], record["output_tokens"], record["usage_estimated"]) == (expected, 0, 1)
    price = Price.from_credits(**PRICE)
    assert record["cost"] == charge(price, Usage(input_tokens=expected)) > 0


def test_client_leaving_before_the_first_chunk_is_charged_the_prompt(
    gw: Gateway, fake: FakeState, monkeypatch: pytest.MonkeyPatch
) -> None:
    """OpenAI passthrough: the upstream answered with its headers and is still working on the first
    chunk when the client closes the stream."""
    monkeypatch.setattr(fake, "slow_seconds", 3.0)
    api = openai.OpenAI(base_url=gw.base_url + "/v1", api_key=MASTER_KEY, max_retries=0, timeout=10)
    stream = api.chat.completions.create(
        model="slow-first-chunk", stream=True, messages=[{"role": "user", "content": TEXT}]
    )
    request_id = stream.response.headers["x-request-id"]
    stream.close()  # before any chunk arrived
    record = gw.record(request_id)
    assert fake.sent_events == [], "the upstream should not have sent any event"
    assert_prompt_charged(record, "slow-first-chunk")


def test_translated_stream_left_before_any_output_is_charged_the_prompt(
    gw: Gateway, fake: FakeState, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Anthropic client, OpenAI upstream: only the role chunk (no text, no usage) had arrived."""
    monkeypatch.setattr(fake, "chunk_delay", 2.0)
    api = anthropic.Anthropic(base_url=gw.base_url, api_key=MASTER_KEY, max_retries=0, timeout=10)
    stream = api.messages.create(
        model="claude-x", max_tokens=100, stream=True, messages=[{"role": "user", "content": TEXT}]
    )
    request_id = stream.response.headers["x-request-id"]
    stream.close()
    record = gw.record(request_id)
    assert len(fake.sent_events) == 1, "only the role chunk should have been sent"
    assert_prompt_charged(record, "slow-stream")


@pytest.mark.parametrize("model", ["no-such-model", "fail-400"])
def test_stream_refused_before_it_started_is_charged_nothing(gw: Gateway, model: str) -> None:
    api = openai.OpenAI(base_url=gw.base_url + "/v1", api_key=MASTER_KEY, max_retries=0, timeout=10)
    with pytest.raises(openai.APIStatusError) as caught:
        api.chat.completions.create(model=model, stream=True, messages=[{"role": "user", "content": TEXT}])
    request_id = caught.value.response.headers["x-request-id"]
    record = gw.record(request_id)
    assert record["status"] == caught.value.status_code >= 400
    assert (record["input_tokens"], record["output_tokens"], record["cost"]) == (0, 0, 0)
