"""Responses-API exchanges kept for `GET /v1/responses/{id}` and `previous_response_id`.

A finished response is put in a bounded in-memory cache (so a follow-up turn finds it at once) and
handed to a background batch writer (so the request path never waits on the database). Look-ups
try the cache, then the store. A response is only visible to the key that created it.
"""

from __future__ import annotations

from collections import OrderedDict

from omnirelay.accounting.recorder import BatchWriter
from omnirelay.storage.base import Store
from omnirelay.storage.records import StoredResponse


class ResponseArchive:
    def __init__(self, store: Store, flush_interval: float, cache_size: int = 2048) -> None:
        self._store = store
        self._cache: OrderedDict[str, StoredResponse] = OrderedDict()
        self._cache_size = cache_size
        self.writer: BatchWriter[StoredResponse] = BatchWriter(
            store.add_responses, flush_interval, name="stored responses"
        )

    def save(self, record: StoredResponse) -> None:
        self._cache[record.id] = record
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        self.writer.record(record)

    async def get(self, response_id: str, key_id: str) -> StoredResponse | None:
        record = self._cache.get(response_id) or await self._store.get_response(response_id)
        if record is None or record.key_id != key_id:
            return None
        return record
