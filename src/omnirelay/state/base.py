"""The fast shared routing state: one interface, an in-process and (later) a Redis implementation.

Everything the router must share between gateway replicas lives here, per deployment id (a string such
as ``"groq/key3/llama-3.3-70b"``; ids never carry secrets): rate windows, learned ceilings, cool-downs,
invalid keys, a circuit breaker, sticky sessions, in-flight load and latency.

Two clocks, deliberately kept apart:

* ``now`` is the caller's wall clock in Unix seconds (``time.time()``). It aligns the rate windows and is
  compared with the times stored in values (cool-down ``until``, breaker ``opened_at``, probe claims).
  Replicas must keep their clocks NTP-synchronised; a skew of s seconds shifts a window edge by s.
* Key lifetimes (TTLs) are durations applied by the store's own clock (Redis ``PEXPIRE``; the memory
  implementation's injectable monotonic clock). A key therefore always disappears, whatever ``now`` was,
  and a stored time is still checked against ``now`` so a value is never used after it lapsed.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

LimitName = Literal["rpm", "rpd", "tpm", "tpd"]
BreakerState = Literal["closed", "open", "half_open"]

MINUTE = 60.0
DAY = 86_400.0
WINDOW_SLACK = 60.0  # a window key outlives its window by this much (late `release`/`add_tokens`)
LEVEL_TTL = DAY  # a cool-down level is forgotten a day after the last cool-down (a success resets it)
INVALID_TTL = 30 * DAY  # "invalid" has no natural expiry; a month bounds it (re-marked on next 401)
BREAKER_TTL = DAY  # the breaker record of an idle deployment is forgotten (i.e. closes) after a day
INFLIGHT_TTL = 3_600.0  # a counter leaked by a crashed replica fades after an hour without traffic
LATENCY_TTL = DAY
EWMA_ALPHA = 0.2
MAX_DOUBLINGS = 6  # escalation without a ladder: seconds * 2**level, level capped here (x64)


@dataclass(frozen=True, slots=True)
class Limits:
    """Caps per fixed window; ``None`` means no cap."""

    rpm: int | None = None
    rpd: int | None = None
    tpm: int | None = None
    tpd: int | None = None

    def __post_init__(self) -> None:
        for name in ("rpm", "rpd", "tpm", "tpd"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ValueError(f"{name} must be >= 0, got {value}")

    def tighter(self, other: Limits) -> Limits:
        """The element-wise minimum (configured vs learned), ``None`` counting as unlimited."""

        def low(a: int | None, b: int | None) -> int | None:
            return b if a is None else a if b is None else min(a, b)

        return Limits(
            low(self.rpm, other.rpm),
            low(self.rpd, other.rpd),
            low(self.tpm, other.tpm),
            low(self.tpd, other.tpd),
        )


@dataclass(frozen=True, slots=True)
class Admission:
    ok: bool
    retry_after: float = 0.0  # seconds until the blocking window resets (0 when admitted)
    limit: LimitName | None = None  # the cap that refused the request


@dataclass(frozen=True, slots=True)
class WindowUsage:
    requests_minute: int = 0
    requests_day: int = 0
    tokens_minute: int = 0
    tokens_day: int = 0


@dataclass(frozen=True, slots=True)
class Cooldown:
    until: float  # caller clock (`now` scale)
    reason: str
    level: int  # consecutive escalated cool-downs so far, this one included (0: none escalated)


@dataclass(frozen=True, slots=True)
class BreakerPolicy:
    failures: int = 5  # this many consecutive failures within `window` seconds open the breaker
    window: float = 60.0
    open_for: float = 30.0  # then half-open: one probe request decides
    probe_ttl: float = 30.0  # a probe claim lapses after this, so a crashed probe frees the slot

    def __post_init__(self) -> None:
        if self.failures < 1 or self.window <= 0 or self.open_for < 0 or self.probe_ttl <= 0:
            raise ValueError(f"invalid breaker policy: {self}")


@dataclass(frozen=True, slots=True)
class BreakerStatus:
    state: BreakerState
    opened_at: float | None = None  # when it (last) opened, caller clock; None when closed
    failures: int = 0  # failures recorded within the sliding window ending at `now`


@dataclass(frozen=True, slots=True)
class LoadStats:
    in_flight: int = 0
    latency_ewma_ms: float | None = None


@dataclass(frozen=True, slots=True)
class DeploymentState:
    """Everything known about one deployment, for operators."""

    dep: str
    usage: WindowUsage
    learned: Limits
    cooldown: Cooldown | None
    cooldown_level: int
    invalid: str | None
    invalid_since: float | None
    breaker: BreakerStatus
    load: LoadStats


def window_index(now: float, length: float) -> int:
    """Fixed windows aligned to the epoch: minutes start at :00, days at 00:00 UTC (Unix time has no
    leap seconds, so ``now // 86400`` is the UTC day)."""
    return math.floor(now / length)


def window_reset(now: float, length: float) -> float:
    """Seconds from ``now`` until the window containing ``now`` ends."""
    return (window_index(now, length) + 1) * length - now


def escalation_seconds(base: float, ladder: tuple[float, ...] | None, level: int) -> float:
    """The cool-down for the ``level``-th consecutive escalation (0-based).

    With a ladder: ``ladder[min(level, len - 1)]``, never shorter than ``base`` (an upstream's
    retry-after is a floor). Without: ``base * 2**min(level, MAX_DOUBLINGS)``.
    """
    if ladder:
        return max(base, ladder[min(level, len(ladder) - 1)])
    return base * (1 << min(level, MAX_DOUBLINGS))


def ewma(previous: float | None, sample: float) -> float:
    return sample if previous is None else EWMA_ALPHA * sample + (1 - EWMA_ALPHA) * previous


class RoutingState(ABC):
    """Shared, atomic routing state. Every operation is atomic and every key it writes has a TTL.

    Redis implementation (the scale-out issue): every key of a deployment carries the hash tag
    ``{dep}`` so one Lua script may touch all of them in Redis Cluster (an id containing ``{`` or ``}``
    is hex-encoded first); the prefix carries a schema version (``or1:``) and each Lua script's name a
    version too, for rolling deploys. Scripts receive ``now`` and the TTLs as ARGV (computed by the
    Python side with the helpers of this module), never read-modify-write across round trips.

    Keys (TTLs are durations, ``PEXPIRE``):

    * ``or1:{dep}:m:<minute index>`` / ``or1:{dep}:d:<day index>``: HASH ``r`` (requests), ``t``
      (tokens); TTL = time left in the window + ``WINDOW_SLACK``.
    * ``or1:{dep}:learn:<rpm|rpd|tpm|tpd>``: STRING int; TTL given to ``learn_limits``.
    * ``or1:{dep}:cd``: HASH ``until``, ``reason``; TTL = until - now.
      ``or1:{dep}:lvl``: STRING int, the escalation level; TTL ``LEVEL_TTL``.
    * ``or1:{dep}:bad``: HASH ``reason``, ``since``; TTL ``INVALID_TTL``.
    * ``or1:{dep}:br``: HASH ``state`` (closed|open), ``opened_at``, ``probe_until``; TTL
      ``BREAKER_TTL``. ``or1:{dep}:brf``: LIST of the newest ``policy.failures`` failure times; TTL
      ``policy.window``.
    * ``or1:{dep}:inflight``: STRING int; TTL ``INFLIGHT_TTL``. ``or1:{dep}:lat``: STRING float; TTL
      ``LATENCY_TTL``.
    * ``or1:sticky:{<session>}``: STRING dep; TTL given to ``sticky_set``.

    Per operation, one round trip each:

    * ``try_acquire``: Lua over the minute and day keys: HMGET r,t of both; if any capped count is at
      its cap return the blocking cap (the Python side turns it into ``retry_after``); else HINCRBY r on
      both and PEXPIRE both; return ok.
    * ``release``: Lua: for each of the two keys, if it EXISTS and r > 0 then HINCRBY r -1 (never creates
      a key, never goes below zero).
    * ``add_tokens``: MULTI: HINCRBY t on both keys + PEXPIRE both.
    * ``window_usage``: HMGET of both keys in one pipeline (reads need no cross-key atomicity).
    * ``learn_limits``: MULTI of ``SET ... PX ttl`` per field given. ``learned_limits``: MGET.
    * ``cool_down``: Lua: GET lvl; duration = seconds, or ``escalation_seconds(...)`` — the ladder goes
      in ARGV and the script does the same arithmetic — with INCR lvl + PEXPIRE lvl when escalating;
      read ``cd``; keep the later ``until`` (and its reason); HSET + PEXPIRE cd; return until, reason,
      level.
    * ``cooldown``: Lua (or pipeline) HMGET cd + GET lvl; None when until <= now.
      ``clear_cooldown``: DEL cd lvl.
    * ``mark_invalid``: HSET bad + PEXPIRE. ``invalid``: HGET. ``clear_invalid``: DEL.
    * ``record_result``: Lua over ``br``, ``brf``, ``lvl``: closed + ok: DEL lvl. closed + failure:
      LPUSH brf now, LTRIM 0 N-1, PEXPIRE; if LLEN = N and LINDEX N-1 > now - window: HSET br
      state=open opened_at=now + PEXPIRE. Open and now < opened_at + open_for: ignore (a result of a
      request sent before it opened). Half-open + ok: DEL br brf lvl (closed). Half-open + failure:
      HSET opened_at=now probe_until=0 (open again).
    * ``breaker``: HMGET br + LRANGE brf (pipeline); half-open is derived: open and now >= opened_at +
      open_for.
    * ``try_probe``: Lua: no record / closed: return 1; open: 0; half-open: if probe_until > now return 0
      else HSET probe_until = now + probe_ttl, return 1 — the first of concurrent callers wins.
    * ``sticky_*``: GET / SET PX / DEL.
    * ``begin``: INCR inflight + PEXPIRE (MULTI). ``end``: Lua: DECR floored at 0 and, when ok with a
      latency, lat = alpha * sample + (1 - alpha) * lat (or the sample when missing), PEXPIRE both.
    * ``load``: one pipeline of MGET inflight lat per deployment (a pipeline per cluster node).
    * ``snapshot``: one Lua script (all keys share the ``{dep}`` slot) or one read pipeline.

    Known limit: an in-flight increment of a crashed replica lingers until ``INFLIGHT_TTL`` passes
    without traffic on that deployment.
    """

    # Rate windows -------------------------------------------------------------------------------
    @abstractmethod
    async def try_acquire(self, dep: str, limits: Limits, now: float) -> Admission:
        """Admit one request if every cap has room, counting it in the minute and the UTC-day window.

        A request cap has room while the window's count is < the cap; a token cap while the tokens
        already reported in the window are < the cap. When refused, nothing changes and the answer
        names the blocking cap whose window resets last (all must clear), with the seconds until then.
        """

    @abstractmethod
    async def add_tokens(self, dep: str, tokens: int, now: float) -> None:
        """Count tokens in the minute and day windows containing ``now``."""

    @abstractmethod
    async def release(self, dep: str, now: float) -> None:
        """Undo one ``try_acquire`` (the request never reached the upstream).

        Pass the ``now`` given to that ``try_acquire`` so the same windows are decremented; a window
        already gone is left alone and counts never go below zero.
        """

    @abstractmethod
    async def window_usage(self, dep: str, now: float) -> WindowUsage: ...

    # Learned ceilings ---------------------------------------------------------------------------
    @abstractmethod
    async def learn_limits(self, dep: str, limits: Limits, ttl: float) -> None:
        """Store caps learned from upstream headers; each given (non-None) field is kept ``ttl``
        seconds, the others are left as they are."""

    @abstractmethod
    async def learned_limits(self, dep: str) -> Limits: ...

    # Cool-downs ---------------------------------------------------------------------------------
    @abstractmethod
    async def cool_down(
        self,
        dep: str,
        seconds: float,
        reason: str,
        now: float,
        escalate: bool = False,
        ladder: tuple[float, ...] | None = None,
    ) -> Cooldown:
        """Cool the deployment until ``now + seconds``.

        With ``escalate``, the duration is ``escalation_seconds(seconds, ladder, level)`` for the
        current level, and the level goes up by one (it resets on a success, see ``record_result``).
        An existing cool-down that ends later is never shortened. Returns the cool-down in force.
        """

    @abstractmethod
    async def cooldown(self, dep: str, now: float) -> Cooldown | None:
        """The cool-down in force at ``now``, or None."""

    @abstractmethod
    async def clear_cooldown(self, dep: str) -> None:
        """End the cool-down and reset its escalation level."""

    # Invalid keys -------------------------------------------------------------------------------
    @abstractmethod
    async def mark_invalid(self, dep: str, reason: str, now: float) -> None:
        """Mark the deployment's key unusable (e.g. a 401); kept ``INVALID_TTL`` (30 days)."""

    @abstractmethod
    async def invalid(self, dep: str) -> str | None:
        """The reason it was marked invalid, or None."""

    @abstractmethod
    async def clear_invalid(self, dep: str) -> None: ...

    # Circuit breaker ----------------------------------------------------------------------------
    @abstractmethod
    async def record_result(self, dep: str, ok: bool, now: float, policy: BreakerPolicy) -> BreakerStatus:
        """Feed one upstream outcome to the breaker; returns its status afterwards.

        Closed: a failure is logged; ``policy.failures`` consecutive failures within ``policy.window``
        seconds open it. A success clears the logged failures (so a busy deployment with a low error
        rate never trips) and resets the cool-down escalation level. Open (before ``open_for``): results are
        ignored. Half-open: a success closes it (failures and cool-down level reset), a failure opens it
        again for another ``open_for``.
        """

    @abstractmethod
    async def breaker(self, dep: str, now: float, policy: BreakerPolicy) -> BreakerStatus: ...

    @abstractmethod
    async def try_probe(self, dep: str, now: float, policy: BreakerPolicy) -> bool:
        """May a request go to this deployment? Closed: yes. Open: no. Half-open: yes for exactly one
        caller (an atomic claim lapsing after ``policy.probe_ttl``), no for the others."""

    # Sticky sessions ----------------------------------------------------------------------------
    @abstractmethod
    async def sticky_get(self, session: str) -> str | None: ...

    @abstractmethod
    async def sticky_set(self, session: str, dep: str, ttl: float) -> None: ...

    @abstractmethod
    async def sticky_drop(self, session: str) -> None: ...

    # Load and latency ---------------------------------------------------------------------------
    @abstractmethod
    async def begin(self, dep: str) -> None:
        """One more request in flight."""

    @abstractmethod
    async def end(self, dep: str, latency_ms: float | None, ok: bool) -> None:
        """One fewer in flight (never below zero); a successful call's latency feeds the EWMA
        (alpha ``EWMA_ALPHA``)."""

    @abstractmethod
    async def load(self, deps: Sequence[str]) -> dict[str, LoadStats]:
        """In-flight counts and latency for many deployments in one round trip."""

    # Operators ----------------------------------------------------------------------------------
    @abstractmethod
    async def snapshot(self, dep: str, now: float, policy: BreakerPolicy) -> DeploymentState: ...

    @abstractmethod
    async def close(self) -> None: ...
