"""`python -m omnirelay.storage.migrate`: bring the database named on stdin to the newest schema.

Run by `SqlStore.start()` in a child process so the serving process never imports Alembic.
"""

from __future__ import annotations

import asyncio
import sys

from omnirelay.storage.sql import SqlStore


async def _main(url: str) -> None:
    store = SqlStore(url)
    try:
        await store.migrate_here()
    finally:
        await store.close()


if __name__ == "__main__":
    asyncio.run(_main(sys.stdin.read().strip()))
