"""The durable-storage interface. SQLite is the embedded implementation; PostgreSQL uses the same
SQL implementation with another URL (see `omnirelay.storage.sql`)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

from omnirelay.storage.billing import BillingStore
from omnirelay.storage.records import KeyRecord, StoredResponse, UsageRecord


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
    async def update_key(self, key: KeyRecord) -> None:
        """Write every field of an existing key (by id)."""

    @abstractmethod
    async def add_spending(self, totals: dict[str, int]) -> None:
        """Add each key's charged micro-units to its `spent` (atomically in the database)."""
