"""Free-tier caps: requests a UTC day per key and per client IP across keys, each endpoint family
(chat, embeddings) counted on its own; refusals are 429 with retry-after in the client's protocol."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import openai
import pytest

from omnirelay.state.base import DAY
from tests.conftest import MASTER_KEY, Gateway, serve
from tests.e2e.routing_support import clear_of_window_edge

HELLO = [{"role": "user", "content": "hello"}]


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    yield from serve(
        tmp_path_factory,
        "free-tier",
        {
            "providers": [{"name": "m", "type": "mock", "models": ["mock"]}],
            "billing": {
                "free_tier": {
                    "per_ip_daily": {"chat": 5, "embeddings": 4},
                    "per_key_daily": {"chat": 3},
                }
            },
        },
    )


@pytest.fixture(autouse=True)
def _fresh_counts(gw: Gateway) -> Iterator[None]:
    clear_of_window_edge(DAY, margin=10.0)  # every burst lands in one UTC day
    gw.reset_routing()
    yield


def new_key(gw: Gateway, **fields: Any) -> str:
    resp = httpx.post(
        gw.base_url + "/admin/api/keys",
        json=fields,
        headers={"Authorization": f"Bearer {MASTER_KEY}"},
        timeout=10,
    )
    assert resp.status_code == 201, resp.text
    return str(resp.json()["key"])


def client(gw: Gateway, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.base_url + "/v1", api_key=key, max_retries=0, timeout=10)


def test_per_key_then_per_ip_caps_with_the_openai_sdk(gw: Gateway) -> None:
    first, second = client(gw, new_key(gw)), client(gw, new_key(gw))
    for _ in range(3):
        first.chat.completions.create(model="mock", messages=HELLO)  # type: ignore[arg-type]
    with pytest.raises(openai.RateLimitError) as info:
        first.chat.completions.create(model="mock", messages=HELLO)  # type: ignore[arg-type]
    assert info.value.code == "free_tier_limit_exceeded"
    assert "this API key has used its 3 chat requests for today" in info.value.message
    assert 1 <= int(info.value.response.headers["retry-after"]) <= DAY
    # Legacy completions are chat too; embeddings are counted apart (no per-key cap for them).
    with pytest.raises(openai.RateLimitError):
        first.completions.create(model="mock", prompt="hi")
    assert first.embeddings.create(model="mock", input="hi").data
    # The same client IP on another key: 2 chat requests left of the IP's 5 (the refused ones above
    # were not counted against it).
    for _ in range(2):
        second.chat.completions.create(model="mock", messages=HELLO)  # type: ignore[arg-type]
    with pytest.raises(openai.RateLimitError) as info:
        second.responses.create(model="mock", input="hi")
    assert "the client IP 127.0.0.1 has used its 5 chat requests for today" in info.value.message
    # The master key is exempt.
    master = client(gw, MASTER_KEY)
    for _ in range(3):
        master.chat.completions.create(model="mock", messages=HELLO)  # type: ignore[arg-type]


def test_embeddings_family_across_openai_and_gemini(gw: Gateway) -> None:
    key = new_key(gw)
    api = client(gw, key)
    for _ in range(3):
        api.embeddings.create(model="mock", input="hi")
    gemini = httpx.post(
        gw.base_url + "/v1beta/models/mock:embedContent",
        json={"content": {"parts": [{"text": "hi"}]}},
        headers={"x-goog-api-key": key},
        timeout=10,
    )
    assert gemini.status_code == 200, gemini.text
    refused = httpx.post(
        gw.base_url + "/v1beta/models/mock:embedContent",
        json={"content": {"parts": [{"text": "hi"}]}},
        headers={"x-goog-api-key": key},
        timeout=10,
    )
    assert refused.status_code == 429 and refused.headers["retry-after"]
    error = refused.json()["error"]
    assert error["status"] == "RESOURCE_EXHAUSTED" and "4 embeddings requests" in error["message"]
    assert any(d["@type"].endswith("RetryInfo") for d in error["details"])
    with pytest.raises(openai.RateLimitError):
        api.embeddings.create(model="mock", input="hi")
    # Chat is a family of its own; uncapped endpoints stay open.
    assert api.chat.completions.create(model="mock", messages=HELLO).choices  # type: ignore[arg-type]
    assert [m.id for m in api.models.list()] == ["mock"]


def test_refusal_in_the_anthropic_shape(gw: Gateway) -> None:
    key = new_key(gw)
    api = anthropic.Anthropic(base_url=gw.base_url, api_key=key, max_retries=0, timeout=10)
    for _ in range(3):
        api.messages.create(model="mock", max_tokens=10, messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(anthropic.RateLimitError) as info:
        api.messages.create(model="mock", max_tokens=10, messages=[{"role": "user", "content": "hi"}])
    assert info.value.body["error"]["type"] == "rate_limit_error"  # type: ignore[index]
    assert "3 chat requests" in info.value.message
    assert int(info.value.response.headers["retry-after"]) >= 1
    # Counting tokens is not capped.
    assert api.messages.count_tokens(model="mock", messages=[{"role": "user", "content": "hi"}])
    # Gemini generateContent is chat: the key is over its cap there too.
    gemini = httpx.post(
        gw.base_url + "/v1beta/models/mock:generateContent",
        json={"contents": [{"role": "user", "parts": [{"text": "hi"}]}]},
        headers={"x-goog-api-key": key},
        timeout=10,
    )
    assert gemini.status_code == 429 and gemini.json()["error"]["status"] == "RESOURCE_EXHAUSTED"


def test_config_validation() -> None:
    from omnirelay.config import ConfigError, parse

    with pytest.raises(ConfigError, match=r"free_tier\.per_ip_daily"):
        parse("billing:\n  free_tier:\n    per_ip_daily: {images: 5}\n")
    with pytest.raises(ConfigError, match="at least 1"):
        parse("billing:\n  free_tier:\n    per_key_daily: {chat: 0}\n")
    config = parse("billing:\n  free_tier:\n    per_ip_daily: {chat: 200, embeddings: 1000}\n")
    assert config.billing.free_tier.per_ip_daily == {"chat": 200, "embeddings": 1000}


def test_a_users_keys_share_the_per_key_cap(gw: Gateway) -> None:
    """A user can mint keys itself; they must not multiply its free tier."""
    admin = {"Authorization": f"Bearer {MASTER_KEY}"}
    user = httpx.post(gw.base_url + "/admin/api/users", json={"name": "freeloader"}, headers=admin).json()
    own = new_key(gw, user_id=user["id"])
    minted = httpx.post(
        gw.base_url + "/admin/api/keys", json={"name": "another"}, headers={"Authorization": f"Bearer {own}"}
    )
    assert minted.status_code == 201, minted.text
    first, second = client(gw, own), client(gw, minted.json()["key"])
    for api in (first, second, first):
        api.chat.completions.create(model="mock", messages=HELLO)  # type: ignore[arg-type]
    with pytest.raises(openai.RateLimitError) as info:
        second.chat.completions.create(model="mock", messages=HELLO)  # type: ignore[arg-type]
    assert "this API key's user has used its 3 chat requests for today" in info.value.message
