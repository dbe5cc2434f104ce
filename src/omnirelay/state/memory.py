"""The in-process routing state: plain dicts, for one gateway process.

Atomicity: no method awaits anything, so under asyncio every operation runs to completion before another
starts (it is not thread-safe; use it from one event loop). Each entry carries an expiry on the store
clock (``clock``, monotonic by default): an expired entry is dropped when read, and a sweep removes the
rest. The sweep runs once the number of operations since the last one reaches the number of entries
left by it (at least ``sweep_every``), so it costs amortised O(1) per operation and the store never holds
much more than twice its live entries plus ``sweep_every``.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

from omnirelay.state.base import (
    BREAKER_TTL,
    DAY,
    INFLIGHT_TTL,
    INVALID_TTL,
    LATENCY_TTL,
    LEVEL_TTL,
    MINUTE,
    WINDOW_SLACK,
    Admission,
    BreakerPolicy,
    BreakerStatus,
    Cooldown,
    DeploymentState,
    LimitName,
    Limits,
    LoadStats,
    RoutingState,
    WindowUsage,
    escalation_seconds,
    ewma,
    window_index,
    window_reset,
)

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

_LIMIT_NAMES: tuple[LimitName, ...] = ("rpm", "rpd", "tpm", "tpd")


class _Expiring(Generic[K, V]):
    """A dict whose entries lapse at a store-clock time."""

    __slots__ = ("items",)

    def __init__(self) -> None:
        self.items: dict[K, tuple[V, float]] = {}

    def get(self, key: K, at: float) -> V | None:
        item = self.items.get(key)
        if item is None:
            return None
        if item[1] <= at:
            del self.items[key]
            return None
        return item[0]

    def put(self, key: K, value: V, expires: float) -> None:
        self.items[key] = (value, expires)

    def pop(self, key: K) -> None:
        self.items.pop(key, None)

    def sweep(self, at: float) -> None:
        dead = [key for key, (_, expires) in self.items.items() if expires <= at]
        for key in dead:
            del self.items[key]

    def __len__(self) -> int:
        return len(self.items)


class _Sweepable(Protocol):
    def sweep(self, at: float) -> None: ...

    def __len__(self) -> int: ...


@dataclass(slots=True)
class _Breaker:
    failures: deque[float]  # the newest `policy.failures` failure times
    open: bool = False
    opened_at: float = 0.0
    probe_until: float = 0.0  # a half-open probe is claimed until then (caller clock)


_WindowKey = tuple[str, str, int]  # (dep, "m" | "d", window index)


@dataclass(slots=True)
class _Maps:
    windows: _Expiring[_WindowKey, list[int]] = field(default_factory=_Expiring)  # [requests, tokens]
    learned: _Expiring[tuple[str, LimitName], int] = field(default_factory=_Expiring)
    cooldowns: _Expiring[str, tuple[float, str]] = field(default_factory=_Expiring)  # (until, reason)
    levels: _Expiring[str, int] = field(default_factory=_Expiring)
    invalid: _Expiring[str, tuple[str, float]] = field(default_factory=_Expiring)  # (reason, since)
    breakers: _Expiring[str, _Breaker] = field(default_factory=_Expiring)
    sticky: _Expiring[str, str] = field(default_factory=_Expiring)
    inflight: _Expiring[str, int] = field(default_factory=_Expiring)
    latency: _Expiring[str, float] = field(default_factory=_Expiring)

    def all(self) -> tuple[_Sweepable, ...]:
        return (
            self.windows,
            self.learned,
            self.cooldowns,
            self.levels,
            self.invalid,
            self.breakers,
            self.sticky,
            self.inflight,
            self.latency,
        )


class MemoryRoutingState(RoutingState):
    def __init__(self, *, clock: Callable[[], float] = time.monotonic, sweep_every: int = 1024) -> None:
        if sweep_every < 1:
            raise ValueError("sweep_every must be >= 1")
        self._clock = clock
        self._sweep_every = sweep_every
        self._ops = 0
        self._next_sweep = sweep_every
        self._m = _Maps()

    # Bookkeeping --------------------------------------------------------------------------------
    def size(self) -> int:
        """Entries held, expired ones not yet swept included (for tests and metrics)."""
        return sum(len(m) for m in self._m.all())

    def _tick(self) -> float:
        """Count one operation, sweep when due; returns the store clock."""
        at = self._clock()
        self._ops += 1
        if self._ops >= self._next_sweep:
            for m in self._m.all():
                m.sweep(at)
            self._ops = 0
            self._next_sweep = max(self._sweep_every, self.size())
        return at

    # Rate windows -------------------------------------------------------------------------------
    def _window(self, dep: str, now: float, at: float, day: bool) -> tuple[_WindowKey, list[int] | None]:
        key = (dep, "d" if day else "m", window_index(now, DAY if day else MINUTE))
        return key, self._m.windows.get(key, at)

    def _keep_window(self, key: _WindowKey, counts: list[int], now: float, at: float) -> None:
        length = DAY if key[1] == "d" else MINUTE
        self._m.windows.put(key, counts, at + window_reset(now, length) + WINDOW_SLACK)

    async def try_acquire(self, dep: str, limits: Limits, now: float) -> Admission:
        at = self._tick()
        m_key, minute = self._window(dep, now, at, day=False)
        d_key, day = self._window(dep, now, at, day=True)
        minute = minute if minute is not None else [0, 0]
        day = day if day is not None else [0, 0]
        checks: tuple[tuple[LimitName, int | None, int, float], ...] = (
            ("rpm", limits.rpm, minute[0], MINUTE),
            ("tpm", limits.tpm, minute[1], MINUTE),
            ("rpd", limits.rpd, day[0], DAY),
            ("tpd", limits.tpd, day[1], DAY),
        )
        blocked: tuple[float, LimitName] | None = None
        for name, cap, used, length in checks:
            if cap is not None and used >= cap:
                wait = window_reset(now, length)
                if blocked is None or wait > blocked[0]:
                    blocked = (wait, name)
        if blocked is not None:
            return Admission(ok=False, retry_after=blocked[0], limit=blocked[1])
        minute[0] += 1
        day[0] += 1
        self._keep_window(m_key, minute, now, at)
        self._keep_window(d_key, day, now, at)
        return Admission(ok=True)

    async def add_tokens(self, dep: str, tokens: int, now: float) -> None:
        at = self._tick()
        if tokens <= 0:
            return
        for day in (False, True):
            key, counts = self._window(dep, now, at, day)
            counts = counts if counts is not None else [0, 0]
            counts[1] += tokens
            self._keep_window(key, counts, now, at)

    async def release(self, dep: str, now: float) -> None:
        at = self._tick()
        for day in (False, True):
            _, counts = self._window(dep, now, at, day)
            if counts is not None and counts[0] > 0:
                counts[0] -= 1

    def _usage(self, dep: str, now: float, at: float) -> WindowUsage:
        _, minute = self._window(dep, now, at, day=False)
        _, day = self._window(dep, now, at, day=True)
        minute = minute or [0, 0]
        day = day or [0, 0]
        return WindowUsage(minute[0], day[0], minute[1], day[1])

    async def window_usage(self, dep: str, now: float) -> WindowUsage:
        return self._usage(dep, now, self._tick())

    # Learned ceilings ---------------------------------------------------------------------------
    async def learn_limits(self, dep: str, limits: Limits, ttl: float) -> None:
        at = self._tick()
        for name in _LIMIT_NAMES:
            value: int | None = getattr(limits, name)
            if value is not None:
                self._m.learned.put((dep, name), value, at + ttl)

    def _learned(self, dep: str, at: float) -> Limits:
        get = self._m.learned.get
        return Limits(
            get((dep, "rpm"), at), get((dep, "rpd"), at), get((dep, "tpm"), at), get((dep, "tpd"), at)
        )

    async def learned_limits(self, dep: str) -> Limits:
        return self._learned(dep, self._tick())

    # Cool-downs ---------------------------------------------------------------------------------
    async def cool_down(
        self,
        dep: str,
        seconds: float,
        reason: str,
        now: float,
        escalate: bool = False,
        ladder: tuple[float, ...] | None = None,
    ) -> Cooldown:
        at = self._tick()
        level = self._m.levels.get(dep, at) or 0
        duration = seconds
        if escalate:
            duration = escalation_seconds(seconds, ladder, level)
            level += 1
            self._m.levels.put(dep, level, at + LEVEL_TTL)
        until, why = now + max(0.0, duration), reason
        current = self._m.cooldowns.get(dep, at)
        if current is not None and current[0] > until:
            until, why = current
        self._m.cooldowns.put(dep, (until, why), at + (until - now))
        return Cooldown(until, why, level)

    def _cooldown(self, dep: str, now: float, at: float) -> Cooldown | None:
        current = self._m.cooldowns.get(dep, at)
        if current is None or current[0] <= now:
            return None
        return Cooldown(current[0], current[1], self._m.levels.get(dep, at) or 0)

    async def cooldown(self, dep: str, now: float) -> Cooldown | None:
        return self._cooldown(dep, now, self._tick())

    async def clear_cooldown(self, dep: str) -> None:
        self._tick()
        self._m.cooldowns.pop(dep)
        self._m.levels.pop(dep)

    # Invalid keys -------------------------------------------------------------------------------
    async def mark_invalid(self, dep: str, reason: str, now: float) -> None:
        at = self._tick()
        self._m.invalid.put(dep, (reason, now), at + INVALID_TTL)

    async def invalid(self, dep: str) -> str | None:
        marked = self._m.invalid.get(dep, self._tick())
        return marked[0] if marked is not None else None

    async def clear_invalid(self, dep: str) -> None:
        self._tick()
        self._m.invalid.pop(dep)

    # Circuit breaker ----------------------------------------------------------------------------
    @staticmethod
    def _status(b: _Breaker | None, now: float, policy: BreakerPolicy) -> BreakerStatus:
        if b is None:
            return BreakerStatus("closed")
        failures = sum(1 for t in b.failures if t > now - policy.window)
        if not b.open:
            return BreakerStatus("closed", None, failures)
        if now >= b.opened_at + policy.open_for:
            return BreakerStatus("half_open", b.opened_at, failures)
        return BreakerStatus("open", b.opened_at, failures)

    async def record_result(self, dep: str, ok: bool, now: float, policy: BreakerPolicy) -> BreakerStatus:
        at = self._tick()
        b = self._m.breakers.get(dep, at)
        if b is None or not b.open:
            if ok:
                self._m.levels.pop(dep)
                if b is not None:
                    b.failures.clear()  # the breaker counts consecutive failures
                return self._status(b, now, policy)
            if b is None:
                b = _Breaker(deque(maxlen=policy.failures))
            elif b.failures.maxlen != policy.failures:
                b.failures = deque(b.failures, maxlen=policy.failures)
            b.failures.append(now)
            if len(b.failures) == policy.failures and min(b.failures) > now - policy.window:
                b.open, b.opened_at, b.probe_until = True, now, 0.0
            self._m.breakers.put(dep, b, at + (BREAKER_TTL if b.open else policy.window))
            return self._status(b, now, policy)
        if now < b.opened_at + policy.open_for:
            return self._status(b, now, policy)  # from a request sent before it opened: ignored
        if ok:
            self._m.breakers.pop(dep)
            self._m.levels.pop(dep)
            return BreakerStatus("closed")
        b.opened_at, b.probe_until = now, 0.0
        self._m.breakers.put(dep, b, at + BREAKER_TTL)
        return self._status(b, now, policy)

    async def breaker(self, dep: str, now: float, policy: BreakerPolicy) -> BreakerStatus:
        return self._status(self._m.breakers.get(dep, self._tick()), now, policy)

    async def try_probe(self, dep: str, now: float, policy: BreakerPolicy) -> bool:
        b = self._m.breakers.get(dep, self._tick())
        if b is None or not b.open:
            return True
        if now < b.opened_at + policy.open_for or b.probe_until > now:
            return False
        b.probe_until = now + policy.probe_ttl
        return True

    # Sticky sessions ----------------------------------------------------------------------------
    async def sticky_get(self, session: str) -> str | None:
        return self._m.sticky.get(session, self._tick())

    async def sticky_set(self, session: str, dep: str, ttl: float) -> None:
        at = self._tick()
        self._m.sticky.put(session, dep, at + ttl)

    async def sticky_drop(self, session: str) -> None:
        self._tick()
        self._m.sticky.pop(session)

    # Load and latency ---------------------------------------------------------------------------
    async def begin(self, dep: str) -> None:
        at = self._tick()
        self._m.inflight.put(dep, (self._m.inflight.get(dep, at) or 0) + 1, at + INFLIGHT_TTL)

    async def end(self, dep: str, latency_ms: float | None, ok: bool) -> None:
        at = self._tick()
        n = self._m.inflight.get(dep, at) or 0
        if n > 1:
            self._m.inflight.put(dep, n - 1, at + INFLIGHT_TTL)
        else:
            self._m.inflight.pop(dep)
        if ok and latency_ms is not None:
            self._m.latency.put(dep, ewma(self._m.latency.get(dep, at), latency_ms), at + LATENCY_TTL)

    def _load(self, dep: str, at: float) -> LoadStats:
        return LoadStats(self._m.inflight.get(dep, at) or 0, self._m.latency.get(dep, at))

    async def load(self, deps: Sequence[str]) -> dict[str, LoadStats]:
        at = self._tick()
        return {dep: self._load(dep, at) for dep in deps}

    # Operators ----------------------------------------------------------------------------------
    async def snapshot(self, dep: str, now: float, policy: BreakerPolicy) -> DeploymentState:
        at = self._tick()
        marked = self._m.invalid.get(dep, at)
        return DeploymentState(
            dep=dep,
            usage=self._usage(dep, now, at),
            learned=self._learned(dep, at),
            cooldown=self._cooldown(dep, now, at),
            cooldown_level=self._m.levels.get(dep, at) or 0,
            invalid=marked[0] if marked is not None else None,
            invalid_since=marked[1] if marked is not None else None,
            breaker=self._status(self._m.breakers.get(dep, at), now, policy),
            load=self._load(dep, at),
        )

    async def close(self) -> None:
        self._m = _Maps()
