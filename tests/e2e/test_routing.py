"""Routing reliability, proven against programmable fake upstreams that fail on cue: rate limits and
their cool-downs, daily quotas, circuit breakers, rpm/rpd caps, invalid keys, waiting for recovery.

Every provider here points at one programmable fake (`tests/fakes/programmable.py`); each test owns
its providers and keys, so the fake's per-key counts prove where each request went. Strategies,
stickiness, streams, routes and the other client protocols are in `test_routing_strategies.py`.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from tests.conftest import Gateway
from tests.e2e.routing_support import (
    Answer,
    aask,
    ask,
    async_client,
    clear_of_window_edge,
    client,
    deployments,
    key,
    label_everything,
    per_window,
    provider,
    running_fake,
    running_gateway,
)
from tests.fakes.programmable import ProgrammableState, Reply
from tests.fakes.programmable import create_app as create_programmable
from tests.fakes.server import ServerThread

pytestmark = pytest.mark.timeout(30)

LADDER = [0.2, 0.5, 1.0]
QUOTA_LADDER = [30.0, 60.0]
OPEN_SECONDS = 0.5


@pytest.fixture(scope="module")
def upstream() -> Iterator[ProgrammableState]:
    with running_fake() as state:
        yield state


@pytest.fixture(scope="module")
def late(upstream: ProgrammableState) -> Iterator[ServerThread]:
    """A second server of the same fake whose socket is bound but not listening yet: connecting is
    refused until a test starts it."""
    server = ServerThread(create_programmable(upstream))
    try:
        yield server
    finally:
        server.stop()


def _config(url: str, late_url: str) -> dict[str, Any]:
    p = provider
    return {
        "routing": {
            "rate_limit_ladder": LADDER,
            "quota_ladder": QUOTA_LADDER,
            "breaker": {"failures": 3, "window_seconds": 10, "open_seconds": OPEN_SECONDS},
            "deadline_seconds": 10,
        },
        "providers": [
            p("rl", url, ["rl-A", "rl-B"], ["rl-m"]),
            p("ld", url, ["ld-A", "ld-B"], ["ld-m"]),
            p("qt", url, ["qt-A", "qt-B"], ["qt-m"]),
            p("br-main", url, ["br-main"], ["br-m"], priority=0),
            p("br-backup", url, ["br-backup"], ["br-m"], priority=1),
            p("dn-main", late_url, ["dn-main"], ["dn-m"], priority=0),
            p("dn-backup", url, ["dn-backup"], ["dn-m"], priority=1),
            p("cap-a", url, ["cap-a"], ["cap-m"], priority=0, rpm=5),
            p("cap-b", url, ["cap-b"], ["cap-m"], priority=1),
            p("capd-a", url, ["capd-a"], ["capd-m"], priority=0, rpd=5),
            p("capd-b", url, ["capd-b"], ["capd-m"], priority=1),
            p("au", url, ["au-A", "au-B"], ["au-m"]),
            p("wt", url, ["wt-A"], ["wt-m"]),
            p("w1", url, ["w1-A"], ["w1-m"]),
            p("hp-main", url, ["hp-main"], ["hp-m"], priority=0),
            p("hp-backup", url, ["hp-backup"], ["hp-m"], priority=1),
        ],
        "routes": {
            "wt-once": {"targets": ["wt-m"], "max_attempts": 1},
            "wt-short": {"targets": ["wt-m"], "deadline_seconds": 0.5},
        },
    }


@pytest.fixture(scope="module")
def gateway_r(
    upstream: ProgrammableState, late: ServerThread, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Gateway]:
    raw = _config(upstream.base_url, late.base_url)
    label_everything(upstream, raw)
    with running_gateway(raw, Path(tmp_path_factory.mktemp("routing-gw"))) as gw:
        yield gw


@pytest.fixture(scope="module")
def strict_gateway(
    upstream: ProgrammableState, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Gateway]:
    """wait_for_recovery off and the default ladders: a blocked request is answered at once."""
    url = upstream.base_url
    raw = {
        "routing": {"wait_for_recovery": False, "deadline_seconds": 10},
        "providers": [
            provider("solo", url, ["solo"], ["solo-m"], rpm=3),
            provider("solod", url, ["solod"], ["solod-m"], rpd=3),
            provider("ra", url, ["ra-A", "ra-B"], ["ra-m"]),
        ],
    }
    label_everything(upstream, raw)
    with running_gateway(raw, Path(tmp_path_factory.mktemp("routing-strict-gw"))) as gw:
        yield gw


@pytest.fixture(scope="module")
def api(gateway_r: Gateway) -> openai.OpenAI:
    return client(gateway_r)


def until_hit(api: openai.OpenAI, upstream: ProgrammableState, model: str, upstream_key: str) -> Answer:
    """Ask until a request reaches `upstream_key` (round robin between two keys: at most two asks)."""
    before = upstream.count(upstream_key)
    for _ in range(4):
        answer = ask(api, model)
        if upstream.count(upstream_key) > before:
            return answer
    raise AssertionError(f"no request reached {upstream_key}")


# --- 1. a 429 with retry-after -----------------------------------------------------------------------


def test_429_with_retry_after_moves_to_the_other_key_until_the_cool_down_ends(
    api: openai.OpenAI, upstream: ProgrammableState, gateway_r: Gateway
) -> None:
    a, b = key("rl-A"), key("rl-B")
    upstream.plan(a, Reply.rate_limited(retry_after=1))
    first = until_hit(api, upstream, "rl-m", a)
    limited_at = upstream.times(a)[0]
    # The client never sees the 429: key B of the same provider answered in the same request.
    assert (first.served_by, first.attempts, first.provider) == ("rl-B", 2, "rl/rl-m")
    assert first.text.startswith("echo: ")
    record = gateway_r.usage(first.request_id)
    assert [(r["provider"], r["upstream_model"], r["status"]) for r in record] == [("rl", "rl-m", 200)]
    cooling = deployments(gateway_r)["rl/0/rl-m"]["cooldown"]
    assert cooling is not None and 0.9 <= cooling["until"] - limited_at <= 1.05

    during = [ask(api, "rl-m") for _ in range(6)]
    assert time.time() < limited_at + 1.0, "the machine is too slow to prove the cool-down"
    assert {(x.served_by, x.attempts) for x in during} == {("rl-B", 1)}
    assert upstream.count(a) == 1

    time.sleep(max(0.0, limited_at + 1.05 - time.time()))
    after = [ask(api, "rl-m") for _ in range(4)]
    assert Counter(x.served_by for x in after) == {"rl-A": 2, "rl-B": 2}  # round robin again
    back = upstream.times(a)[1]
    assert 0.95 <= back - limited_at <= 1.6
    assert upstream.count(b) == 1 + 6 + 2


# --- 2. the rate-limit ladder and the quota ladder ---------------------------------------------------


def test_429_without_retry_after_escalates_along_the_ladder(
    api: openai.OpenAI, upstream: ProgrammableState, gateway_r: Gateway
) -> None:
    a = key("ld-A")
    upstream.plan(a, "429", "429", "429")  # then healthy
    seen: list[tuple[int, float]] = []  # (cool-down level, cool-down length) after each 429
    deadline = time.monotonic() + 6
    while upstream.count(a) < 4 and time.monotonic() < deadline:
        before = upstream.count(a)
        answer = ask(api, "ld-m")
        assert answer.served_by == "ld-B" or upstream.count(a) == 4  # A only serves once healthy
        if upstream.count(a) > before and len(seen) < 3:
            hit = upstream.select(a)[-1]
            cooling = deployments(gateway_r)["ld/0/ld-m"]["cooldown"]
            assert cooling is not None, f"no cool-down after 429 #{len(seen) + 1}"
            seen.append((cooling["level"], cooling["until"] - hit.at))
        time.sleep(0.01)
    assert upstream.count(a) == 4, "key A never came back"
    assert [level for level, _ in seen] == [1, 2, 3]
    for (_, length), rung in zip(seen, LADDER, strict=True):
        assert rung - 0.1 <= length <= rung + 0.02
    times = upstream.times(a)
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    for gap, rung in zip(gaps, LADDER, strict=True):
        assert rung - 0.05 <= gap <= rung + 0.4
    assert deployments(gateway_r)["ld/0/ld-m"]["cooldown"] is None
    # Its success reset the escalation: the next 429 starts from the ladder's first rung again.
    upstream.plan(a, "429")
    until_hit(api, upstream, "ld-m", a)
    cooling = deployments(gateway_r)["ld/0/ld-m"]["cooldown"]
    assert cooling["level"] == 1 and cooling["until"] - upstream.times(a)[-1] <= LADDER[0] + 0.02


def test_daily_quota_429_puts_the_key_on_the_quota_ladder(
    api: openai.OpenAI, upstream: ProgrammableState, gateway_r: Gateway
) -> None:
    a = key("qt-A")
    upstream.plan(a, "quota")
    first = until_hit(api, upstream, "qt-m", a)
    assert (first.served_by, first.attempts) == ("qt-B", 2)
    state = deployments(gateway_r)["qt/0/qt-m"]
    assert state["last_error"]["kind"] == "quota_exhausted"
    assert QUOTA_LADDER[0] - 1 <= state["cooldown"]["until"] - time.time() <= QUOTA_LADDER[0]
    assert deployments(gateway_r)["qt/1/qt-m"]["cooldown"] is None  # only that key
    answers = [ask(api, "qt-m") for _ in range(8)]
    assert {x.served_by for x in answers} == {"qt-B"}
    assert upstream.count(a) == 1


# --- 3. the circuit breaker --------------------------------------------------------------------------


async def _burst(api: openai.AsyncOpenAI, model: str, n: int) -> list[Answer]:
    return list(await asyncio.gather(*(aask(api, model) for _ in range(n))))


def _opened_at(gateway: Gateway, dep_id: str) -> float:
    breaker = deployments(gateway)[dep_id]["breaker"]
    assert breaker["state"] == "open", breaker
    return float(breaker["opened_at"])


def _heal_slowly(upstream: ProgrammableState, upstream_key: str) -> None:
    """Healthy from now on; the first answer takes 0.3 s, so a burst's requests all meet the probe in
    flight (and the half-open breaker) instead of a breaker the probe has already closed."""
    upstream.plan(upstream_key, Reply.ok(delay=0.3))
    upstream.set_default(upstream_key, "ok")


async def test_breaker_opens_on_500s_probes_once_half_open_then_closes(
    gateway_r: Gateway, upstream: ProgrammableState
) -> None:
    api, main, dep_id = async_client(gateway_r), key("br-main"), "br-main/0/br-m"
    upstream.set_default(main, "500")
    for _ in range(3):
        answer = await aask(api, "br-m")
        assert (answer.served_by, answer.attempts) == ("br-backup", 2)
    assert upstream.count(main) == 3
    opened = _opened_at(gateway_r, dep_id)

    # Open: the failing provider is not even tried.
    while_open = await _burst(api, "br-m", 6)
    assert time.time() < opened + OPEN_SECONDS, "the machine is too slow to prove the open state"
    assert {(x.served_by, x.attempts) for x in while_open} == {("br-backup", 1)}
    assert upstream.count(main) == 3

    # Half-open, still failing: of a burst, exactly one request probes it; it fails and re-opens.
    await asyncio.sleep(max(0.0, opened + OPEN_SECONDS + 0.05 - time.time()))
    probing = await _burst(api, "br-m", 8)
    assert {x.served_by for x in probing} == {"br-backup"}
    assert sorted(x.attempts for x in probing) == [1] * 7 + [2]
    assert upstream.count(main) == 4
    reopened = _opened_at(gateway_r, dep_id)
    assert reopened > opened

    # Healthy again: after open_seconds exactly one probe goes through, succeeds, closes the breaker.
    _heal_slowly(upstream, main)
    await asyncio.sleep(max(0.0, reopened + OPEN_SECONDS + 0.05 - time.time()))
    healing = await _burst(api, "br-m", 8)
    assert Counter(x.served_by for x in healing) == {"br-main": 1, "br-backup": 7}
    assert upstream.count(main) == 5
    assert deployments(gateway_r)[dep_id]["breaker"]["state"] == "closed"
    closed = [await aask(api, "br-m") for _ in range(5)]
    assert {(x.served_by, x.attempts) for x in closed} == {("br-main", 1)}


async def test_breaker_opens_on_refused_connections_then_closes_when_the_server_is_up(
    gateway_r: Gateway, upstream: ProgrammableState, late: ServerThread
) -> None:
    # A refused connection never reaches the fake: the gateway's own view shows the failures.
    api, dep_id = async_client(gateway_r), "dn-main/0/dn-m"
    for _ in range(3):
        answer = await aask(api, "dn-m")
        assert (answer.served_by, answer.attempts) == ("dn-backup", 2)
    assert deployments(gateway_r)[dep_id]["last_error"]["kind"] == "connection"
    opened = _opened_at(gateway_r, dep_id)
    while_open = await _burst(api, "dn-m", 6)
    assert time.time() < opened + OPEN_SECONDS, "the machine is too slow to prove the open state"
    assert {(x.served_by, x.attempts) for x in while_open} == {("dn-backup", 1)}  # not even tried

    _heal_slowly(upstream, key("dn-main"))
    late.start()
    await asyncio.sleep(max(0.0, opened + OPEN_SECONDS + 0.05 - time.time()))
    healing = await _burst(api, "dn-m", 8)
    assert Counter(x.served_by for x in healing) == {"dn-main": 1, "dn-backup": 7}
    assert upstream.count(key("dn-main")) == 1  # exactly one probe
    closed = [await aask(api, "dn-m") for _ in range(4)]
    assert {(x.served_by, x.attempts) for x in closed} == {("dn-main", 1)}


async def test_a_probe_answered_with_429_does_not_lock_the_provider_out(
    gateway_r: Gateway, upstream: ProgrammableState
) -> None:
    api, main = async_client(gateway_r), key("hp-main")
    upstream.set_default(main, "500")
    for _ in range(3):
        await aask(api, "hp-m")
    opened = _opened_at(gateway_r, "hp-main/0/hp-m")
    upstream.set_default(main, "429")  # alive again, but rate limits the probe (0.2 s cool-down)
    await asyncio.sleep(max(0.0, opened + OPEN_SECONDS + 0.05 - time.time()))
    assert (await aask(api, "hp-m")).attempts == 2 and upstream.count(main) == 4
    upstream.set_default(main, "ok")
    deadline = time.monotonic() + 1.5  # the 0.2 s cool-down, then open_seconds at the most
    while time.monotonic() < deadline and upstream.count(main) == 4:
        await aask(api, "hp-m")
        await asyncio.sleep(0.05)
    assert upstream.count(main) == 5


# --- 4. rpm and rpd caps -----------------------------------------------------------------------------


@pytest.mark.parametrize(("model", "window"), [("cap-m", 60.0), ("capd-m", 86_400.0)], ids=["rpm", "rpd"])
async def test_caps_are_never_exceeded_under_a_burst(
    gateway_r: Gateway, upstream: ProgrammableState, model: str, window: float
) -> None:
    capped, fallback = ("cap-a", "cap-b") if model == "cap-m" else ("capd-a", "capd-b")
    clear_of_window_edge(window)
    answers = await _burst(async_client(gateway_r), model, 30)
    assert all(x.text.startswith("echo: ") for x in answers)
    assert Counter(x.served_by for x in answers) == {capped: 5, fallback: 25}
    assert {x.attempts for x in answers} == {1}  # caps are checked before sending, not discovered
    assert upstream.count(key(capped)) == 5
    assert max(per_window(upstream.times(key(capped)), window).values()) <= 5
    more = await _burst(async_client(gateway_r), model, 5)
    assert {x.served_by for x in more} == {fallback} and upstream.count(key(capped)) == 5
    usage = deployments(gateway_r)[f"{capped}/0/{model}"]["usage"]
    assert usage["requests_minute" if window == 60.0 else "requests_day"] == 5


@pytest.mark.parametrize(("model", "window"), [("solo-m", 60.0), ("solod-m", 86_400.0)], ids=["rpm", "rpd"])
def test_cap_without_fallback_answers_429_with_retry_after(
    strict_gateway: Gateway, upstream: ProgrammableState, model: str, window: float
) -> None:
    api = client(strict_gateway)
    clear_of_window_edge(window)
    served = [ask(api, model) for _ in range(3)]
    assert all(x.text.startswith("echo: ") for x in served)
    for _ in range(2):
        started = time.time()
        with pytest.raises(openai.RateLimitError) as refused:
            ask(api, model)
        retry_after = int(refused.value.response.headers["retry-after"])
        left = window - (started % window)
        assert retry_after >= 1 and abs(retry_after - left) <= 2
        assert ("rpm" if window == 60.0 else "rpd") in refused.value.message
        assert refused.value.code == "rate_limit_exceeded"
    assert upstream.count(key(model.removesuffix("-m"))) == 3


# --- 5. an invalid key -------------------------------------------------------------------------------


def test_401_key_leaves_rotation_for_good(
    api: openai.OpenAI, upstream: ProgrammableState, gateway_r: Gateway
) -> None:
    a = key("au-A")
    upstream.set_default(a, "401")
    first = until_hit(api, upstream, "au-m", a)
    assert (first.served_by, first.attempts, first.text.startswith("echo: ")) == ("au-B", 2, True)
    answers = [ask(api, "au-m") for _ in range(12)]
    assert {(x.served_by, x.attempts) for x in answers} == {("au-B", 1)}
    assert upstream.count(a) == 1 and upstream.count(key("au-B")) == 13
    assert deployments(gateway_r)["au/0/au-m"]["invalid"]


# --- 12. waiting for the earliest recovery -----------------------------------------------------------


def test_waits_for_the_earliest_recovery_when_it_fits_the_deadline(
    api: openai.OpenAI, upstream: ProgrammableState
) -> None:
    a = key("wt-A")
    upstream.plan(a, Reply.rate_limited(retry_after=1))
    # A route allowing one attempt meets the 429 and cools the only deployment of wt-m down.
    with pytest.raises(openai.RateLimitError) as limited:
        ask(api, "wt-once")
    assert limited.value.response.headers["retry-after"] == "1"
    limited_at = upstream.times(a)[0]

    # Too short a deadline for the wait: 429 at once, with the time to come back.
    started = time.monotonic()
    with pytest.raises(openai.RateLimitError) as busy:
        ask(api, "wt-short")
    assert time.monotonic() - started < 0.4
    assert busy.value.response.headers["retry-after"] == "1"
    assert "cooling down" in busy.value.message
    assert upstream.count(a) == 1

    # Within the (10 s) deadline: the request waits for the cool-down to end, then succeeds.
    answer = ask(api, "wt-m")
    assert answer.served_by == "wt-A" and answer.text.startswith("echo: ")
    served_at = upstream.times(a)[1]
    assert 0.95 <= served_at - limited_at <= 1.3
    assert answer.elapsed >= 0.6  # it did wait (most of the second was left when it started)


def test_a_request_waits_out_its_own_429_when_it_fits_the_deadline(
    api: openai.OpenAI, upstream: ProgrammableState
) -> None:
    upstream.plan(key("w1-A"), Reply.rate_limited(retry_after=1))
    answer = ask(api, "w1-m")
    assert answer.served_by == "w1-A" and answer.attempts == 2
    assert 0.9 <= answer.elapsed <= 2.0


# --- 1b. retry-after versus the ladder ---------------------------------------------------------------


def test_retry_after_is_honoured_rather_than_the_default_ladder(
    strict_gateway: Gateway, upstream: ProgrammableState
) -> None:
    api = client(strict_gateway)
    a = key("ra-A")
    upstream.plan(a, Reply.rate_limited(retry_after=1))
    until_hit(api, upstream, "ra-m", a)
    limited_at = upstream.times(a)[0]
    cooling = deployments(strict_gateway)["ra/0/ra-m"]["cooldown"]
    assert cooling is not None
    assert cooling["until"] - limited_at <= 1.05
