"""The settled charge is the price times the upstream's own usage, exactly: on OpenAI, Anthropic and
Gemini upstreams, streamed and not, cached, cache-written and reasoning tokens each at their own rate.
Parallel streams near a balance never overdraw it, and after a randomized workload the balance still
equals the sum of the ledger, and every charge in the ledger is the cost of a usage record."""

from __future__ import annotations

import asyncio
import random
import sqlite3
import time
from collections.abc import Iterator
from fractions import Fraction
from typing import Any

import anthropic
import httpx
import openai
import pytest
from google import genai
from google.genai import types

from tests.conftest import ANTHROPIC_KEY, GEMINI_KEY, MASTER_KEY, UPSTREAM_KEYS, Gateway, serve
from tests.fakes import FakeState
from tests.fakes.anthropic_upstream import FakeAnthropicState
from tests.fakes.gemini_upstream import FakeGeminiState

# Credits per 1M tokens = micro-units per token. Every token class has its own rate.
RATES = {"input": 2, "cached_input": Fraction(1, 2), "cache_write": 3, "output": 8, "reasoning": 12}
PRICE = {name: str(float(rate)) for name, rate in RATES.items()}
ADMIN = {"Authorization": f"Bearer {MASTER_KEY}"}
PROMPT = [{"role": "user", "content": "tell me four words"}]


@pytest.fixture(scope="module")
def gw(
    fake: FakeState,
    anthropic_fake: FakeAnthropicState,
    gemini_fake: FakeGeminiState,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Gateway]:
    yield from serve(
        tmp_path_factory,
        "charges",
        {
            "providers": [
                {
                    "name": "oai",
                    "type": "openai",
                    "base_url": fake.base_url + "/v1",  # type: ignore[attr-defined]
                    "api_keys": UPSTREAM_KEYS[:1],
                    "models": [{"name": "oai-cache", "upstream": "cache-hit"}, "slow-stream"],
                },
                {
                    "name": "anth",
                    "type": "anthropic",
                    "base_url": anthropic_fake.base_url,  # type: ignore[attr-defined]
                    "api_keys": [ANTHROPIC_KEY],
                    "models": [{"name": "anth-cache", "upstream": "cache-hit"}],
                },
                {
                    "name": "gem",
                    "type": "gemini",
                    "base_url": gemini_fake.base_url,  # type: ignore[attr-defined]
                    "api_keys": [GEMINI_KEY],
                    "models": [{"name": "gem-cache", "upstream": "cache-hit"}],
                },
            ],
            "prices": {m: PRICE for m in ("cache-hit", "slow-stream")},
        },
    )


def expected_cost(record: dict[str, Any]) -> int:
    """Our own arithmetic over the record's token counts (not the gateway's): one half-up rounding."""
    inp, out = record["input_tokens"], record["output_tokens"]
    cached, written, reasoning = (
        record["cached_input_tokens"],
        record["cache_write_tokens"],
        record["reasoning_tokens"],
    )
    exact = (
        (inp - cached - written) * RATES["input"]
        + cached * RATES["cached_input"]
        + written * RATES["cache_write"]
        + (out - reasoning) * RATES["output"]
        + reasoning * RATES["reasoning"]
    )
    return int(Fraction(exact) + Fraction(1, 2))


def tokens(record: dict[str, Any]) -> tuple[int, int, int, int, int]:
    return (
        record["input_tokens"],
        record["cached_input_tokens"],
        record["cache_write_tokens"],
        record["output_tokens"],
        record["reasoning_tokens"],
    )


def check(gw: Gateway, request_id: str, reported: tuple[int, int, int, int, int]) -> dict[str, Any]:
    record = gw.usage(request_id)[0]
    assert record["status"] == 200 and record["usage_estimated"] == 0
    assert tokens(record) == reported
    assert record["cost"] == expected_cost(record) > 0
    return record


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_openai_upstream_charge_is_exact(gw: Gateway, stream: bool) -> None:
    api = openai.OpenAI(base_url=gw.base_url + "/v1", api_key=MASTER_KEY, max_retries=0, timeout=10)
    args: dict[str, Any] = {"model": "oai-cache", "messages": PROMPT, "reasoning_effort": "low"}
    if stream:
        with api.chat.completions.with_streaming_response.create(
            **args, stream=True, stream_options={"include_usage": True}
        ) as raw:
            chunks = [c for c in (line for line in raw.iter_lines()) if '"usage":{' in c]
            request_id = raw.headers["x-request-id"]
        usage = openai.types.chat.ChatCompletionChunk.model_validate_json(chunks[-1][6:]).usage
    else:
        raw_json = api.chat.completions.with_raw_response.create(**args)
        usage, request_id = raw_json.parse().usage, raw_json.headers["x-request-id"]
    assert usage is not None and usage.prompt_tokens_details and usage.completion_tokens_details
    reported = (
        usage.prompt_tokens,
        usage.prompt_tokens_details.cached_tokens or 0,
        0,
        usage.completion_tokens,
        usage.completion_tokens_details.reasoning_tokens or 0,
    )
    assert reported[1] == 900 and reported[4] == 7  # the fake's cached prefix and reasoning
    check(gw, request_id, reported)


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_anthropic_upstream_charge_is_exact(gw: Gateway, stream: bool) -> None:
    api = anthropic.Anthropic(base_url=gw.base_url, api_key=MASTER_KEY, max_retries=0, timeout=10)
    args: dict[str, Any] = {"model": "anth-cache", "max_tokens": 50, "messages": PROMPT}
    if stream:
        with api.messages.stream(**args) as s:
            message = s.get_final_message()
            request_id = s.response.headers["x-request-id"]
    else:
        raw = api.messages.with_raw_response.create(**args)
        message, request_id = raw.parse(), raw.headers["x-request-id"]
    u = message.usage
    read, written = u.cache_read_input_tokens or 0, u.cache_creation_input_tokens or 0
    assert (u.input_tokens, read, written) == (100, 900, 50)
    # Anthropic counts cache reads and writes apart from input_tokens; the record counts them inside.
    check(gw, request_id, (u.input_tokens + read + written, read, written, u.output_tokens, 0))


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_gemini_upstream_charge_is_exact(gw: Gateway, stream: bool) -> None:
    client = genai.Client(
        api_key=MASTER_KEY,
        http_options=types.HttpOptions(base_url=gw.base_url, api_version="v1beta", timeout=10_000),
    )
    if stream:
        chunks = list(client.models.generate_content_stream(model="gem-cache", contents="tell me four words"))
        meta = chunks[-1].usage_metadata
    else:
        answer = client.models.generate_content(model="gem-cache", contents="tell me four words")
        meta = answer.usage_metadata
    assert meta is not None and meta.cached_content_token_count == 900
    out = (meta.candidates_token_count or 0) + (meta.thoughts_token_count or 0)
    reported = (meta.prompt_token_count or 0, 900, 0, out, meta.thoughts_token_count or 0)
    # google-genai does not expose response headers: find the record by its model, the newest one.
    time.sleep(0.3)
    rows = [r for r in gw.usage() if r["upstream_model"] == "cache-hit" and r["provider"] == "gem"]
    request_id = max(rows, key=lambda r: r["ts"])["request_id"]
    check(gw, request_id, reported)


@pytest.mark.parametrize("model", ["anth-cache", "gem-cache"])
def test_translated_answers_are_charged_at_the_same_rates(gw: Gateway, model: str) -> None:
    """An OpenAI client in front of Anthropic and Gemini upstreams: the same token classes, the same
    exact charge."""
    api = openai.OpenAI(base_url=gw.base_url + "/v1", api_key=MASTER_KEY, max_retries=0, timeout=10)
    raw = api.chat.completions.with_raw_response.create(model=model, messages=PROMPT)  # type: ignore[arg-type]
    usage = raw.parse().usage
    assert usage is not None and usage.prompt_tokens_details is not None
    record = gw.usage(raw.headers["x-request-id"])[0]
    assert record["cached_input_tokens"] == usage.prompt_tokens_details.cached_tokens == 900
    assert record["input_tokens"] == usage.prompt_tokens  # cached ones inside, as OpenAI counts
    assert record["cost"] == expected_cost(record) > 0


def _user_with_key(gw: Gateway, name: str, balance: int) -> tuple[str, str]:
    user = httpx.post(gw.base_url + "/admin/api/users", json={"name": name}, headers=ADMIN).json()
    httpx.post(f"{gw.base_url}/admin/api/users/{user['id']}/topup", json={"amount": balance}, headers=ADMIN)
    key = httpx.post(gw.base_url + "/admin/api/keys", json={"user_id": user["id"]}, headers=ADMIN).json()
    return user["id"], key["key"]


def _balance_and_ledger(gw: Gateway, user_id: str) -> tuple[int, int, list[tuple[str, int]]]:
    balance = httpx.get(f"{gw.base_url}/admin/api/users/{user_id}", headers=ADMIN).json()["balance"]
    conn = sqlite3.connect(gw.data_dir / "omnirelay.db")
    try:
        rows = conn.execute("SELECT kind, amount, request_id FROM ledger WHERE user_id = ?", (user_id,))
        entries = [(kind, amount, request_id) for kind, amount, request_id in rows]
    finally:
        conn.close()
    charges = [(rid, -amount) for kind, amount, rid in entries if kind == "charge"]
    return balance, sum(amount for _, amount, _ in entries), charges


def test_parallel_streams_near_the_balance_never_overdraw_it(gw: Gateway) -> None:
    user_id, key = _user_with_key(gw, "streamer", 5_000)
    api = openai.AsyncOpenAI(base_url=gw.base_url + "/v1", api_key=key, max_retries=0, timeout=20)

    async def one(i: int) -> str:
        try:
            stream = await api.chat.completions.create(
                model="slow-stream",
                max_tokens=40,
                stream=True,
                messages=[{"role": "user", "content": f"go {i}"}],
            )
            async for _ in stream:
                pass
        except openai.RateLimitError as exc:
            assert exc.code == "insufficient_quota"
            return "refused"
        return "ok"

    async def burst() -> list[str]:
        return list(await asyncio.gather(*(one(i) for i in range(30))))

    outcomes = asyncio.run(burst())
    assert "ok" in outcomes and "refused" in outcomes
    time.sleep(0.5)  # the ledger writer flushes every 0.05 s
    balance, ledger_sum, charges = _balance_and_ledger(gw, user_id)
    assert balance == ledger_sum >= 0
    assert len(charges) == outcomes.count("ok")


def test_ledger_equals_balance_after_a_randomized_workload(gw: Gateway) -> None:
    rng = random.Random(6)
    user_id, key = _user_with_key(gw, "random-walk", 30_000)
    api = openai.OpenAI(base_url=gw.base_url + "/v1", api_key=key, max_retries=0, timeout=10)
    for _ in range(40):
        action = rng.choice(["json", "stream", "cut", "topup", "redeem"])
        try:
            if action == "json":
                api.chat.completions.create(model="oai-cache", messages=PROMPT, max_tokens=50)
            elif action == "stream":
                for _ in api.chat.completions.create(
                    model="slow-stream", messages=PROMPT, stream=True, max_tokens=50
                ):
                    pass
            elif action == "cut":  # a client that leaves after two chunks
                stream = api.chat.completions.create(
                    model="slow-stream",
                    stream=True,
                    max_tokens=50,
                    messages=[{"role": "user", "content": "a b c d e f g h"}],
                )
                for _, _chunk in zip(range(2), stream, strict=False):
                    pass
                stream.close()
            elif action == "topup":
                amount = rng.randint(1, 5_000)
                httpx.post(
                    f"{gw.base_url}/admin/api/users/{user_id}/topup", json={"amount": amount}, headers=ADMIN
                )
            else:
                made = httpx.post(
                    gw.base_url + "/admin/api/redemption-codes",
                    json={"count": 1, "value": 4_000},
                    headers=ADMIN,
                ).json()
                code = made["codes"][0]
                redeemed = httpx.post(
                    gw.base_url + "/admin/api/me/redeem",
                    json={"code": code},
                    headers={"Authorization": f"Bearer {key}"},
                )
                assert redeemed.status_code == 200, redeemed.text
        except openai.RateLimitError as exc:
            assert exc.code == "insufficient_quota"
    time.sleep(1.0)  # usage records and ledger entries are written in background batches
    balance, ledger_sum, charges = _balance_and_ledger(gw, user_id)
    assert balance == ledger_sum >= 0
    records = {r["request_id"]: r for r in gw.usage() if r["user_id"] == user_id}
    assert charges, (balance, ledger_sum, list(records.values())[:3])
    assert all(records[rid]["cost"] == amount for rid, amount in charges)
    # Clients that left mid-stream were charged for what had been generated, not nothing.
    assert any(r["status"] == 499 and r["cost"] > 0 for r in records.values())
    charged = {rid for rid, _ in charges}
    assert all(r["cost"] == 0 for rid, r in records.items() if rid not in charged)
