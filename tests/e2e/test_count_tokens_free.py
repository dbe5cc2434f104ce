"""Counting tokens is free: a count_tokens call is recorded with its token count and costs nothing,
for Anthropic and Gemini clients, on native upstreams and translated ones."""

from __future__ import annotations

from collections.abc import Iterator

import anthropic
import httpx
import pytest

from tests.conftest import ANTHROPIC_KEY, GEMINI_KEY, MASTER_KEY, Gateway, serve
from tests.fakes import FakeState
from tests.fakes.anthropic_upstream import FakeAnthropicState
from tests.fakes.gemini_upstream import FakeGeminiState

PRICE = {"input": "1", "output": "2"}


@pytest.fixture(scope="module")
def gw(
    fake: FakeState,
    anthropic_fake: FakeAnthropicState,
    gemini_fake: FakeGeminiState,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Gateway]:
    yield from serve(
        tmp_path_factory,
        "count-tokens",
        {
            "providers": [
                {
                    "name": "anth",
                    "type": "anthropic",
                    "base_url": anthropic_fake.base_url,  # type: ignore[attr-defined]
                    "api_keys": [ANTHROPIC_KEY],
                    "models": ["claude-sonnet-4-6"],
                },
                {
                    "name": "gem",
                    "type": "gemini",
                    "base_url": gemini_fake.base_url,  # type: ignore[attr-defined]
                    "api_keys": [GEMINI_KEY],
                    "models": ["gemini-2.5-flash"],
                },
                {
                    "name": "oai",
                    "type": "openai",
                    "base_url": fake.base_url + "/v1",  # type: ignore[attr-defined]
                    "api_keys": ["sk-upstream-count-tokens"],
                    "models": ["gpt-4o-mini"],
                },
            ],
            "prices": {m: PRICE for m in ("claude-sonnet-4-6", "gemini-2.5-flash", "gpt-4o-mini")},
        },
    )


@pytest.mark.parametrize("model", ["claude-sonnet-4-6", "gpt-4o-mini"], ids=["native", "translated"])
def test_anthropic_count_tokens_costs_nothing(gw: Gateway, model: str) -> None:
    api = anthropic.Anthropic(base_url=gw.base_url, api_key=MASTER_KEY, max_retries=0, timeout=10)
    raw = api.messages.with_raw_response.count_tokens(
        model=model, messages=[{"role": "user", "content": "count these words for me please"}]
    )
    assert raw.parse().input_tokens > 0
    record = gw.usage(raw.headers["x-request-id"])[0]
    assert record["status"] == 200 and record["cost"] == 0
    # An ordinary message on the same model is charged.
    message = api.messages.with_raw_response.create(
        model=model, max_tokens=20, messages=[{"role": "user", "content": "hello"}]
    )
    assert gw.usage(message.headers["x-request-id"])[0]["cost"] > 0


@pytest.mark.parametrize("model", ["gemini-2.5-flash", "gpt-4o-mini"], ids=["native", "translated"])
def test_gemini_count_tokens_costs_nothing(gw: Gateway, model: str) -> None:
    url = f"{gw.base_url}/v1beta/models/{model}:countTokens"
    body = {"contents": [{"role": "user", "parts": [{"text": "count these words for me please"}]}]}
    answer = httpx.post(url, json=body, headers={"x-goog-api-key": MASTER_KEY}, timeout=10)
    assert answer.status_code == 200 and answer.json()["totalTokens"] > 0
    assert gw.usage(answer.headers["x-request-id"])[0]["cost"] == 0
