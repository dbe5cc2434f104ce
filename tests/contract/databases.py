"""Throw-away databases for storage contract tests: SQLite in the test's directory, and PostgreSQL
at 127.0.0.1:5432 (trust auth, user postgres) where each use gets a fresh database, dropped after.
Without asyncpg or the server the PostgreSQL cases skip, loudly, naming the contract not run."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from omnirelay.storage import sql

PG_ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/test"
PG_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/{db}"
BACKENDS = ["sqlite", "postgresql"]


@asynccontextmanager
async def database_url(backend: str, tmp_path: Path, contract: str) -> AsyncIterator[str]:
    """The URL of an empty database on `backend`; `contract` names the skipped suite."""
    if backend == "sqlite":
        yield sql.sqlite_url(tmp_path)
        return
    try:
        import asyncpg
    except ImportError as exc:
        pytest.skip(f"!!! PostgreSQL {contract} contract NOT RUN: asyncpg is not installed ({exc})")
    try:
        admin = await asyncpg.connect(PG_ADMIN_DSN, timeout=5)
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        pytest.skip(f"!!! PostgreSQL {contract} contract NOT RUN: cannot connect to {PG_ADMIN_DSN}: {exc!r}")
    name = f"omnirelay_{contract.replace(' ', '_').replace('-', '_')}_{uuid.uuid4().hex[:12]}"
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield PG_URL.format(db=name)
        finally:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@asynccontextmanager
async def store_on(
    backend: str, tmp_path: Path, contract: str, start: bool = True
) -> AsyncIterator[sql.SqlStore]:
    """A store on a throw-away database, migrated to the newest schema unless `start` is False."""
    async with database_url(backend, tmp_path, contract) as url:
        store = sql.SqlStore(url)
        try:
            if start:
                await store.start()
            yield store
        finally:
            await store.close()
