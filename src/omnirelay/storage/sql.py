"""The Store on SQLAlchemy 2 (async): SQLite through aiosqlite by default, PostgreSQL by URL."""

from __future__ import annotations

import asyncio
import dataclasses
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from omnirelay.storage import tables, usage_queries
from omnirelay.storage.base import Store
from omnirelay.storage.billing import SqlBillingStore
from omnirelay.storage.channels import SqlChannels
from omnirelay.storage.records import KeyRecord, LoggedBody, StoredResponse, UsageRecord
from omnirelay.storage.usage_queries import UsageFilter

_USAGE_FIELDS = [f.name for f in dataclasses.fields(UsageRecord)]
_RESPONSE_FIELDS = [f.name for f in dataclasses.fields(StoredResponse)]
_KEY_FIELDS = [f.name for f in dataclasses.fields(KeyRecord)]
# The newest migration. A database already there skips loading Alembic at all (it costs ~10 MB of
# memory and a noticeable start-up time); tests check this matches the migrations directory.
SCHEMA_HEAD = "0009"


def sqlite_url(data_dir: str | Path) -> str:
    return f"sqlite+aiosqlite:///{Path(data_dir).resolve() / 'omnirelay.db'}"


def _schema_version(conn: sa.Connection) -> str | None:
    if not sa.inspect(conn).has_table("alembic_version"):
        return None
    return conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()


def migrate(conn: sa.Connection) -> None:
    """Bring the schema to the newest migration (Alembic, on this connection)."""
    if _schema_version(conn) == SCHEMA_HEAD:
        return
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
    cfg.attributes["connection"] = conn
    command.upgrade(cfg, "head")


class SqlStore(SqlChannels, Store):  # channels and price overrides: storage/channels.py
    def __init__(self, url: str) -> None:
        self.url = url
        self.engine: AsyncEngine = create_async_engine(url, pool_pre_ping=not url.startswith("sqlite"))
        self.billing = SqlBillingStore(self.engine)
        if url.startswith("sqlite"):
            event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)

    async def start(self) -> None:
        async with self.engine.connect() as conn:
            current = await conn.run_sync(_schema_version)
        if current != SCHEMA_HEAD:
            await _migrate_in_child(self.url)

    async def migrate_here(self) -> None:
        async with self.engine.begin() as conn:
            await conn.run_sync(migrate)

    async def close(self) -> None:
        await self.engine.dispose()

    async def ping(self) -> bool:
        try:
            async with self.engine.connect() as conn:
                await conn.execute(sa.text("SELECT 1"))
            return True
        except Exception:
            return False

    async def get_setting(self, name: str) -> str | None:
        async with self.engine.connect() as conn:
            row = await conn.execute(sa.select(tables.settings.c.value).where(tables.settings.c.name == name))
            return row.scalar_one_or_none()

    async def set_setting(self, name: str, value: str) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(sa.delete(tables.settings).where(tables.settings.c.name == name))
            await conn.execute(sa.insert(tables.settings).values(name=name, value=value))

    async def add_usage(self, records: Sequence[UsageRecord]) -> None:
        if not records:
            return
        rows = [{f: getattr(r, f) for f in _USAGE_FIELDS} for r in records]
        async with self.engine.begin() as conn:
            await self._insert_new(conn, rows)

    async def _insert_new(self, conn: AsyncConnection, rows: list[dict[str, Any]]) -> None:
        # A batch retried after a failure that happened past the commit must not duplicate rows.
        ids = [r["request_id"] for r in rows]
        existing = await conn.execute(
            sa.select(tables.usage_records.c.request_id).where(tables.usage_records.c.request_id.in_(ids))
        )
        seen = set(existing.scalars())
        fresh = [r for r in rows if r["request_id"] not in seen]
        if fresh:
            await conn.execute(sa.insert(tables.usage_records), fresh)

    async def add_responses(self, records: Sequence[StoredResponse]) -> None:
        if not records:
            return
        table = tables.responses
        async with self.engine.begin() as conn:
            existing = await conn.execute(
                sa.select(table.c.id).where(table.c.id.in_([r.id for r in records]))
            )
            seen = set(existing.scalars())
            fresh = [{f: getattr(r, f) for f in _RESPONSE_FIELDS} for r in records if r.id not in seen]
            if fresh:
                await conn.execute(sa.insert(table), fresh)

    async def get_response(self, response_id: str) -> StoredResponse | None:
        cols = [tables.responses.c[f] for f in _RESPONSE_FIELDS]
        async with self.engine.connect() as conn:
            row = (await conn.execute(sa.select(*cols).where(tables.responses.c.id == response_id))).first()
        return StoredResponse(**row._asdict()) if row else None

    async def add_key(self, key: KeyRecord) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(sa.insert(tables.api_keys).values(**dataclasses.asdict(key)))

    async def _one_key(self, clause: Any) -> KeyRecord | None:
        cols = [tables.api_keys.c[f] for f in _KEY_FIELDS]
        async with self.engine.connect() as conn:
            row = (await conn.execute(sa.select(*cols).where(clause))).first()
        return KeyRecord(**row._asdict()) if row else None

    async def get_key(self, key_id: str) -> KeyRecord | None:
        return await self._one_key(tables.api_keys.c.id == key_id)

    async def find_key(self, key_hash: str) -> KeyRecord | None:
        return await self._one_key(tables.api_keys.c.key_hash == key_hash)

    async def list_keys(
        self, user_id: str | None = None, limit: int = 100, offset: int = 0
    ) -> list[KeyRecord]:
        cols = [tables.api_keys.c[f] for f in _KEY_FIELDS]
        query = sa.select(*cols).order_by(tables.api_keys.c.created_at, tables.api_keys.c.id)
        if user_id is not None:
            query = query.where(tables.api_keys.c.user_id == user_id)
        async with self.engine.connect() as conn:
            rows = await conn.execute(query.limit(limit).offset(offset))
            return [KeyRecord(**row._asdict()) for row in rows]

    async def count_active_keys(self, user_id: str) -> int:
        table = tables.api_keys
        query = sa.select(sa.func.count()).where(table.c.user_id == user_id, table.c.status == "active")
        async with self.engine.connect() as conn:
            return int((await conn.execute(query)).scalar_one())

    async def add_spending(self, totals: dict[str, int]) -> None:
        table = tables.api_keys
        async with self.engine.begin() as conn:
            for key_id, delta in totals.items():
                await conn.execute(
                    sa.update(table).where(table.c.id == key_id).values(spent=table.c.spent + delta)
                )

    async def update_key(self, key: KeyRecord) -> None:
        values = dataclasses.asdict(key)
        values.pop("spent")  # spending only moves through add_spending, never overwritten
        async with self.engine.begin() as conn:
            await conn.execute(
                sa.update(tables.api_keys).where(tables.api_keys.c.id == key.id).values(**values)
            )

    async def list_usage(self, limit: int = 100) -> list[UsageRecord]:
        cols = [tables.usage_records.c[f] for f in _USAGE_FIELDS]
        query = sa.select(*cols).order_by(tables.usage_records.c.id.desc()).limit(limit)
        async with self.engine.connect() as conn:
            result = await conn.execute(query)
            return [UsageRecord(**row._asdict()) for row in result]

    async def count_usage(self) -> int:
        async with self.engine.connect() as conn:
            result = await conn.execute(sa.select(sa.func.count()).select_from(tables.usage_records))
            return int(result.scalar_one())

    async def usage_summary(
        self, flt: UsageFilter, group_by: Sequence[str] = (), bucket: str | None = None
    ) -> list[dict[str, Any]]:
        return await usage_queries.summarize(self.engine, flt, group_by, bucket)

    async def search_usage(
        self, flt: UsageFilter, limit: int = 100, offset: int = 0
    ) -> tuple[list[UsageRecord], int]:
        return await usage_queries.search(self.engine, flt, limit, offset)

    async def get_usage(self, request_id: str) -> UsageRecord | None:
        return await usage_queries.get_record(self.engine, request_id)

    async def ip_audit(
        self, flt: UsageFilter, limit: int = 100, offset: int = 0
    ) -> tuple[list[dict[str, Any]], int]:
        return await usage_queries.ip_audit(self.engine, flt, limit, offset)

    async def add_bodies(self, records: Sequence[LoggedBody]) -> None:
        await usage_queries.add_bodies(self.engine, records)

    async def get_bodies(self, request_id: str) -> LoggedBody | None:
        return await usage_queries.get_bodies(self.engine, request_id)

    async def purge_bodies(self, before: float) -> int:
        return await usage_queries.purge_bodies(self.engine, before)


async def _migrate_in_child(url: str) -> None:
    """Run the migrations in a short-lived child process: a serving gateway never loads Alembic
    (about 10 MB it would keep for its whole life). The URL goes through stdin, never argv."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "omnirelay.storage.migrate",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _out, err = await proc.communicate(url.encode())
    if proc.returncode != 0:
        raise RuntimeError(f"database migration failed: {err.decode(errors='replace')[-2000:]}")


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cursor = dbapi_conn.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()


def open_store(url: str) -> Store:
    return SqlStore(url)
