"""Records leave the request path through an in-memory buffer that a background task writes to the
store in batches (usage records, stored Responses). `record()` never awaits and never touches the
database.

A failed write keeps its batch and retries with backoff (nothing is dropped while the process
lives); `close()` drains the buffer, and is called on shutdown after in-flight requests finish.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

log = logging.getLogger("omnirelay.usage")
T = TypeVar("T")


class BatchWriter(Generic[T]):
    def __init__(
        self,
        write: Callable[[Sequence[T]], Awaitable[None]],
        flush_interval: float = 0.5,
        max_batch: int = 1000,
        name: str = "usage records",
    ) -> None:
        self._write = write
        self._name = name
        self._interval = flush_interval
        self._max_batch = max_batch
        self._buffer: list[T] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self.written = 0

    def record(self, rec: T) -> None:
        self._buffer.append(rec)
        if len(self._buffer) >= self._max_batch:
            self._wake.set()

    @property
    def pending(self) -> int:
        return len(self._buffer)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"writer: {self._name}")

    async def _run(self) -> None:
        backoff = self._interval
        while not self._closing:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=backoff)
            self._wake.clear()
            backoff = self._interval if await self.flush() else min(backoff * 2, 30.0)

    async def flush(self) -> bool:
        """Write everything buffered so far. Returns False (and keeps the records) on failure."""
        while self._buffer:
            batch = self._buffer[: self._max_batch]
            try:
                await self._write(batch)
            except Exception:
                log.exception("writing %d %s failed; will retry", len(batch), self._name)
                return False
            del self._buffer[: len(batch)]
            self.written += len(batch)
        return True

    async def close(self, attempts: int = 5) -> None:
        self._closing = True
        self._wake.set()
        if self._task is not None:
            await self._task
        for _ in range(attempts):
            if await self.flush():
                return
            await asyncio.sleep(0.5)
        log.error("%d %s could not be written at shutdown", len(self._buffer), self._name)
