"""One contract suite for every `RoutingState` implementation (memory today; add "redis" to the params).

Times are injected through `now`; the few TTL-only operations (sticky sessions, learned limits) use
short real TTLs and sleeps of at most ~0.1 s, so the suite runs unchanged against a real Redis.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import pytest
import pytest_asyncio

from omnirelay.state import (
    Admission,
    BreakerPolicy,
    BreakerStatus,
    Cooldown,
    Limits,
    LoadStats,
    MemoryRoutingState,
    RoutingState,
    WindowUsage,
)

DAY = 86_400.0
MIDNIGHT = 19_700 * DAY  # a UTC midnight
T0 = MIDNIGHT + 3_600.0  # 01:00:00 UTC, the start of a minute
DEP = "groq/key3/llama-3.3-70b"
POLICY = BreakerPolicy(failures=3, window=60.0, open_for=30.0, probe_ttl=10.0)


@dataclass
class Harness:
    state: RoutingState
    count_keys: Callable[[], Awaitable[int]]


@pytest_asyncio.fixture(params=["memory"], loop_scope="function")
async def harness(request: pytest.FixtureRequest) -> AsyncIterator[Harness]:
    if request.param == "memory":
        memory = MemoryRoutingState(sweep_every=256)

        async def count() -> int:
            return memory.size()

        h = Harness(memory, count)
    else:  # pragma: no cover - a Redis harness goes here (flush a dedicated db, count with DBSIZE)
        raise NotImplementedError(request.param)
    yield h
    await h.state.close()


@pytest.fixture
def state(harness: Harness) -> RoutingState:
    return harness.state


# Rate windows ---------------------------------------------------------------------------------


async def test_rpm_admits_up_to_the_cap_then_refuses_until_the_minute_resets(state: RoutingState) -> None:
    limits = Limits(rpm=3)
    assert [(await state.try_acquire(DEP, limits, T0 + 10)).ok for _ in range(3)] == [True] * 3
    refused = await state.try_acquire(DEP, limits, T0 + 10)
    assert (refused.ok, refused.limit) == (False, "rpm")
    assert refused.retry_after == pytest.approx(50.0)
    assert (await state.try_acquire(DEP, limits, T0 + 59.5)).retry_after == pytest.approx(0.5)
    assert await state.window_usage(DEP, T0 + 30) == WindowUsage(3, 3, 0, 0)  # refusals count nothing
    assert (await state.try_acquire(DEP, limits, T0 + 60)).ok  # the next minute window
    assert await state.window_usage(DEP, T0 + 61) == WindowUsage(1, 4, 0, 0)


async def test_rpd_uses_the_utc_day_window(state: RoutingState) -> None:
    limits = Limits(rpm=100, rpd=2)
    assert (await state.try_acquire(DEP, limits, T0)).ok
    assert (await state.try_acquire(DEP, limits, T0 + 120)).ok
    refused = await state.try_acquire(DEP, limits, T0 + 600)
    assert (refused.ok, refused.limit) == (False, "rpd")
    assert refused.retry_after == pytest.approx(DAY - 3_600 - 600)
    assert not (await state.try_acquire(DEP, limits, MIDNIGHT + DAY - 0.001)).ok
    assert (await state.try_acquire(DEP, limits, MIDNIGHT + DAY)).ok
    assert await state.window_usage(DEP, MIDNIGHT + DAY) == WindowUsage(1, 1, 0, 0)


async def test_token_caps_count_reported_tokens(state: RoutingState) -> None:
    limits = Limits(tpm=100, tpd=250)
    assert (await state.try_acquire(DEP, limits, T0)).ok
    await state.add_tokens(DEP, 99, T0 + 1)
    assert (await state.try_acquire(DEP, limits, T0 + 2)).ok  # 99 < 100
    await state.add_tokens(DEP, 1, T0 + 3)
    refused = await state.try_acquire(DEP, limits, T0 + 20)
    assert refused == Admission(False, 40.0, "tpm")  # whole seconds: exact in floating point
    assert (await state.try_acquire(DEP, limits, T0 + 60)).ok
    await state.add_tokens(DEP, 150, T0 + 61)
    refused = await state.try_acquire(DEP, limits, T0 + 62)
    assert (refused.ok, refused.limit) == (False, "tpd")  # 250 tokens today, 150 this minute
    assert refused.retry_after == pytest.approx(DAY - 3_600 - 62)
    assert await state.window_usage(DEP, T0 + 62) == WindowUsage(1, 3, 150, 250)
    await state.add_tokens(DEP, 0, T0 + 62)
    assert (await state.window_usage(DEP, T0 + 62)).tokens_day == 250


async def test_refusal_names_the_cap_that_resets_last(state: RoutingState) -> None:
    limits = Limits(rpm=1, rpd=1)
    assert (await state.try_acquire(DEP, limits, T0)).ok
    refused = await state.try_acquire(DEP, limits, T0 + 1)
    assert refused == Admission(False, DAY - 3_601, "rpd")
    zero = await state.try_acquire("other", Limits(rpm=0), T0 + 15)
    assert zero == Admission(False, 45.0, "rpm")


async def test_no_limits_always_admit_and_still_count(state: RoutingState) -> None:
    for _ in range(5):
        assert (await state.try_acquire(DEP, Limits(), T0)).ok
    assert await state.window_usage(DEP, T0) == WindowUsage(5, 5, 0, 0)
    assert await state.window_usage("unknown", T0) == WindowUsage()


async def test_concurrent_acquires_admit_exactly_the_cap(state: RoutingState) -> None:
    limits = Limits(rpm=37, rpd=1_000)
    results = await asyncio.gather(*(state.try_acquire(DEP, limits, T0 + 5) for _ in range(200)))
    assert sum(r.ok for r in results) == 37
    assert all(r.limit == "rpm" and r.retry_after == pytest.approx(55.0) for r in results if not r.ok)
    assert await state.window_usage(DEP, T0 + 5) == WindowUsage(37, 37, 0, 0)


async def test_release_undoes_one_acquire_and_never_goes_negative(state: RoutingState) -> None:
    limits = Limits(rpm=2)
    assert (await state.try_acquire(DEP, limits, T0 + 1)).ok
    assert (await state.try_acquire(DEP, limits, T0 + 2)).ok
    assert not (await state.try_acquire(DEP, limits, T0 + 3)).ok
    await state.release(DEP, T0 + 2)
    assert await state.window_usage(DEP, T0 + 3) == WindowUsage(1, 1, 0, 0)
    assert (await state.try_acquire(DEP, limits, T0 + 4)).ok
    for _ in range(5):
        await state.release(DEP, T0 + 4)
    assert await state.window_usage(DEP, T0 + 4) == WindowUsage(0, 0, 0, 0)
    await state.release("never-seen", T0)
    assert await state.window_usage("never-seen", T0) == WindowUsage()


# Learned ceilings -----------------------------------------------------------------------------


async def test_learned_limits_merge_per_field_and_expire(state: RoutingState) -> None:
    assert await state.learned_limits(DEP) == Limits()
    await state.learn_limits(DEP, Limits(rpd=14_400), ttl=60)
    await state.learn_limits(DEP, Limits(tpm=6_000), ttl=60)
    assert await state.learned_limits(DEP) == Limits(rpd=14_400, tpm=6_000)
    await state.learn_limits(DEP, Limits(rpd=1_000, rpm=30), ttl=0.05)
    assert await state.learned_limits(DEP) == Limits(rpm=30, rpd=1_000, tpm=6_000)
    await asyncio.sleep(0.1)
    assert await state.learned_limits(DEP) == Limits(tpm=6_000)
    configured = Limits(rpm=60, tpm=10_000, tpd=500_000)
    assert configured.tighter(await state.learned_limits(DEP)) == Limits(rpm=60, tpm=6_000, tpd=500_000)
    with pytest.raises(ValueError):
        Limits(rpm=-1)


# Cool-downs -----------------------------------------------------------------------------------


async def test_cooldown_is_set_expires_is_never_shortened_and_clears(state: RoutingState) -> None:
    assert await state.cooldown(DEP, T0) is None
    assert await state.cool_down(DEP, 30, "429", T0) == Cooldown(T0 + 30, "429", 0)
    assert await state.cooldown(DEP, T0 + 29.9) == Cooldown(T0 + 30, "429", 0)
    assert await state.cool_down(DEP, 5, "503", T0 + 1) == Cooldown(T0 + 30, "429", 0)
    assert await state.cool_down(DEP, 60, "daily cap", T0 + 2) == Cooldown(T0 + 62, "daily cap", 0)
    assert await state.cooldown(DEP, T0 + 62) is None
    await state.cool_down(DEP, 30, "429", T0 + 100)
    await state.clear_cooldown(DEP)
    assert await state.cooldown(DEP, T0 + 101) is None


async def test_cooldown_escalation_ladder_and_reset_after_success(state: RoutingState) -> None:
    ladder = (1.0, 5.0, 30.0)
    durations = []
    for i in range(5):
        now = T0 + 100 * i
        cd = await state.cool_down(DEP, 0, "500", now, escalate=True, ladder=ladder)
        assert cd.level == i + 1
        durations.append(cd.until - now)
    assert durations == [1.0, 5.0, 30.0, 30.0, 30.0]
    assert (await state.cooldown(DEP, T0 + 401)) == Cooldown(T0 + 430, "500", 5)
    await state.record_result(DEP, True, T0 + 500, POLICY)  # a success resets the level
    cd = await state.cool_down(DEP, 0, "500", T0 + 600, escalate=True, ladder=ladder)
    assert (cd.level, cd.until) == (1, T0 + 601)
    # the base is a floor (an upstream retry-after), and without a ladder it doubles
    cd = await state.cool_down(DEP, 20, "429", T0 + 700, escalate=True, ladder=ladder)
    assert (cd.level, cd.until) == (2, T0 + 720)
    await state.clear_cooldown(DEP)
    untils = [
        (await state.cool_down(DEP, 2, "429", T0 + 1_000 * (i + 1), escalate=True)).until
        - T0
        - 1_000 * (i + 1)
        for i in range(3)
    ]
    assert untils == [2.0, 4.0, 8.0]
    plain = await state.cool_down(DEP, 3, "429", T0 + 5_000)  # not escalating: level kept, not raised
    assert (plain.level, plain.until) == (3, T0 + 5_003)


# Invalid keys ---------------------------------------------------------------------------------


async def test_invalid_marking(state: RoutingState) -> None:
    assert await state.invalid(DEP) is None
    await state.mark_invalid(DEP, "401 invalid api key", T0)
    assert await state.invalid(DEP) == "401 invalid api key"
    assert await state.invalid("groq/key4/llama-3.3-70b") is None
    await state.clear_invalid(DEP)
    assert await state.invalid(DEP) is None


# Circuit breaker ------------------------------------------------------------------------------


async def test_breaker_opens_after_n_failures_within_the_window(state: RoutingState) -> None:
    assert await state.breaker(DEP, T0, POLICY) == BreakerStatus("closed")
    assert (await state.record_result(DEP, False, T0, POLICY)).state == "closed"
    assert await state.record_result(DEP, False, T0 + 10, POLICY) == BreakerStatus("closed", None, 2)
    opened = await state.record_result(DEP, False, T0 + 20, POLICY)
    assert (opened.state, opened.opened_at) == ("open", T0 + 20)
    assert (await state.breaker(DEP, T0 + 49.9, POLICY)).state == "open"
    assert not await state.try_probe(DEP, T0 + 49.9, POLICY)
    half = await state.breaker(DEP, T0 + 50, POLICY)
    assert (half.state, half.opened_at) == ("half_open", T0 + 20)


async def test_breaker_stays_closed_when_failures_spread_beyond_the_window(state: RoutingState) -> None:
    for i in range(6):
        status = await state.record_result(DEP, False, T0 + 40 * i, POLICY)
        assert status.state == "closed"
    assert status.failures == 2  # T0+160 and T0+200 lie within (T0+140, T0+200]
    assert await state.try_probe(DEP, T0 + 200, POLICY)  # closed: everyone may pass


async def _open(state: RoutingState, at: float) -> None:
    for i in range(POLICY.failures):
        await state.record_result(DEP, False, at + i, POLICY)
    assert (await state.breaker(DEP, at + POLICY.failures, POLICY)).state == "open"


async def test_exactly_one_probe_while_half_open_and_a_crashed_probe_frees_it(state: RoutingState) -> None:
    await _open(state, T0)  # opened at T0+2, half-open from T0+32
    assert not any(await asyncio.gather(*(state.try_probe(DEP, T0 + 31, POLICY) for _ in range(20))))
    claims = await asyncio.gather(*(state.try_probe(DEP, T0 + 32, POLICY) for _ in range(50)))
    assert sum(claims) == 1
    assert not await state.try_probe(DEP, T0 + 41.9, POLICY)
    assert await state.try_probe(DEP, T0 + 42, POLICY)  # the claim lapsed after probe_ttl


async def test_half_open_success_closes_and_resets(state: RoutingState) -> None:
    await state.cool_down(DEP, 1, "500", T0, escalate=True)
    await _open(state, T0)
    # results while open (requests sent before it opened) change nothing
    assert (await state.record_result(DEP, True, T0 + 10, POLICY)).state == "open"
    assert await state.try_probe(DEP, T0 + 40, POLICY)
    assert await state.record_result(DEP, True, T0 + 41, POLICY) == BreakerStatus("closed")
    assert await state.breaker(DEP, T0 + 41, POLICY) == BreakerStatus("closed", None, 0)
    assert (await state.snapshot(DEP, T0 + 41, POLICY)).cooldown_level == 0
    # the failure count starts afresh
    assert (await state.record_result(DEP, False, T0 + 42, POLICY)).failures == 1


async def test_half_open_failure_opens_again(state: RoutingState) -> None:
    await _open(state, T0)
    assert await state.try_probe(DEP, T0 + 40, POLICY)
    reopened = await state.record_result(DEP, False, T0 + 45, POLICY)
    assert (reopened.state, reopened.opened_at) == ("open", T0 + 45)
    assert not await state.try_probe(DEP, T0 + 74, POLICY)
    assert (await state.breaker(DEP, T0 + 75, POLICY)).state == "half_open"
    assert await state.try_probe(DEP, T0 + 75, POLICY)  # a fresh probe, though the old claim had not lapsed


# Sticky sessions ------------------------------------------------------------------------------


async def test_sticky_set_get_expire_drop(state: RoutingState) -> None:
    assert await state.sticky_get("s1") is None
    await state.sticky_set("s1", DEP, ttl=60)
    await state.sticky_set("s2", "other", ttl=0.05)
    assert await state.sticky_get("s1") == DEP
    assert await state.sticky_get("s2") == "other"
    await state.sticky_set("s1", "groq/key4/llama-3.3-70b", ttl=60)
    assert await state.sticky_get("s1") == "groq/key4/llama-3.3-70b"
    await asyncio.sleep(0.1)
    assert await state.sticky_get("s2") is None
    await state.sticky_drop("s1")
    await state.sticky_drop("never")
    assert await state.sticky_get("s1") is None


# Load and latency -----------------------------------------------------------------------------


async def test_in_flight_and_latency_ewma(state: RoutingState) -> None:
    for _ in range(3):
        await state.begin(DEP)
    await state.begin("b")
    await state.end(DEP, 100.0, ok=True)
    assert (await state.load([DEP]))[DEP] == LoadStats(2, 100.0)
    await state.end(DEP, 200.0, ok=True)
    load = (await state.load([DEP]))[DEP]
    assert load.in_flight == 1
    assert load.latency_ewma_ms == pytest.approx(120.0)  # 0.2 * 200 + 0.8 * 100
    await state.end(DEP, 5_000.0, ok=False)  # failures do not feed the EWMA
    await state.end(DEP, None, ok=True)
    await state.end(DEP, None, ok=True)  # never below zero
    loads = await state.load([DEP, "b", "idle"])
    assert loads[DEP].in_flight == 0
    assert loads[DEP].latency_ewma_ms == pytest.approx(120.0)
    assert loads["b"] == LoadStats(1, None)
    assert loads["idle"] == LoadStats(0, None)
    await state.begin(DEP)
    assert (await state.load([DEP]))[DEP].in_flight == 1


# Snapshot -------------------------------------------------------------------------------------


async def test_snapshot_reports_everything(state: RoutingState) -> None:
    await state.try_acquire(DEP, Limits(rpm=10), T0 + 1)
    await state.add_tokens(DEP, 42, T0 + 2)
    await state.learn_limits(DEP, Limits(rpd=1_000), ttl=60)
    await state.cool_down(DEP, 5, "429", T0 + 3, escalate=True, ladder=(5.0, 10.0))
    await state.mark_invalid(DEP, "401", T0 + 4)
    await state.record_result(DEP, False, T0 + 5, POLICY)
    await state.begin(DEP)
    await state.begin(DEP)
    await state.end(DEP, 250.0, ok=True)
    snap = await state.snapshot(DEP, T0 + 6, POLICY)
    assert snap.dep == DEP
    assert snap.usage == WindowUsage(1, 1, 42, 42)
    assert snap.learned == Limits(rpd=1_000)
    assert snap.cooldown == Cooldown(T0 + 8, "429", 1)
    assert snap.cooldown_level == 1
    assert (snap.invalid, snap.invalid_since) == ("401", T0 + 4)
    assert snap.breaker == BreakerStatus("closed", None, 1)
    assert snap.load == LoadStats(1, 250.0)
    empty = await state.snapshot("nothing", T0, POLICY)
    assert (empty.usage, empty.learned, empty.cooldown, empty.invalid) == (
        WindowUsage(),
        Limits(),
        None,
        None,
    )
    assert (empty.breaker, empty.load, empty.cooldown_level) == (BreakerStatus("closed"), LoadStats(), 0)


# Memory stays bounded -------------------------------------------------------------------------


async def test_expired_keys_are_purged(harness: Harness) -> None:
    state = harness.state
    for i in range(10_000):
        await state.sticky_set(f"session-{i}", DEP, ttl=0.05)
    await state.learn_limits(DEP, Limits(rpm=1), ttl=0.05)
    await asyncio.sleep(0.1)
    for _ in range(20_000):  # ordinary traffic drives the sweep; nothing is read back
        await state.sticky_get("someone-else")
    assert await harness.count_keys() < 100


async def test_breaker_counts_consecutive_failures(harness: Harness) -> None:
    state = harness.state
    policy = BreakerPolicy(failures=3, window=60.0, open_for=5.0)
    for i in range(20):  # a failure, then a success, over and over: never three in a row
        await state.record_result("busy", i % 2 == 1, 1000.0 + i, policy)
    assert (await state.breaker("busy", 1020.0, policy)).state == "closed"
    for i in range(3):
        await state.record_result("busy", False, 1030.0 + i, policy)
    assert (await state.breaker("busy", 1033.0, policy)).state == "open"
