"""Provider channels created through the admin API, and operator price overrides.

A channel row holds a provider's full definition (the fields of a config `ProviderConfig`, as JSON)
WITHOUT its secrets: the API keys and header values are stored only as AES-256-GCM tokens (see
`omnirelay.security.secrets`), made and read above this layer; `key_id` names the key that
encrypted them, so a rotation can find the rows it has not re-encrypted yet. Storage never sees a
plaintext secret and never imports the crypto.

Prices are exact decimal strings of credits (the same fields as the config's `prices:` entries).
The tables live on the shared `omnirelay.storage.tables.metadata`; migration 0008 creates them.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from omnirelay.storage.tables import metadata

provider_channels = sa.Table(
    "provider_channels",
    metadata,
    sa.Column("name", sa.String(128), primary_key=True),
    sa.Column("definition", sa.JSON, nullable=False),
    sa.Column("secrets", sa.JSON, nullable=False),
    sa.Column("key_id", sa.String(16), nullable=False, index=True),
    sa.Column("enabled", sa.Boolean, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
)

PRICE_FIELDS = (
    "input",
    "output",
    "cached_input",
    "cache_write",
    "reasoning",
    "per_image",
    "per_audio_second",
    "per_character",
    "per_request",
)

price_overrides = sa.Table(
    "price_overrides",
    metadata,
    sa.Column("model", sa.String(256), primary_key=True),
    *(sa.Column(name, sa.String(64), nullable=name not in ("input", "output")) for name in PRICE_FIELDS),
    sa.Column("updated_at", sa.Float, nullable=False),
)


@dataclass(slots=True)
class ChannelRecord:
    """One stored channel. `secrets` is `{"api_keys": [token, …], "headers": {name: token}}`: every
    value an AES-256-GCM token under the key `key_id`; `definition` never holds a secret."""

    name: str
    definition: dict[str, Any]
    secrets: dict[str, Any]
    key_id: str
    enabled: bool = True
    created_at: float = field(default_factory=time.time)
    updated_at: float = field(default_factory=time.time)


@dataclass(slots=True)
class PriceRecord:
    """A price override for `model` (or `provider/model`): credits as exact decimal strings, token
    rates per 1M tokens. None = the default (the input/output rate for the cache and reasoning
    rates, 0 for the fees)."""

    model: str
    input: str
    output: str
    cached_input: str | None = None
    cache_write: str | None = None
    reasoning: str | None = None
    per_image: str | None = None
    per_audio_second: str | None = None
    per_character: str | None = None
    per_request: str | None = None
    updated_at: float = field(default_factory=time.time)


_CHANNEL_FIELDS = [f.name for f in dataclasses.fields(ChannelRecord)]
_PRICE_FIELDS = [f.name for f in dataclasses.fields(PriceRecord)]


class ChannelExistsError(Exception):
    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"a channel named {name!r} exists already")


class SqlChannels:
    """The channel and price-override part of `SqlStore` (a mixin: it needs `self.engine`)."""

    engine: AsyncEngine

    # channels -------------------------------------------------------------------------------------
    async def add_channel(self, channel: ChannelRecord) -> None:
        async with self.engine.begin() as conn:
            exists = await conn.execute(
                sa.select(provider_channels.c.name).where(provider_channels.c.name == channel.name)
            )
            if exists.first() is not None:
                raise ChannelExistsError(channel.name)
            await conn.execute(sa.insert(provider_channels).values(**dataclasses.asdict(channel)))

    async def get_channel(self, name: str) -> ChannelRecord | None:
        cols = [provider_channels.c[f] for f in _CHANNEL_FIELDS]
        async with self.engine.connect() as conn:
            row = (await conn.execute(sa.select(*cols).where(provider_channels.c.name == name))).first()
        return ChannelRecord(**row._asdict()) if row else None

    async def list_channels(self) -> list[ChannelRecord]:
        cols = [provider_channels.c[f] for f in _CHANNEL_FIELDS]
        query = sa.select(*cols).order_by(provider_channels.c.created_at, provider_channels.c.name)
        async with self.engine.connect() as conn:
            return [ChannelRecord(**row._asdict()) for row in await conn.execute(query)]

    async def update_channel(self, channel: ChannelRecord) -> bool:
        """Overwrite a channel (by name); False when there is none."""
        values = dataclasses.asdict(channel)
        values.pop("created_at")
        async with self.engine.begin() as conn:
            result = await conn.execute(
                sa.update(provider_channels).where(provider_channels.c.name == channel.name).values(**values)
            )
        return bool(result.rowcount)

    async def delete_channel(self, name: str) -> bool:
        async with self.engine.begin() as conn:
            result = await conn.execute(sa.delete(provider_channels).where(provider_channels.c.name == name))
        return bool(result.rowcount)

    async def replace_channel_secrets(self, updates: dict[str, tuple[dict[str, Any], str]]) -> None:
        """Write new `(secrets, key_id)` for several channels in ONE transaction (a key rotation):
        either every row is re-encrypted or none is. A name that is gone is skipped."""
        async with self.engine.begin() as conn:
            for name, (secrets, key_id) in updates.items():
                await conn.execute(
                    sa.update(provider_channels)
                    .where(provider_channels.c.name == name)
                    .values(secrets=secrets, key_id=key_id, updated_at=time.time())
                )

    # prices ---------------------------------------------------------------------------------------
    async def list_prices(self) -> list[PriceRecord]:
        cols = [price_overrides.c[f] for f in _PRICE_FIELDS]
        async with self.engine.connect() as conn:
            rows = await conn.execute(sa.select(*cols).order_by(price_overrides.c.model))
            return [PriceRecord(**row._asdict()) for row in rows]

    async def set_price(self, price: PriceRecord) -> None:
        """Insert or replace the override of `price.model`."""
        async with self.engine.begin() as conn:
            await conn.execute(sa.delete(price_overrides).where(price_overrides.c.model == price.model))
            await conn.execute(sa.insert(price_overrides).values(**dataclasses.asdict(price)))

    async def delete_price(self, model: str) -> bool:
        async with self.engine.begin() as conn:
            result = await conn.execute(sa.delete(price_overrides).where(price_overrides.c.model == model))
        return bool(result.rowcount)
