"""Everything a running gateway holds, built at start-up and closed at shutdown."""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

from omnirelay.accounting.bodies import BodyLog
from omnirelay.accounting.prices import (
    PriceCatalog,
    UnpricedModel,
    charge,
    estimate,
    price_multiplier,
)
from omnirelay.accounting.quota import QuotaBook, Wallets, spending_batches
from omnirelay.accounting.recorder import BatchWriter
from omnirelay.call import Call
from omnirelay.channels import ChannelManager, load_ring
from omnirelay.config import Config
from omnirelay.errors import PermissionDenied
from omnirelay.policy.auth import Authenticator, generate_master_key
from omnirelay.providers.catalog import Provider, build_providers
from omnirelay.routing.dispatch import Dispatcher
from omnirelay.routing.health import HealthChecker
from omnirelay.routing.router import Route, Router
from omnirelay.security.keys import key_hash as hash_key
from omnirelay.state.memory import MemoryRoutingState
from omnirelay.storage.base import Store
from omnirelay.storage.billing import LedgerEntry
from omnirelay.storage.records import UsageRecord
from omnirelay.storage.sql import open_store, sqlite_url
from omnirelay.stored_responses import ResponseArchive

log = logging.getLogger("omnirelay")
MASTER_KEY_SETTING = "master_key_sha256"


@dataclass(slots=True)
class Runtime:
    config: Config
    data_dir: Path
    store: Store
    recorder: BatchWriter[UsageRecord]
    providers: list[Provider]
    router: Router
    dispatcher: Dispatcher
    prices: PriceCatalog
    quota: QuotaBook
    wallets: Wallets
    ledger: BatchWriter[LedgerEntry]
    spending: BatchWriter[tuple[str, int]]
    health: HealthChecker
    auth: Authenticator
    started: int
    body_log: BodyLog  # opt-in request/response bodies and their retention
    responses: ResponseArchive | None = None
    new_master_key: str | None = None  # set only when this start generated it
    channels: ChannelManager | None = None  # providers and prices made through the admin API

    def finish(self, call: Call) -> None:
        """Leave the usage record of a finished request (buffered; written in the background)."""
        usage = call.usage
        now = time.perf_counter()
        self.recorder.record(
            UsageRecord(
                ts=call.ts,
                request_id=call.request_id,
                key_id=call.key_id,
                endpoint=call.endpoint,
                model=call.model,
                provider=call.provider,
                upstream_model=call.upstream_model,
                status=call.status,
                stream=call.stream,
                ttfb_ms=None if call.ttfb is None else round(call.ttfb * 1000, 3),
                latency_ms=round((now - call.started) * 1000, 3),
                input_tokens=usage.input_tokens if usage else 0,
                output_tokens=usage.output_tokens if usage else 0,
                cached_input_tokens=usage.cached_input_tokens if usage else 0,
                cache_write_tokens=usage.cache_write_tokens if usage else 0,
                reasoning_tokens=usage.reasoning_tokens if usage else 0,
                usage_estimated=usage.estimated if usage else False,
                client_ip=call.client_ip,
                cost=call.cost,
                unpriced=call.unpriced,
                error=call.error[:500] if call.error else None,
                user_id=call.principal.user_id if call.principal is not None else None,
            )
        )
        if call.bodies is not None:
            self.body_log.record(call.request_id, call.ts, call.bodies)

    def resolve(self, call: Call, model: str, body: dict[str, Any] | None = None) -> Route:
        """The route for a model the caller may use (a key's `allowed_models`)."""
        if call.principal is not None and not call.principal.may_use(model):
            raise PermissionDenied(
                f"This API key may not use the model {model!r}.", param="model", code="model_not_allowed"
            )
        route = self.router.resolve(model)
        if self.config.billing.unpriced_models == "refuse" and not any(
            self.prices.lookup(d.upstream_model, d.provider.name) for d in route.deployments
        ):
            raise UnpricedModel(model)
        key = call.principal.key if call.principal is not None else None
        charged_user = (
            key.user_id if key is not None and key.user_id and self.wallets.known(key.user_id) else None
        )
        if call.billable and key is not None and (key.quota is not None or charged_user):
            held = self._estimate(route, model, body or {}, call.request_bytes, self._multiplier(call))
            if charged_user:
                self.wallets.reserve(charged_user, held)
            try:
                self.quota.reserve(key, held)
            except Exception:
                if charged_user:
                    self.wallets.settle(charged_user, held, 0)
                raise
            call.reserved = held
        return route

    @staticmethod
    def _multiplier(call: Call) -> Fraction:
        """The caller's price multiplier: its user's group multiplier times its key's own."""
        principal = call.principal
        if principal is None or principal.key is None:
            return Fraction(1)
        group = principal.group
        return price_multiplier(
            (group.multiplier_num, group.multiplier_den) if group is not None else None,
            principal.key.price_multiplier,
        )

    def _estimate(
        self,
        route: Route,
        model: str,
        body: dict[str, Any],
        request_bytes: int,
        multiplier: Fraction | int = 1,
    ) -> int:
        """An upper bound of the request's cost (see accounting.quota)."""
        dep = route.deployments[0]
        price = self.prices.lookup(dep.upstream_model, dep.provider.name) or self.prices.lookup(model)
        if price is None:
            return 0
        config = body.get("generationConfig")
        declared = (
            body.get("max_completion_tokens")
            or body.get("max_tokens")
            or body.get("max_output_tokens")
            or (config.get("maxOutputTokens") if isinstance(config, dict) else None)
        )
        max_out = declared if isinstance(declared, int) and declared > 0 else None
        return estimate(
            price,
            request_bytes,
            max_out or self.config.billing.default_max_output_tokens,
            multiplier=multiplier,
        )

    def models(self, call: Call) -> list[tuple[str, str]]:
        """(model id, owner) of the models the caller may use."""
        principal = call.principal
        return [(m, owner) for m, owner in self.router.models() if principal is None or principal.may_use(m)]

    async def settle(self, call: Call) -> None:
        """Everything that follows a finished request: routing accounting, then its usage record."""
        call.cost, call.unpriced = self._cost(call)
        key = call.principal.key if call.principal is not None else None
        if key is not None:
            self.quota.settle(key, call.reserved, call.cost)
            if call.cost:
                self.spending.record((key.id, call.cost))
            if key.user_id and self.wallets.known(key.user_id):
                self.wallets.settle(key.user_id, call.reserved, call.cost)
                if call.cost:
                    self.ledger.record(
                        LedgerEntry(
                            id="chg_" + call.request_id,
                            ts=time.time(),
                            user_id=key.user_id,
                            amount=-call.cost,
                            kind="charge",
                            key_id=key.id,
                            request_id=call.request_id,
                        )
                    )
        try:
            if key is not None and key.tpm and call.usage is not None and call.usage.total_tokens:
                await self.dispatcher.state.add_tokens("key:" + key.id, call.usage.total_tokens, time.time())
            await self.dispatcher.settle(call)
        except Exception:
            log.exception("routing accounting failed for request %s", call.request_id)
        self.finish(call)

    def _cost(self, call: Call) -> tuple[int, bool]:
        """What the request costs at the price of the model that served it (exact micro-units)."""
        if not call.billable or call.usage is None or call.provider is None or call.upstream_model is None:
            return 0, False
        price = self.prices.lookup(call.upstream_model, call.provider)
        if price is None:
            price = self.prices.lookup(call.model)
        if price is None:
            return 0, True
        return charge(price, call.usage, multiplier=self._multiplier(call)), False

    async def close(self) -> None:
        await self.health.close()
        await self.spending.close()
        await self.ledger.close()
        await self.dispatcher.state.close()
        await self.recorder.close()
        await self.body_log.close()
        if self.responses is not None:
            await self.responses.writer.close()
        if self.channels is not None:
            await self.channels.close()
        for provider in self.providers:
            await provider.close()
        await self.store.close()


def prepare_data_dir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, 0o700)
    return path


async def start_runtime(config: Config, data_dir: Path) -> Runtime:
    prepare_data_dir(data_dir)
    store = open_store(config.database_url or sqlite_url(data_dir))
    await store.start()
    new_key = None
    configured = config.master_key or os.environ.get("OMNIRELAY_MASTER_KEY")
    if configured:
        master_hash = hash_key(configured)
    else:
        stored = await store.get_setting(MASTER_KEY_SETTING)
        if stored is None:
            new_key = generate_master_key()
            stored = hash_key(new_key)
            await store.set_setting(MASTER_KEY_SETTING, stored)
        master_hash = stored
    recorder = BatchWriter(store.add_usage, config.usage.flush_interval_seconds, config.usage.max_batch)
    recorder.start()
    responses = ResponseArchive(store, config.usage.flush_interval_seconds)
    responses.writer.start()
    body_log = BodyLog(
        store,
        config.logging.bodies,
        config.logging.max_body_bytes,
        config.logging.body_retention_days,
        config.usage.flush_interval_seconds,
    )
    body_log.start()
    channels = ChannelManager(store, load_ring(data_dir, os.environ), config)
    providers = build_providers(config) + await channels.load()
    router = Router(providers, config)
    dispatcher = Dispatcher(MemoryRoutingState(), config.routing)
    health = HealthChecker(router, dispatcher, config.routing.health)
    health.start()
    spending: BatchWriter[tuple[str, int]] = BatchWriter(
        lambda batch: store.add_spending(spending_batches(batch)),
        config.usage.flush_interval_seconds,
        name="key spending",
    )
    spending.start()
    ledger: BatchWriter[LedgerEntry] = BatchWriter(
        store.billing.apply, config.usage.flush_interval_seconds, name="ledger entries"
    )
    ledger.start()
    return Runtime(
        config=config,
        data_dir=data_dir,
        store=store,
        recorder=recorder,
        providers=providers,
        router=router,
        quota=QuotaBook(),
        wallets=Wallets(),
        ledger=ledger,
        spending=spending,
        prices=channels.price_catalog(),  # config prices under the admin API's overrides
        dispatcher=dispatcher,
        health=health,
        auth=Authenticator(master_hash, store, dispatcher),
        started=int(time.time()),
        body_log=body_log,
        new_master_key=new_key,
        responses=responses,
        channels=channels,
    )


async def reset_master_key(config: Config, data_dir: Path) -> str:
    prepare_data_dir(data_dir)
    store = open_store(config.database_url or sqlite_url(data_dir))
    await store.start()
    try:
        key = generate_master_key()
        await store.set_setting(MASTER_KEY_SETTING, hash_key(key))
        return key
    finally:
        await store.close()
