"""Health probes: a cheap authenticated request per provider key, classified as healthy,
rate_limited, invalid or error, and applied to the routing state.

A healthy answer brings a deployment back (clears an invalid mark, a cool-down and an open breaker),
so a pool whose every key was taken out recovers by itself. Background probing is per provider
(`health_check: true`; off by default because it costs requests); "test this deployment/provider"
runs the same probe on demand.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from dataclasses import dataclass
from typing import Literal

from omnirelay.config import HealthConfig
from omnirelay.routing.dispatch import Dispatcher, LastError
from omnirelay.routing.router import Deployment, Router
from omnirelay.transport.http import TransportError
from omnirelay.upstream import openai as openai_wire
from omnirelay.upstream.gemini.adapter import API_VERSION, api_root

log = logging.getLogger("omnirelay.health")
Status = Literal["healthy", "rate_limited", "invalid", "error"]


@dataclass(frozen=True, slots=True)
class HealthResult:
    status: Status
    detail: str
    checked_at: float


def _request(dep: Deployment) -> tuple[str, dict[str, str]] | None:
    target, key = dep.provider.target, dep.key
    dialect = dep.provider.dialect
    if dialect == "openai":
        headers = openai_wire.request_headers(target, key, None)
        if target.azure_api_version:
            return f"{target.base_url}/openai/models?api-version={target.azure_api_version}", headers
        return target.base_url + "/models", headers
    if dialect == "anthropic":
        headers = {"anthropic-version": "2023-06-01", **({"x-api-key": key} if key else {}), **target.headers}
        base = target.base_url.rstrip("/").removesuffix("/v1")
        return base + "/v1/models", headers
    if dialect == "gemini":
        headers = {**({"x-goog-api-key": key} if key else {}), **target.headers}
        return f"{api_root(target.base_url)}/{API_VERSION}/models", headers
    return None  # the mock has nothing to probe


class HealthChecker:
    def __init__(self, router: Router, dispatcher: Dispatcher, config: HealthConfig) -> None:
        self.router = router
        self.dispatcher = dispatcher
        self.config = config
        self.results: dict[str, HealthResult] = {}
        self._task: asyncio.Task[None] | None = None

    async def probe(self, dep: Deployment) -> HealthResult:
        now = time.time()
        request = _request(dep)
        client = dep.provider.target.client
        if request is None or client is None:
            result = HealthResult("healthy", "nothing to probe", now)
        else:
            url, headers = request
            try:
                async with asyncio.timeout(self.config.timeout_seconds):
                    resp = await client.send("GET", url, headers, None)
                    await resp.read()
            except (TransportError, TimeoutError) as exc:
                result = HealthResult("error", f"no answer: {type(exc).__name__}", now)
            else:
                result = self._classify(resp.status, resp.headers.get("retry-after"), now)
        await self._apply(dep, result)
        return result

    def _classify(self, status: int, retry_after: str | None, now: float) -> HealthResult:
        if status < 400:
            return HealthResult("healthy", f"HTTP {status}", now)
        if status in (401, 403):
            return HealthResult("invalid", f"the key was refused (HTTP {status})", now)
        if status == 429:
            return HealthResult("rate_limited", f"rate limited (retry-after {retry_after or '?'})", now)
        return HealthResult("error", f"HTTP {status}", now)

    async def _apply(self, probed: Deployment, result: HealthResult) -> None:
        """Apply to every deployment sharing the probed key (the probe tests the key, not a model)."""
        state, policy = self.dispatcher.state, self.dispatcher.policy
        same_key = [
            d for d in self.router.all if d.provider is probed.provider and d.key_index == probed.key_index
        ]
        for dep in same_key:
            self.results[dep.id] = result
            if result.status == "healthy":
                await state.clear_invalid(dep.id)
                await state.clear_cooldown(dep.id)
                await state.record_result(dep.id, True, result.checked_at, policy)
            elif result.status == "invalid":
                await state.mark_invalid(dep.id, f"health probe: {result.detail}", result.checked_at)
                self.dispatcher.last_error[dep.id] = LastError(result.checked_at, "auth", result.detail)
            elif result.status == "rate_limited":
                await state.cool_down(
                    dep.id,
                    5.0,
                    f"health probe: {result.detail}",
                    result.checked_at,
                    escalate=True,
                    ladder=tuple(self.dispatcher.config.rate_limit_ladder),
                )

    async def probe_provider(self, name: str) -> dict[str, HealthResult]:
        keys: dict[int, Deployment] = {}
        for dep in self.router.all:
            if dep.provider.name == name:
                keys.setdefault(dep.key_index, dep)
        results = await asyncio.gather(*(self.probe(dep) for dep in keys.values()))
        return {dep.id: result for dep, result in zip(keys.values(), results, strict=True)}

    def start(self) -> None:
        if any(p.config is not None and p.config.health_check for p in self.router.providers):
            self._task = asyncio.create_task(self._run(), name="health-probes")

    async def _run(self) -> None:
        while True:
            jitter = 1 + random.uniform(-self.config.jitter, self.config.jitter)
            await asyncio.sleep(self.config.interval_seconds * jitter)
            for provider in self.router.providers:
                if provider.config is not None and provider.config.health_check:
                    try:
                        await self.probe_provider(provider.name)
                    except Exception:
                        log.exception("health probe of provider %s failed", provider.name)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
