"""Read-side queries over the usage records (summaries, request-log search, IP audit) and the store of
logged request/response bodies. SQLAlchemy Core; the same SQL runs on SQLite and PostgreSQL."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from omnirelay.storage import tables
from omnirelay.storage.records import LoggedBody, UsageRecord

_USAGE = tables.usage_records
_BODIES = tables.request_bodies
_USAGE_FIELDS = [f.name for f in dataclasses.fields(UsageRecord)]
_BODY_FIELDS = [f.name for f in dataclasses.fields(LoggedBody)]

GroupBy = Literal["key", "user", "model", "provider"]
Bucket = Literal["hour", "day"]
GROUP_COLUMNS: dict[str, str] = {"key": "key_id", "user": "user_id", "model": "model", "provider": "provider"}
BUCKET_SECONDS: dict[str, int] = {"hour": 3600, "day": 86400}
# The summed columns of a summary, in output order.
TOTALS = (
    "input_tokens",
    "output_tokens",
    "cached_input_tokens",
    "cache_write_tokens",
    "reasoning_tokens",
    "cost",
)


@dataclass(slots=True)
class UsageFilter:
    """Which usage records a query looks at; None means "any". Times are unix seconds, `since`
    inclusive and `until` exclusive; `status` is a half-open range [low, high)."""

    since: float | None = None
    until: float | None = None
    key_id: str | None = None
    user_id: str | None = None
    model: str | None = None
    provider: str | None = None
    client_ip: str | None = None
    status: tuple[int, int] | None = None
    include_admin: bool = True  # False: only model traffic (no admin API calls)

    def clauses(self) -> list[sa.ColumnElement[bool]]:
        c = _USAGE.c
        out: list[sa.ColumnElement[bool]] = []
        if self.since is not None:
            out.append(c.ts >= self.since)
        if self.until is not None:
            out.append(c.ts < self.until)
        for name in ("key_id", "user_id", "model", "provider", "client_ip"):
            value = getattr(self, name)
            if value is not None:
                out.append(c[name] == value)
        if self.status is not None:
            out += [c.status >= self.status[0], c.status < self.status[1]]
        if not self.include_admin:
            out.append(sa.not_(c.endpoint.startswith("admin.")))
        return out


def _bucket(seconds: int, dialect: str) -> sa.ColumnElement[Any]:
    """The start of the UTC hour/day of each record (unix seconds). SQLite may be built without
    floor(); for the non-negative `ts` a cast to integer truncates to the same value. PostgreSQL
    rounds such a cast, so it gets floor()."""
    n: sa.ColumnElement[Any] = sa.literal_column(str(int(seconds)))
    if dialect == "sqlite":
        return (sa.cast(_USAGE.c.ts / n, sa.BigInteger) * n).label("bucket")
    return (sa.func.floor(_USAGE.c.ts / n) * n).label("bucket")


def _sum(column: sa.ColumnElement[Any], name: str) -> sa.ColumnElement[Any]:
    return sa.func.coalesce(sa.func.sum(column), 0).label(name)


async def summarize(
    engine: AsyncEngine, flt: UsageFilter, group_by: Sequence[str] = (), bucket: str | None = None
) -> list[dict[str, Any]]:
    """Totals per group (each of `group_by` in GROUP_COLUMNS) and per time bucket, oldest bucket
    first. With no grouping and no bucket, one row of grand totals (zero when nothing matched)."""
    keys: list[sa.ColumnElement[Any]] = [_USAGE.c[GROUP_COLUMNS[g]] for g in group_by]
    if bucket is not None:
        keys.insert(0, _bucket(BUCKET_SECONDS[bucket], engine.dialect.name))
    errors = sa.case((_USAGE.c.status >= 400, 1), else_=0)
    measures = [
        sa.func.count().label("requests"),
        _sum(errors, "errors"),
        *(_sum(_USAGE.c[name], name) for name in TOTALS),
    ]
    query = sa.select(*keys, *measures).where(*flt.clauses())
    if keys:
        # Group and order by position: the same text on both databases, parameters included.
        positions: list[sa.ColumnElement[Any]] = [sa.literal_column(str(i + 1)) for i in range(len(keys))]
        query = query.group_by(*positions).order_by(*positions)
    async with engine.connect() as conn:
        rows = (await conn.execute(query)).mappings().all()
    out = []
    for row in rows:
        item: dict[str, Any] = {}
        if bucket is not None:
            item["bucket"] = int(row["bucket"])
        for g in group_by:
            item[GROUP_COLUMNS[g]] = row[GROUP_COLUMNS[g]]
        item["requests"] = int(row["requests"])
        item["errors"] = int(row["errors"])
        for name in TOTALS:
            item[name] = int(row[name])
        out.append(item)
    return out


async def search(
    engine: AsyncEngine, flt: UsageFilter, limit: int, offset: int
) -> tuple[list[UsageRecord], int]:
    """A page of matching records, newest first, and how many match in all."""
    cols = [_USAGE.c[f] for f in _USAGE_FIELDS]
    where = flt.clauses()
    page = (
        sa.select(*cols)
        .where(*where)
        .order_by(_USAGE.c.ts.desc(), _USAGE.c.id.desc())
        .limit(limit)
        .offset(offset)
    )
    count = sa.select(sa.func.count()).select_from(_USAGE).where(*where)
    async with engine.connect() as conn:
        records = [UsageRecord(**row._asdict()) for row in await conn.execute(page)]
        total = int((await conn.execute(count)).scalar_one())
    return records, total


async def get_record(engine: AsyncEngine, request_id: str) -> UsageRecord | None:
    cols = [_USAGE.c[f] for f in _USAGE_FIELDS]
    async with engine.connect() as conn:
        row = (await conn.execute(sa.select(*cols).where(_USAGE.c.request_id == request_id))).first()
    return UsageRecord(**row._asdict()) if row else None


async def ip_audit(
    engine: AsyncEngine, flt: UsageFilter, limit: int, offset: int
) -> tuple[list[dict[str, Any]], int]:
    """Per (key, client IP) pair: requests, first and last seen; most recently seen first."""
    pairs = (
        sa.select(
            _USAGE.c.key_id,
            _USAGE.c.client_ip,
            sa.func.count().label("requests"),
            sa.func.min(_USAGE.c.ts).label("first_seen"),
            sa.func.max(_USAGE.c.ts).label("last_seen"),
        )
        .where(*flt.clauses())
        .group_by(_USAGE.c.key_id, _USAGE.c.client_ip)
    )
    inner = pairs.subquery()
    page = (
        sa.select(inner)
        .order_by(inner.c.last_seen.desc(), inner.c.key_id, inner.c.client_ip)
        .limit(limit)
        .offset(offset)
    )
    count = sa.select(sa.func.count()).select_from(inner)
    async with engine.connect() as conn:
        rows = (await conn.execute(page)).mappings().all()
        total = int((await conn.execute(count)).scalar_one())
    data = [
        {
            "key_id": r["key_id"],
            "client_ip": r["client_ip"],
            "requests": int(r["requests"]),
            "first_seen": float(r["first_seen"]),
            "last_seen": float(r["last_seen"]),
        }
        for r in rows
    ]
    return data, total


async def add_bodies(engine: AsyncEngine, records: Sequence[LoggedBody]) -> None:
    """Insert a batch; a request id already stored is not duplicated (batches may be retried)."""
    if not records:
        return
    async with engine.begin() as conn:
        existing = await conn.execute(
            sa.select(_BODIES.c.request_id).where(_BODIES.c.request_id.in_([r.request_id for r in records]))
        )
        seen = set(existing.scalars())
        fresh = []
        for r in records:
            if r.request_id not in seen:
                seen.add(r.request_id)
                fresh.append({f: getattr(r, f) for f in _BODY_FIELDS})
        if fresh:
            await conn.execute(sa.insert(_BODIES), fresh)


async def get_bodies(engine: AsyncEngine, request_id: str) -> LoggedBody | None:
    cols = [_BODIES.c[f] for f in _BODY_FIELDS]
    async with engine.connect() as conn:
        row = (await conn.execute(sa.select(*cols).where(_BODIES.c.request_id == request_id))).first()
    if row is None:
        return None
    values = row._asdict()
    values["request"], values["response"] = bytes(values["request"]), bytes(values["response"])
    return LoggedBody(**values)


async def purge_bodies(engine: AsyncEngine, before: float) -> int:
    """Delete the bodies of requests that arrived before `before` (unix seconds); how many went."""
    async with engine.begin() as conn:
        result = await conn.execute(sa.delete(_BODIES).where(_BODIES.c.ts < before))
    return int(result.rowcount or 0)
