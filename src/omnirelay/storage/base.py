"""The durable-storage interface. SQLite is the embedded implementation; PostgreSQL uses the same
SQL implementation with another URL (see `omnirelay.storage.sql`)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

from omnirelay.storage.billing import BillingStore
from omnirelay.storage.channels import ChannelRecord, PriceRecord
from omnirelay.storage.records import KeyRecord, LoggedBody, StoredResponse, UsageRecord
from omnirelay.storage.usage_queries import UsageFilter


class Store(ABC):
    billing: BillingStore  # users, groups, the ledger and redemption codes

    @abstractmethod
    async def start(self) -> None:
        """Connect and bring the schema to the newest migration."""

    @abstractmethod
    async def close(self) -> None: ...

    @abstractmethod
    async def ping(self) -> bool: ...

    @abstractmethod
    async def get_setting(self, name: str) -> str | None: ...

    @abstractmethod
    async def set_setting(self, name: str, value: str) -> None: ...

    @abstractmethod
    async def add_usage(self, records: Sequence[UsageRecord]) -> None:
        """Insert a batch atomically; a record already stored (same request_id) is not duplicated."""

    @abstractmethod
    async def list_usage(self, limit: int = 100) -> list[UsageRecord]:
        """The newest records first."""

    @abstractmethod
    async def count_usage(self) -> int: ...

    @abstractmethod
    async def add_responses(self, records: Sequence[StoredResponse]) -> None:
        """Insert a batch; an id already stored is not duplicated."""

    @abstractmethod
    async def get_response(self, response_id: str) -> StoredResponse | None: ...

    @abstractmethod
    async def add_key(self, key: KeyRecord) -> None: ...

    @abstractmethod
    async def get_key(self, key_id: str) -> KeyRecord | None: ...

    @abstractmethod
    async def find_key(self, key_hash: str) -> KeyRecord | None:
        """The key whose secret hashes to `key_hash` (authentication)."""

    @abstractmethod
    async def list_keys(
        self, user_id: str | None = None, limit: int = 100, offset: int = 0
    ) -> list[KeyRecord]: ...

    @abstractmethod
    async def count_active_keys(self, user_id: str) -> int:
        """How many keys of this user have the status active."""

    @abstractmethod
    async def update_key(self, key: KeyRecord) -> None:
        """Write every field of an existing key (by id)."""

    @abstractmethod
    async def add_spending(self, totals: dict[str, int]) -> None:
        """Add each key's charged micro-units to its `spent` (atomically in the database)."""

    # usage queries, request-log search, IP audit and logged bodies: omnirelay.storage.usage_queries
    @abstractmethod
    async def usage_summary(
        self, flt: UsageFilter, group_by: Sequence[str] = (), bucket: str | None = None
    ) -> list[dict[str, Any]]:
        """Totals grouped by `group_by` (key, user, model, provider) and an optional hour/day bucket."""

    @abstractmethod
    async def search_usage(
        self, flt: UsageFilter, limit: int = 100, offset: int = 0
    ) -> tuple[list[UsageRecord], int]:
        """A page of matching records, newest first, and the number of matches."""

    @abstractmethod
    async def get_usage(self, request_id: str) -> UsageRecord | None: ...

    @abstractmethod
    async def ip_audit(
        self, flt: UsageFilter, limit: int = 100, offset: int = 0
    ) -> tuple[list[dict[str, Any]], int]:
        """Per (key, client IP): requests, first and last seen; and the number of pairs."""

    @abstractmethod
    async def add_bodies(self, records: Sequence[LoggedBody]) -> None:
        """Insert a batch of logged bodies; a request id already stored is not duplicated."""

    @abstractmethod
    async def get_bodies(self, request_id: str) -> LoggedBody | None: ...

    @abstractmethod
    async def purge_bodies(self, before: float) -> int:
        """Delete the bodies logged before `before` (unix seconds); returns how many."""

    # provider channels (secrets only as ciphertext) and price overrides: omnirelay.storage.channels
    @abstractmethod
    async def add_channel(self, channel: ChannelRecord) -> None:
        """Insert; `ChannelExistsError` when the name is taken."""

    @abstractmethod
    async def get_channel(self, name: str) -> ChannelRecord | None: ...

    @abstractmethod
    async def list_channels(self) -> list[ChannelRecord]:
        """Every channel, oldest first."""

    @abstractmethod
    async def update_channel(self, channel: ChannelRecord) -> bool:
        """Overwrite every field but `created_at`; False when there is no such channel."""

    @abstractmethod
    async def delete_channel(self, name: str) -> bool: ...

    @abstractmethod
    async def replace_channel_secrets(self, updates: dict[str, tuple[dict[str, Any], str]]) -> None:
        """name → (secrets, key_id) for several channels in one transaction (key rotation)."""

    @abstractmethod
    async def list_prices(self) -> list[PriceRecord]: ...

    @abstractmethod
    async def set_price(self, price: PriceRecord) -> None:
        """Insert or replace the override of `price.model`."""

    @abstractmethod
    async def delete_price(self, model: str) -> bool: ...
