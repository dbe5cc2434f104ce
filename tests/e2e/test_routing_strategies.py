"""Routing strategies and routes, proven against programmable fake upstreams: weights, priorities,
sticky sessions, streams that break after their first byte, context-window fallback, the `auto`
route, and the same failover for Anthropic and Gemini clients.

Cool-downs, breakers, caps and invalid keys are in `test_routing.py`.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import openai
import pytest
from google import genai
from google.genai import errors as genai_errors
from google.genai import types

from tests.conftest import MASTER_KEY, Gateway
from tests.e2e.routing_support import (
    Answer,
    aask,
    ask,
    async_client,
    client,
    key,
    label_everything,
    provider,
    running_fake,
    running_gateway,
    unique,
)
from tests.fakes.programmable import ProgrammableState, Reply

pytestmark = pytest.mark.timeout(30)


@pytest.fixture(scope="module")
def upstream() -> Iterator[ProgrammableState]:
    with running_fake() as state:
        yield state


def _config(url: str) -> dict[str, Any]:
    p = provider
    return {
        "routing": {
            "breaker": {"failures": 3, "window_seconds": 10, "open_seconds": 0.5},
            "deadline_seconds": 10,
        },
        "providers": [
            p("wa", url, ["w-A"], ["w-m"], weight=3),
            p("wb", url, ["w-B"], ["w-m"], weight=1),
            p("pr0", url, ["pr-0"], ["pr-m"], priority=0, timeouts={"first_byte": 0.3}),
            p("pr1", url, ["pr-1"], ["pr-m"], priority=1),
            p("sa", url, ["s-A"], ["s-m"]),
            p("sb", url, ["s-B"], ["s-m"]),
            p("ca", url, ["c-A"], ["c-m"], priority=0),
            p("cb", url, ["c-B"], ["c-m"], priority=1),
            p("ctx", url, ["ctx"], ["small-model", "large-model"]),
            p("ma", url, ["ma"], ["model-a"]),
            p("mb", url, ["mb"], ["model-b"]),
            p("xa", url, ["x-A"], ["x-m"], priority=0),
            p("xb", url, ["x-B"], ["x-m"], priority=1),
            p("xz", url, ["xz"], ["xz-m"]),
            p("ga", url, ["g-A"], ["g-m"], priority=0),
            p("gb", url, ["g-B"], ["g-m"], priority=1),
            p("gz", url, ["gz"], ["gz-m"]),
        ],
        "routes": {
            "w-random": {"targets": ["w-m"], "strategy": "weighted"},
            "ctx-fallback": {"targets": ["small-model", "large-model"], "fallback_on": ["context_window"]},
            "ctx-strict": {"targets": ["small-model", "large-model"]},
            "auto": ["model-a", "model-b"],
            "xz-short": {"targets": ["xz-m"], "deadline_seconds": 0.5},
            "gz-short": {"targets": ["gz-m"], "deadline_seconds": 0.5},
        },
    }


@pytest.fixture(scope="module")
def gateway_s(upstream: ProgrammableState, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    raw = _config(upstream.base_url)
    label_everything(upstream, raw)
    with running_gateway(raw, Path(tmp_path_factory.mktemp("routing-strategies-gw"))) as gw:
        yield gw


@pytest.fixture(scope="module")
def api(gateway_s: Gateway) -> openai.OpenAI:
    return client(gateway_s)


async def _many(gateway: Gateway, model: str, n: int, batch: int = 25) -> list[Answer]:
    api = async_client(gateway)
    out: list[Answer] = []
    for start in range(0, n, batch):
        out += await asyncio.gather(*(aask(api, model) for _ in range(min(batch, n - start))))
    return out


# --- 6. weights --------------------------------------------------------------------------------------


async def test_smooth_weighted_round_robin_gives_exact_shares(
    gateway_s: Gateway, upstream: ProgrammableState
) -> None:
    api = async_client(gateway_s)
    first = [(await aask(api, "w-m")).served_by for _ in range(8)]
    # Spread evenly, not in runs: each block of four (the weights' sum) is three A and one B.
    assert all(Counter(first[i : i + 4]) == {"w-A": 3, "w-B": 1} for i in (0, 4))
    answers = await _many(gateway_s, "w-m", 392)  # distinct conversations: no stickiness
    assert Counter(x.served_by for x in answers) + Counter(first) == {"w-A": 300, "w-B": 100}
    assert upstream.count(key("w-A")) == 300 and upstream.count(key("w-B")) == 100


async def test_weighted_random_strategy_keeps_the_shares(
    gateway_s: Gateway, upstream: ProgrammableState
) -> None:
    before = upstream.count(key("w-A"))
    answers = await _many(gateway_s, "w-random", 400)
    share = Counter(x.served_by for x in answers)
    assert share["w-A"] + share["w-B"] == 400
    assert 260 <= share["w-A"] <= 340, share  # 300 expected; the tolerance is over 4.5 sigma
    assert upstream.count(key("w-A")) - before == share["w-A"]


# --- 7. priorities -----------------------------------------------------------------------------------


def test_priority_one_serves_only_when_priority_zero_fails(
    api: openai.OpenAI, upstream: ProgrammableState
) -> None:
    healthy = [ask(api, "pr-m") for _ in range(10)]
    assert {(x.served_by, x.attempts) for x in healthy} == {("pr-0", 1)}
    assert upstream.count(key("pr-1")) == 0
    # One server error, then one first-byte timeout (0.3 s): each time priority 1 serves that request.
    for failure, outcome in ((Reply.error(500), "500"), (Reply.slow(1.0), "ok")):
        upstream.plan(key("pr-0"), failure)
        rescued = ask(api, "pr-m")
        assert (rescued.served_by, rescued.attempts, rescued.provider) == ("pr-1", 2, "pr1/pr-m")
        assert upstream.select(key("pr-0"))[-1].outcome == outcome
        back = ask(api, "pr-m")
        assert (back.served_by, back.attempts) == ("pr-0", 1)
    assert upstream.count(key("pr-1")) == 2 and upstream.count(key("pr-0")) == 14


# --- 8. sticky sessions ------------------------------------------------------------------------------


def test_sticky_sessions(api: openai.OpenAI, upstream: ProgrammableState) -> None:
    fresh = [ask(api, "s-m").served_by for _ in range(4)]
    assert Counter(fresh) == {"s-A": 2, "s-B": 2}  # new conversations take turns

    # A 10-turn conversation (same first message, growing history) stays put, while other new
    # conversations asked in between keep alternating.
    messages: list[dict[str, Any]] = [{"role": "user", "content": unique("conversation")}]
    served: list[str] = []
    others: list[str] = []
    for turn in range(10):
        answer = ask(api, "s-m", messages=messages)
        served.append(answer.served_by)
        others.append(ask(api, "s-m").served_by)
        messages += [
            {"role": "assistant", "content": answer.text},
            {"role": "user", "content": f"turn {turn + 1}"},
        ]
    assert len(set(served)) == 1, served
    assert set(others) == {"s-A", "s-B"}

    # An explicit x-session-id does the same for requests that share nothing else; two sessions asked
    # alternately land on the two deployments.
    one, two = unique("session"), unique("session")
    by_session: dict[str, list[str]] = {one: [], two: []}
    for _ in range(10):
        for session in (one, two):
            by_session[session].append(ask(api, "s-m", headers={"x-session-id": session}).served_by)
    assert len(set(by_session[one])) == 1 and len(set(by_session[two])) == 1
    assert by_session[one][0] != by_session[two][0]

    # When the sticky deployment fails, the conversation moves, and stays where it moved.
    stuck = served[0]
    other = "s-B" if stuck == "s-A" else "s-A"
    upstream.plan(key(stuck), "500")
    moved = ask(api, "s-m", messages=messages)
    assert (moved.served_by, moved.attempts) == (other, 2)
    for turn in range(3):
        messages += [
            {"role": "assistant", "content": moved.text},
            {"role": "user", "content": f"after the move {turn}"},
        ]
        assert ask(api, "s-m", messages=messages).served_by == other


# --- 9. streams --------------------------------------------------------------------------------------


def test_stream_cut_after_first_byte_ends_with_an_error_and_is_not_retried(
    api: openai.OpenAI, upstream: ProgrammableState, gateway_s: Gateway
) -> None:
    upstream.set_default(key("c-A"), "cut_stream")
    text = unique("stream")
    received: list[str] = []
    with api.chat.completions.with_streaming_response.create(
        model="c-m", messages=[{"role": "user", "content": text}], stream=True
    ) as response:
        assert response.headers["x-omnirelay-provider"] == "ca/c-m"
        request_id = response.headers["x-request-id"]
        with pytest.raises(openai.APIError) as broken:
            for chunk in response.parse():
                if chunk.choices and chunk.choices[0].delta.content:
                    received.append(chunk.choices[0].delta.content)
    assert received and f"echo: {text}".startswith("".join(received))  # content arrived first
    assert "".join(received) != f"echo: {text}"
    assert "stream" in broken.value.message or "connection" in broken.value.message
    assert upstream.count(key("c-A")) == 1 and upstream.count(key("c-B")) == 0
    assert [(r["provider"], r["status"]) for r in gateway_s.usage(request_id)] == [("ca", 502)]

    # A failure before the first byte, by contrast, goes to the other provider.
    upstream.plan(key("c-A"), "500")
    text = unique("stream")
    with api.chat.completions.with_streaming_response.create(
        model="c-m", messages=[{"role": "user", "content": text}], stream=True
    ) as response:
        assert response.headers["x-omnirelay-attempts"] == "2"
        content = "".join(c.choices[0].delta.content or "" for c in response.parse() if c.choices)
    assert content == f"echo: {text}"
    assert upstream.count(key("c-B")) == 1


# --- 10. context window ------------------------------------------------------------------------------


def test_context_window_error_falls_back_to_the_larger_model_only_when_asked(
    api: openai.OpenAI, upstream: ProgrammableState
) -> None:
    upstream.set_default("small-model", "context_window")
    answer = ask(api, "ctx-fallback")
    assert (answer.provider, answer.attempts) == ("ctx/large-model", 2)
    assert answer.text.startswith("echo: ")
    assert upstream.count(model="small-model") == 1 and upstream.count(model="large-model") == 1

    for model in ("ctx-strict", "small-model"):  # default triggers: a context-window error is final
        with pytest.raises(openai.BadRequestError) as refused:
            ask(api, model)
        assert refused.value.code == "context_length_exceeded"
    assert upstream.count(model="small-model") == 3 and upstream.count(model="large-model") == 1


# --- 11. the auto route ------------------------------------------------------------------------------


def test_auto_route(api: openai.OpenAI, upstream: ProgrammableState) -> None:
    assert "auto" in {m.id for m in api.models.list()}
    first = ask(api, "auto")
    assert (first.provider, first.attempts) == ("ma/model-a", 1)
    upstream.plan(key("ma"), "down")
    rescued = ask(api, "auto")
    assert (rescued.provider, rescued.attempts, rescued.served_by) == ("mb/model-b", 2, "mb")
    assert rescued.text.startswith("echo: ")
    assert ask(api, "auto").provider == "ma/model-a"
    assert upstream.count(key("ma")) == 3 and upstream.count(key("mb")) == 1


# --- 13. other client protocols ----------------------------------------------------------------------


def test_anthropic_client_gets_the_same_failover_and_its_own_429(
    gateway_s: Gateway, upstream: ProgrammableState
) -> None:
    api = anthropic.Anthropic(base_url=gateway_s.base_url, api_key=MASTER_KEY, max_retries=0, timeout=10)
    upstream.plan(key("x-A"), Reply.rate_limited(retry_after=1))
    text = unique("anthropic")
    raw = api.messages.with_raw_response.create(
        model="x-m", max_tokens=64, messages=[{"role": "user", "content": text}]
    )
    message = raw.parse()
    assert message.content[0].type == "text" and message.content[0].text == f"echo: {text}"
    assert (raw.headers["x-omnirelay-provider"], raw.headers["x-omnirelay-attempts"]) == ("xb/x-m", "2")
    assert upstream.count(key("x-A")) == 1 and upstream.count(key("x-B")) == 1

    # The final 429 — the upstream's, then the gateway's own while it cools down — in Anthropic's shape.
    # retry-after beyond the deadline: the gateway cannot wait it out, so the client gets the 429.
    upstream.set_default(key("xz"), Reply.rate_limited(retry_after=60))
    for model in ("xz-m", "xz-short"):
        with pytest.raises(anthropic.RateLimitError) as limited:
            api.messages.create(model=model, max_tokens=64, messages=[{"role": "user", "content": "hi"}])
        body = limited.value.body
        assert isinstance(body, dict) and body["type"] == "error", body
        assert body["error"]["type"] == "rate_limit_error" and body["error"]["message"]
        assert 50 <= int(limited.value.response.headers["retry-after"]) <= 60
    assert upstream.count(key("xz")) == 1


def test_gemini_client_gets_the_same_failover_and_its_own_429(
    gateway_s: Gateway, upstream: ProgrammableState
) -> None:
    api = genai.Client(
        api_key=MASTER_KEY,
        http_options=types.HttpOptions(base_url=gateway_s.base_url, api_version="v1beta", timeout=10_000),
    )
    upstream.plan(key("g-A"), Reply.rate_limited(retry_after=1))
    text = unique("gemini")
    reply = api.models.generate_content(model="g-m", contents=text)
    assert reply.text == f"echo: {text}"
    headers = reply.sdk_http_response.headers if reply.sdk_http_response else None
    assert headers is not None
    assert (headers["x-omnirelay-provider"], headers["x-omnirelay-attempts"]) == ("gb/g-m", "2")
    assert upstream.count(key("g-A")) == 1 and upstream.count(key("g-B")) == 1

    upstream.set_default(key("gz"), Reply.rate_limited(retry_after=60))
    for model in ("gz-m", "gz-short"):
        with pytest.raises(genai_errors.ClientError) as limited:
            api.models.generate_content(model=model, contents="hi")
        assert limited.value.code == 429 and limited.value.status == "RESOURCE_EXHAUSTED"
        details = limited.value.details
        assert isinstance(details, dict) and details["error"]["code"] == 429, details
    assert upstream.count(key("gz")) == 1
