"""The attempt loop: which deployment serves a request, and what a failure does to the next one.

For each request the dispatcher walks the route's tiers (fallback-chain position, then priority),
ordering each tier by the route's strategy (weighted random share, least busy, lowest latency), with
the conversation's sticky deployment first. A deployment is tried only if it is viable: its key is
not marked invalid, it is not cooling down, its breaker lets a call through, and the gateway's own
counts are under its rpm/rpd/tpm/tpd caps (configured, or learned from the vendor's headers).

A failure before any byte reached the client is classified (`routing.failures`) and applied —
rate limit: cool-down honouring retry-after or an escalating ladder; exhausted quota: the long
ladder; 401/403: the key leaves rotation; 5xx/timeouts/connection errors: the breaker — and, when
the route's `fallback_on` allows it, the next viable deployment is tried, within `max_attempts` and
the deadline. When every candidate is cooling down, the dispatcher waits for the first to recover if
that fits the deadline, and otherwise answers 429 (or 503) with a retry-after the client can use.
All shared state lives behind `state.RoutingState`, so replicas can share it.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from omnirelay.call import Call
from omnirelay.config import RoutingConfig
from omnirelay.errors import GatewayError, UpstreamError
from omnirelay.routing.failures import Verdict, classify, learned_limits_from_headers
from omnirelay.routing.router import Deployment, Route
from omnirelay.state.base import BreakerPolicy, Limits, RoutingState

log = logging.getLogger("omnirelay.routing")
T = TypeVar("T")

# Which failure kinds each `fallback_on` trigger covers. A key refused as invalid always moves on.
TRIGGERS = {
    "rate_limit": ("rate_limit", "quota_exhausted"),
    "server": ("server",),
    "timeout": ("timeout",),
    "connection": ("connection", "bad_response"),
    "context_window": ("context_window",),
    "content_policy": ("content_policy",),
}
LEARNED_TTL = 6 * 3600.0
# Headers whose presence means an answer announces rate limits (checked before parsing any).
LIMIT_MARKERS = (
    "x-ratelimit-limit-requests",
    "x-ratelimit-limit-tokens",
    "x-ratelimit-limit",
    "x-ratelimit-limit-requests-day",
    "anthropic-ratelimit-requests-limit",
)


@dataclass(slots=True)
class LastError:
    at: float
    kind: str
    reason: str


class Dispatcher:
    def __init__(self, state: RoutingState, config: RoutingConfig) -> None:
        self.state = state
        self.config = config
        b = config.breaker
        self.policy = BreakerPolicy(failures=b.failures, window=b.window_seconds, open_for=b.open_seconds)
        self.last_error: dict[str, LastError] = {}
        self._turns: dict[tuple[str, ...], dict[str, float]] = {}

    # --- ordering ---------------------------------------------------------------------------------

    async def _order(self, route: Route, session: str | None, skip: set[str]) -> AsyncIterator[Deployment]:
        if session is not None:
            sticky = await self.state.sticky_get(session)
            for dep in route.deployments:
                if dep.id == sticky and dep.id not in skip:
                    skip.add(dep.id)
                    yield dep
                    break
        for tier in route.tiers:
            deps = [d for d in tier if d.id not in skip]
            if len(deps) > 1:
                deps = await self._sort(route.strategy, deps)
            for dep in deps:
                if dep.id not in skip:
                    skip.add(dep.id)
                    yield dep

    def _rotate(self, deps: list[Deployment]) -> list[Deployment]:
        """Smooth weighted round robin: over any run of requests each deployment leads in proportion
        to its weight, spread evenly (keys of one provider are used in turn)."""
        current = self._turns.setdefault(tuple(d.id for d in deps), {d.id: 0.0 for d in deps})
        total = 0.0
        for dep in deps:
            current[dep.id] += dep.weight
            total += dep.weight
        ordered = sorted(deps, key=lambda d: current[d.id], reverse=True)
        current[ordered[0].id] -= total
        return ordered

    async def _sort(self, strategy: str, deps: list[Deployment]) -> list[Deployment]:
        if strategy == "weighted":
            # Weighted random order (Efraimidis-Spirakis): a deployment's share of first place is its weight.
            return sorted(deps, key=lambda d: random.random() ** (1.0 / d.weight), reverse=True)
        keyed = self._rotate(deps)
        if strategy in ("least-busy", "lowest-latency"):
            stats = await self.state.load([d.id for d in keyed])
            if strategy == "least-busy":
                keyed.sort(key=lambda d: stats[d.id].in_flight)
            else:
                keyed.sort(key=lambda d: stats[d.id].latency_ewma_ms or 0.0)
        return keyed

    # --- viability --------------------------------------------------------------------------------

    async def _blocked(self, dep: Deployment, now: float) -> tuple[float | None, str] | None:
        """None when the deployment may be tried now; else (when it may recover, why)."""
        invalid = await self.state.invalid(dep.id)
        if invalid is not None:
            return None, f"{dep.label}: key out of rotation ({invalid})"
        cooldown = await self.state.cooldown(dep.id, now)
        if cooldown is not None:
            return cooldown.until, f"{dep.label}: cooling down ({cooldown.reason})"
        limits = dep.limits.tighter(await self.state.learned_limits(dep.id))
        admission = await self.state.try_acquire(dep.id, limits, now)
        if not admission.ok:
            return now + admission.retry_after, f"{dep.label}: at its {admission.limit} cap"
        # Last, so that a half-open breaker's single probe is claimed only by a call that goes out.
        if not await self.state.try_probe(dep.id, now, self.policy):
            await self.state.release(dep.id, now)
            status = await self.state.breaker(dep.id, now, self.policy)
            ready = (status.opened_at or now) + self.policy.open_for
            return ready, f"{dep.label}: circuit open"
        return None

    # --- failures ---------------------------------------------------------------------------------

    async def _apply(self, dep: Deployment, verdict: Verdict, siblings: list[Deployment], now: float) -> None:
        self.last_error[dep.id] = LastError(now, verdict.kind, verdict.reason)
        cfg = self.config
        targets = siblings if verdict.scope == "provider" else [dep]
        if verdict.learned:
            await self._learn(dep, verdict.learned)
        if verdict.kind in ("rate_limit", "quota_exhausted"):
            # The vendor's own retry-after is honoured as given; without one the ladder escalates.
            ladder = cfg.rate_limit_ladder if verdict.kind == "rate_limit" else cfg.quota_ladder
            for target in targets:
                if verdict.retry_after:
                    await self.state.cool_down(target.id, verdict.retry_after, verdict.reason, now)
                else:
                    await self.state.cool_down(
                        target.id, 0.0, verdict.reason, now, escalate=True, ladder=tuple(ladder)
                    )
        elif verdict.kind == "auth":
            for target in targets:
                await self.state.mark_invalid(target.id, verdict.reason, now)
        if verdict.kind in ("server", "timeout", "connection", "bad_response"):
            for target in targets:
                await self.state.record_result(target.id, False, now, self.policy)
        elif (await self.state.breaker(dep.id, now, self.policy)).state == "half_open":
            # The probe reached a live upstream (it answered, if not with a result): the breaker closes.
            await self.state.record_result(dep.id, True, now, self.policy)

    def _falls_back(self, route: Route, verdict: Verdict) -> bool:
        if verdict.kind == "auth":
            return True
        if not verdict.retryable and verdict.kind not in ("context_window", "content_policy"):
            return False
        return any(verdict.kind in TRIGGERS.get(t, ()) for t in route.fallback_on)

    # --- the loop ---------------------------------------------------------------------------------

    async def run(
        self, call: Call, route: Route, fn: Callable[[Deployment], Awaitable[T]], session: str | None = None
    ) -> T:
        cfg = self.config
        max_attempts = route.max_attempts or cfg.max_attempts
        deadline = time.monotonic() + (route.deadline_seconds or cfg.deadline_seconds)
        tried: dict[str, int] = {}  # deployment → attempts on it in this request
        last: UpstreamError | None = None
        while True:
            waits: list[tuple[float | None, str]] = []
            skip: set[str] = set()
            failed_now: list[str] = []  # deployments that failed in this pass
            async for dep in self._order(route, session, skip):
                now = time.time()
                blocked = await self._blocked(dep, now)
                if blocked is not None:
                    # A deployment that already failed twice in this request is not waited for again.
                    if tried.get(dep.id, 0) < 2:
                        waits.append(blocked)
                    continue
                if tried.get(dep.id):
                    # Retrying the same deployment: jittered exponential backoff, within the deadline.
                    pause = cfg.backoff_seconds * 2 ** (tried[dep.id] - 1) * random.uniform(0.5, 1.5)
                    if time.monotonic() + pause >= deadline:
                        await self.state.release(dep.id, now)
                        break
                    await asyncio.sleep(pause)
                tried[dep.id] = tried.get(dep.id, 0) + 1
                call.attempts += 1
                call.served_by(dep)
                await self.state.begin(dep.id)
                try:
                    result = await fn(dep)
                except UpstreamError as exc:
                    await self.state.end(dep.id, None, False)
                    failed_now.append(dep.id)
                    verdict = classify(exc, now)
                    siblings = [d for d in route.deployments if d.provider is dep.provider]
                    await self._apply(dep, verdict, siblings, now)
                    last = exc
                    log.warning(
                        "request %s: %s failed: %s (%s)",
                        call.request_id,
                        dep.label,
                        verdict.reason,
                        verdict.kind,
                    )
                    if not self._falls_back(route, verdict):
                        raise
                    if call.attempts >= max_attempts or time.monotonic() >= deadline:
                        raise
                    continue
                except BaseException:
                    await self.state.end(dep.id, None, False)
                    raise
                call.deployment = dep
                if session is not None and cfg.sticky:
                    await self.state.sticky_set(session, dep.id, cfg.sticky_ttl_seconds)
                return result
            # Nothing left to try now: wait for the first deployment to recover (a cool-down this
            # request caused included, once) if that fits both the deadline and max_wait_seconds.
            for dep_id in failed_now:
                if tried[dep_id] == 1 and (cooldown := await self.state.cooldown(dep_id, time.time())):
                    waits.append((cooldown.until, f"{dep_id}: cooling down ({cooldown.reason})"))
            recover = [t for t, _ in waits if t is not None]
            remaining = min(deadline - time.monotonic(), cfg.max_wait_seconds)
            if recover and cfg.wait_for_recovery and call.attempts < max_attempts:
                delay = max(min(recover) - time.time(), 0.0)
                if delay < remaining:
                    await asyncio.sleep(delay + 0.01)
                    continue
            if last is not None and (not recover or last.status == 429):
                raise last  # the upstream's own answer says most (its 429 carries its retry-after)
            raise self._unavailable(route, waits, recover, last)

    def _unavailable(
        self,
        route: Route,
        waits: list[tuple[float | None, str]],
        recover: list[float],
        last: UpstreamError | None,
    ) -> GatewayError:
        reasons = "; ".join(reason for _, reason in waits[:5]) or "no deployment configured"
        if recover:
            retry_after = max(1, math.ceil(min(recover) - time.time()))
            return GatewayError(
                f"Every deployment of {route.name!r} is busy or rate limited right now: {reasons}.",
                status=429,
                type="rate_limit_error",
                code="rate_limit_exceeded",
                headers={"retry-after": str(retry_after)},
            )
        return GatewayError(
            f"No deployment of {route.name!r} can serve requests: {reasons}.",
            status=503,
            type="server_error",
            code="no_available_deployment",
        )

    # --- after the response -----------------------------------------------------------------------

    async def settle(self, call: Call) -> None:
        """Account a finished request on the deployment that served it (streams: after the last byte)."""
        dep = call.deployment
        if dep is None:
            return
        now = time.time()
        ok = call.status < 500 or call.status == 499
        latency = (time.perf_counter() - call.started) * 1000 if ok else None
        await self.state.end(dep.id, latency, ok)
        await self.state.record_result(dep.id, ok, now, self.policy)
        if call.usage is not None and call.usage.total_tokens:
            await self.state.add_tokens(dep.id, call.usage.total_tokens, now)
        headers = call.upstream_headers
        if headers is not None and any(h in headers for h in LIMIT_MARKERS):
            # The vendor announces the key's real ceilings on ordinary answers too: learn them.
            await self._learn(dep, learned_limits_from_headers(headers, now))

    async def _learn(self, dep: Deployment, learned: dict[str, int]) -> None:
        known = {k: v for k, v in learned.items() if k in ("rpm", "rpd", "tpm", "tpd")}
        if known:
            await self.state.learn_limits(dep.id, Limits(**known), LEARNED_TTL)
