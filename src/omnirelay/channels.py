"""Provider channels made through the admin API: their credentials encrypted at rest, their
providers merged with the config's, and changes applied to a running gateway without a restart.

* A channel is a full provider definition (the fields of a config `ProviderConfig`). Its API keys
  and header values are stored only as AES-256-GCM tokens (`security.secrets`), each bound to the
  channel's name and field as associated data, so a token copied into another row does not decrypt.
* The key ring: `OMNIRELAY_ENCRYPTION_KEY`, else `<data dir>/encryption.key` (created 0600). A
  rotation (`omnirelay rotate-encryption-key`, `rotate_encryption_key` below) writes the new key to
  `encryption.key.new` first, re-encrypts every row in one transaction, then renames the new file
  over the old one; a start-up in between reads both keys, and running the command again finishes.
* A change swaps the runtime's provider list and router at once (two attribute assignments between
  awaits, so no request sees half of it). Requests in flight keep the deployments they resolved;
  the dispatcher's state is keyed by deployment id, so unchanged deployments keep their cool-downs,
  breakers and counters. Providers that are removed or replaced are closed once their deployments
  have no request in flight (see `RETIRE_AFTER_SECONDS`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omnirelay.accounting.prices import Price, PriceCatalog
from omnirelay.config import NO_ENV_KEYS, Config, ConfigError, ProviderConfig
from omnirelay.providers.catalog import Provider, build_provider
from omnirelay.routing.router import Router
from omnirelay.security.secrets import (
    ENV_VAR,
    KEY_FILE_NAME,
    KeyRing,
    SecretBox,
    SecretError,
    load_key,
    parse_key,
    random_key,
    read_key_file,
    write_key_file,
)
from omnirelay.storage.base import Store
from omnirelay.storage.channels import PRICE_FIELDS, ChannelRecord, PriceRecord

if TYPE_CHECKING:
    from omnirelay.runtime import Runtime

log = logging.getLogger("omnirelay.channels")
PENDING_SUFFIX = ".new"  # <data dir>/encryption.key.new: the next key while a rotation runs
NEW_KEY_ENV = "OMNIRELAY_NEW_ENCRYPTION_KEY"  # the next key when the current one is in ENV_VAR
# A removed or replaced provider's HTTP session is closed when the routing state counts no request
# in flight on its deployment ids (checked every RETIRE_POLL_SECONDS, at the earliest after one
# poll: a request that resolved its route just before the swap has begun by then), or at shutdown.
# A replaced provider shares its deployment ids with its successor, so under steady traffic the
# count may never reach 0: it is closed RETIRE_AFTER_SECONDS after the swap at the latest (a stream
# still running on it then is cut).
RETIRE_POLL_SECONDS = 2.0
RETIRE_AFTER_SECONDS = 900.0


# --- the key ring ---------------------------------------------------------------------------------


def pending_key_path(data_dir: Path) -> Path:
    return Path(data_dir) / (KEY_FILE_NAME + PENDING_SUFFIX)


def load_ring(data_dir: Path, env: Mapping[str, str]) -> KeyRing:
    """The current key, plus the key of an interrupted rotation when one is pending."""
    current = SecretBox(load_key(data_dir, env))
    pending = pending_key_path(data_dir)
    previous = [SecretBox(read_key_file(pending))] if ENV_VAR not in env and pending.exists() else []
    if ENV_VAR in env and env.get(NEW_KEY_ENV, "").strip():  # rotated, env not switched over yet
        previous.append(SecretBox(parse_key(env[NEW_KEY_ENV], source=NEW_KEY_ENV)))
    return KeyRing(current, previous)


# --- records ↔ provider configs -------------------------------------------------------------------


def _aad(name: str, what: str) -> bytes:
    return f"omnirelay:provider_channels:{name}:{what}".encode()


def encrypt_channel(
    cfg: ProviderConfig, ring: KeyRing, enabled: bool, created_at: float | None = None
) -> ChannelRecord:
    """The stored form of `cfg`: its definition without secrets, its keys and headers encrypted."""
    definition = cfg.model_dump(mode="json", exclude={"api_keys", "headers"})
    secrets = {
        "api_keys": [ring.encrypt(k, aad=_aad(cfg.name, "api_key")) for k in cfg.api_keys],
        "headers": {h: ring.encrypt(v, aad=_aad(cfg.name, "header:" + h)) for h, v in cfg.headers.items()},
    }
    now = time.time()
    return ChannelRecord(
        name=cfg.name,
        definition=definition,
        secrets=secrets,
        key_id=ring.current.key_id,
        enabled=enabled,
        created_at=now if created_at is None else created_at,
        updated_at=now,
    )


def decrypt_channel(record: ChannelRecord, ring: KeyRing) -> ProviderConfig:
    """The provider config of a stored channel; SecretError when its secrets do not decrypt."""
    name = record.name
    keys = [ring.decrypt(t, aad=_aad(name, "api_key")) for t in record.secrets.get("api_keys", [])]
    headers = {
        h: ring.decrypt(t, aad=_aad(name, "header:" + h))
        for h, t in record.secrets.get("headers", {}).items()
    }
    # Never a key from the environment (a preset's key_env) for a stored channel.
    return ProviderConfig.model_validate(
        {**record.definition, "api_keys": keys, "headers": headers}, context={NO_ENV_KEYS: True}
    )


def reencrypt_secrets(record: ChannelRecord, ring: KeyRing) -> dict[str, Any]:
    """The record's secrets under the ring's current key (verified, re-encrypted where needed)."""
    name = record.name
    return {
        "api_keys": [
            ring.reencrypt(t, aad=_aad(name, "api_key")) for t in record.secrets.get("api_keys", [])
        ],
        "headers": {
            h: ring.reencrypt(t, aad=_aad(name, "header:" + h))
            for h, t in record.secrets.get("headers", {}).items()
        },
    }


# --- prices -----------------------------------------------------------------------------------------


def price_of(record: PriceRecord) -> Price:
    fields = {f: getattr(record, f) for f in PRICE_FIELDS if getattr(record, f) is not None}
    return Price.from_credits(**fields)


def price_overrides(config: Config, stored: list[PriceRecord]) -> dict[str, Price]:
    """Config prices, then the stored overrides on top (the API wins)."""
    out = {name.lower(): Price.from_credits(**p.model_dump()) for name, p in config.prices.items()}
    for record in stored:
        try:
            out[record.model.lower()] = price_of(record)
        except (ValueError, TypeError) as exc:
            log.error("stored price override for %r is invalid and ignored: %s", record.model, exc)
    return out


# --- the manager ------------------------------------------------------------------------------------


@dataclass(slots=True)
class Channel:
    """A stored channel as the API shows it: its decrypted config (None when it does not decrypt)."""

    record: ChannelRecord
    config: ProviderConfig | None
    error: str | None = None


class ChannelManager:
    def __init__(self, store: Store, ring: KeyRing, config: Config) -> None:
        self.store = store
        self.ring = ring
        self.config = config
        self.channels: dict[str, Channel] = {}
        self.prices: list[PriceRecord] = []
        self.lock = asyncio.Lock()  # one change at a time
        self._retiring: set[asyncio.Task[None]] = set()
        self._retired: list[Provider] = []

    @property
    def config_names(self) -> set[str]:
        return {p.name for p in self.config.providers}

    async def load(self) -> list[Provider]:
        """Read every stored channel and price override; the providers of the enabled channels.
        A channel that does not decrypt or whose name the config now uses is left out (logged)."""
        self.prices = await self.store.list_prices()
        for record in await self.store.list_channels():
            try:
                cfg: ProviderConfig | None = decrypt_channel(record, self.ring)
                error = None
            except SecretError as exc:
                cfg, error = None, f"its credentials do not decrypt: {exc}"
            except ValueError as exc:  # pydantic's ValidationError: a definition this build refuses
                cfg, error = None, f"its definition is invalid: {str(exc).splitlines()[0]}"
            if cfg is not None and record.name in self.config_names:
                error = "the config file now defines a provider with this name; the config wins"
            if error:
                log.error("provider channel %r is not loaded: %s", record.name, error)
            self.channels[record.name] = Channel(record, cfg, error)
        return [build_provider(c, self.config.http_client) for c in self.active().values()]

    def active(self) -> dict[str, ProviderConfig]:
        """The configs of the channels that serve: enabled, decrypted, no name clash."""
        return {
            name: ch.config
            for name, ch in self.channels.items()
            if ch.record.enabled and ch.config is not None and ch.error is None
        }

    def price_catalog(self) -> PriceCatalog:
        return PriceCatalog(overrides=price_overrides(self.config, self.prices))

    def prepare(
        self, rt: Runtime, active: dict[str, ProviderConfig], changed: set[str]
    ) -> tuple[list[Provider], Router, list[Provider]]:
        """The provider list and router for `active` channels (reusing the running Provider of every
        channel not in `changed`) and the providers built fresh; ConfigError when the config's
        routes no longer resolve."""
        running = {p.name: p for p in rt.providers}
        providers = [running[p.name] for p in self.config.providers if p.name in running]
        fresh: list[Provider] = []
        for name, cfg in active.items():
            provider = running.get(name)
            if provider is None or name in changed:
                provider = build_provider(cfg, self.config.http_client)
                fresh.append(provider)
            providers.append(provider)
        try:
            router = Router(providers, self.config)
        except ConfigError:
            self.discard(fresh)
            raise
        return providers, router, fresh

    def discard(self, providers: list[Provider]) -> None:
        for provider in providers:
            task = asyncio.get_running_loop().create_task(provider.close())
            self._retiring.add(task)
            task.add_done_callback(self._retiring.discard)

    def swap(self, rt: Runtime, providers: list[Provider], router: Router) -> None:
        """Serve `providers` through `router` from now on; retire the providers no longer used."""
        kept = {id(p) for p in providers}
        gone = [p for p in rt.providers if id(p) not in kept]
        gone_ids = {id(p) for p in gone}
        dep_ids = [d.id for d in rt.router.all if id(d.provider) in gone_ids]
        rt.providers, rt.router = providers, router
        rt.health.router = router
        if getattr(rt.health, "_task", None) is None:  # start background probes if now wanted
            rt.health.start()
        self._retired.extend(gone)
        if gone:
            task = asyncio.get_running_loop().create_task(self._close_later(rt, gone, dep_ids))
            self._retiring.add(task)
            task.add_done_callback(self._retiring.discard)

    async def _close_later(self, rt: Runtime, providers: list[Provider], dep_ids: list[str]) -> None:
        loop = asyncio.get_running_loop()
        give_up = loop.time() + RETIRE_AFTER_SECONDS
        while loop.time() < give_up:
            await asyncio.sleep(RETIRE_POLL_SECONDS)
            try:
                load = await rt.dispatcher.state.load(dep_ids) if dep_ids else {}
            except Exception:
                log.exception("cannot read the in-flight counts of retired providers")
                continue
            if all(stats.in_flight <= 0 for stats in load.values()):
                break
        for provider in providers:
            with contextlib.suppress(Exception):
                await provider.close()
            with contextlib.suppress(ValueError):
                self._retired.remove(provider)

    async def close(self) -> None:
        for task in list(self._retiring):
            task.cancel()
        for provider in self._retired:
            with contextlib.suppress(Exception):
                await provider.close()
        self._retired.clear()


# --- rotation -----------------------------------------------------------------------------------------


@dataclass(slots=True)
class Rotation:
    old_key_id: str
    new_key_id: str
    channels: int
    from_env: bool


async def rotate_encryption_key(store: Store, data_dir: Path, env: Mapping[str, str]) -> Rotation:
    """Re-encrypt every stored credential under a new key, in one transaction.

    Key file: the new key is written to `encryption.key.new` (0600, atomically; an existing one from
    an interrupted run is reused), the rows are re-encrypted, then the new file replaces
    `encryption.key`. Key in `OMNIRELAY_ENCRYPTION_KEY`: the new key must be given in
    `OMNIRELAY_NEW_ENCRYPTION_KEY`; the operator then moves it into `OMNIRELAY_ENCRYPTION_KEY`."""
    data_dir = Path(data_dir)
    from_env = ENV_VAR in env
    old = SecretBox(load_key(data_dir, env))
    if from_env:
        if not env.get(NEW_KEY_ENV, "").strip():
            raise SecretError(
                f"the key comes from {ENV_VAR}: put a new key into {NEW_KEY_ENV} (generate one with: "
                'python -c "import os, base64; print(base64.b64encode(os.urandom(32)).decode())")'
            )
        new = SecretBox(parse_key(env[NEW_KEY_ENV], source=NEW_KEY_ENV))
        previous = [old]
    else:
        pending = pending_key_path(data_dir)
        if not pending.exists():
            write_key_file(pending, random_key())
        new = SecretBox(read_key_file(pending))
        previous = [old]
    if new.key_id == old.key_id:
        raise SecretError("the new key equals the current one")
    ring = KeyRing(new, previous)
    records = await store.list_channels()
    updates = {r.name: (reencrypt_secrets(r, ring), new.key_id) for r in records}
    await store.replace_channel_secrets(updates)
    if not from_env:
        os.replace(pending_key_path(data_dir), data_dir / KEY_FILE_NAME)
        with contextlib.suppress(OSError):  # make the rename durable
            fd = os.open(data_dir, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
    return Rotation(old.key_id, new.key_id, len(records), from_env)
