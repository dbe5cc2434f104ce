"""Contract of the usage queries (summaries, time buckets, log search, IP audit) and the body log over
SQLite and PostgreSQL, with the schema built by the real migrations.

PostgreSQL runs when reachable at 127.0.0.1:5432 (trust auth, user postgres): each test gets a
throw-away database, dropped afterwards. Without asyncpg or the server those cases skip, loudly.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config

from omnirelay.storage import sql
from omnirelay.storage.records import LoggedBody, UsageRecord
from omnirelay.storage.usage_queries import UsageFilter
from tests.contract.databases import BACKENDS, store_on

DAY = 86400
T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z, a day (and hour) boundary


def rec(n: int, ts: float, **fields: Any) -> UsageRecord:
    values: dict[str, Any] = {
        "ts": ts,
        "request_id": f"req_{n:04d}",
        "key_id": "k_a",
        "endpoint": "chat.completions",
        "model": "alpha",
        "provider": "p1",
        "upstream_model": "alpha-up",
        "status": 200,
        "stream": False,
        "ttfb_ms": 1.0,
        "latency_ms": 2.0,
        "input_tokens": 10,
        "output_tokens": 20,
        "cached_input_tokens": 1,
        "cache_write_tokens": 2,
        "reasoning_tokens": 3,
        "client_ip": "10.0.0.1",
        "cost": 2**40,  # beyond 32 bits: sums must stay exact integers
        "user_id": "u_a",
    }
    values.update(fields)
    return UsageRecord(**values)


RECORDS = [
    rec(1, T0 + 10),
    rec(2, T0 + 3599.9),  # still the first hour
    rec(3, T0 + 3600, status=429, error="rate limited", output_tokens=0, cost=0),
    rec(4, T0 + 2 * 3600 + 5, model="beta", provider="p2", key_id="k_b", client_ip="10.0.0.2"),
    rec(5, T0 + DAY + 7, user_id="u_b", key_id="k_c", status=500, client_ip="10.0.0.2"),
    rec(6, T0 + DAY + 8, user_id=None, key_id="master", model="", provider=None, status=404, client_ip=None),
    rec(7, T0 + DAY - 0.5, key_id="k_b", model="beta", provider="p2", client_ip="10.0.0.1"),
]


@pytest.mark.parametrize("backend", BACKENDS)
async def test_summaries_group_and_bucket_exactly(backend: str, tmp_path: Path) -> None:
    async with store_on(backend, tmp_path, "usage-query") as store:
        await store.add_usage(RECORDS)
        [total] = await store.usage_summary(UsageFilter())
        assert total == {
            "requests": 7,
            "errors": 3,
            "input_tokens": 70,
            "output_tokens": 120,
            "cached_input_tokens": 7,
            "cache_write_tokens": 14,
            "reasoning_tokens": 21,
            "cost": 6 * 2**40,
        }
        by_user = await store.usage_summary(UsageFilter(), ["user"])
        assert {r["user_id"]: r["requests"] for r in by_user} == {"u_a": 5, "u_b": 1, None: 1}
        by_key_model = await store.usage_summary(UsageFilter(user_id="u_a"), ["key", "model"])
        assert {(r["key_id"], r["model"]): (r["requests"], r["errors"]) for r in by_key_model} == {
            ("k_a", "alpha"): (3, 1),
            ("k_b", "beta"): (2, 0),
        }
        hours = await store.usage_summary(UsageFilter(until=T0 + DAY), [], "hour")
        assert [(r["bucket"] - T0, r["requests"]) for r in hours] == [
            (0, 2),
            (3600, 1),
            (7200, 1),
            (82800, 1),
        ]
        days = await store.usage_summary(UsageFilter(), ["provider"], "day")
        assert {(r["bucket"] - T0, r["provider"]): r["requests"] for r in days} == {
            (0, "p1"): 3,
            (0, "p2"): 2,
            (DAY, "p1"): 1,
            (DAY, None): 1,
        }
        window = await store.usage_summary(UsageFilter(since=T0 + 3600, until=T0 + DAY, model="beta"))
        assert window[0]["requests"] == 2 and window[0]["cost"] == 2 * 2**40
        none = await store.usage_summary(UsageFilter(provider="nobody"), ["model"], "hour")
        assert none == []


@pytest.mark.parametrize("backend", BACKENDS)
async def test_log_search_filters_and_pages(backend: str, tmp_path: Path) -> None:
    async with store_on(backend, tmp_path, "usage-query") as store:
        await store.add_usage(RECORDS)
        everything, total = await store.search_usage(UsageFilter(), limit=100)
        assert total == 7
        assert [r.request_id for r in everything] == [
            "req_0006",
            "req_0005",
            "req_0007",
            "req_0004",
            "req_0003",
            "req_0002",
            "req_0001",
        ]
        pages = [await store.search_usage(UsageFilter(), limit=3, offset=o) for o in (0, 3, 6)]
        assert [r for page, n in pages for r in page] == everything and {n for _, n in pages} == {7}
        assert everything[-1] == RECORDS[0]  # every field round-trips, the user included
        errors, n = await store.search_usage(UsageFilter(status=(400, 1000)))
        assert n == 3 and {r.status for r in errors} == {429, 500, 404}
        four, n = await store.search_usage(UsageFilter(status=(400, 500), user_id="u_a"))
        assert n == 1 and four[0].error == "rate limited"
        by_ip, n = await store.search_usage(UsageFilter(client_ip="10.0.0.2", since=T0 + DAY))
        assert n == 1 and by_ip[0].key_id == "k_c"
        assert (await store.search_usage(UsageFilter(key_id="k_b", model="alpha")))[1] == 0
        assert await store.get_usage("req_0005") == RECORDS[4]
        assert await store.get_usage("req_nope") is None


@pytest.mark.parametrize("backend", BACKENDS)
async def test_ip_audit(backend: str, tmp_path: Path) -> None:
    async with store_on(backend, tmp_path, "usage-query") as store:
        await store.add_usage(RECORDS)
        pairs, total = await store.ip_audit(UsageFilter())
        assert total == 5
        assert pairs[0] == {
            "key_id": "master",
            "client_ip": None,
            "requests": 1,
            "first_seen": T0 + DAY + 8,
            "last_seen": T0 + DAY + 8,
        }
        as_dict = {(p["key_id"], p["client_ip"]): p for p in pairs}
        assert as_dict[("k_a", "10.0.0.1")]["requests"] == 3
        assert as_dict[("k_a", "10.0.0.1")]["first_seen"] == T0 + 10
        assert as_dict[("k_a", "10.0.0.1")]["last_seen"] == T0 + 3600
        assert as_dict[("k_b", "10.0.0.2")]["requests"] == 1
        page, total = await store.ip_audit(UsageFilter(user_id="u_a"), limit=2, offset=1)
        assert total == 3 and len(page) == 2
        only, total = await store.ip_audit(UsageFilter(client_ip="10.0.0.2", until=T0 + DAY))
        assert total == 1 and only[0]["key_id"] == "k_b"


@pytest.mark.parametrize("backend", BACKENDS)
async def test_bodies_round_trip_once_and_are_purged(backend: str, tmp_path: Path) -> None:
    async with store_on(backend, tmp_path, "usage-query") as store:
        binary = LoggedBody("req_2", T0 + 100, b"\x00\xff audio", b"", 9, 0)
        text = LoggedBody("req_1", T0, b'{"model":"m"}', b'{"ok":true}', 13, 5000, "application/json")
        await store.add_bodies([text, binary])
        await store.add_bodies([text])  # a retried batch does not duplicate
        assert await store.get_bodies("req_1") == text
        assert await store.get_bodies("req_2") == binary
        assert await store.purge_bodies(T0 + 50) == 1
        assert await store.get_bodies("req_1") is None and await store.get_bodies("req_2") == binary
        assert await store.purge_bodies(T0 + 50) == 0


def _upgrade(conn: sa.Connection, revision: str) -> None:
    cfg = Config()
    cfg.set_main_option("script_location", str(Path(sql.__file__).parent / "migrations"))
    cfg.attributes["connection"] = conn
    command.upgrade(cfg, revision)


@pytest.mark.parametrize("backend", BACKENDS)
async def test_migration_gives_existing_records_their_keys_owner(backend: str, tmp_path: Path) -> None:
    async with store_on(backend, tmp_path, "usage-query", start=False) as store:
        async with store.engine.begin() as conn:
            await conn.run_sync(_upgrade, "0006")
            await conn.execute(
                sa.text(
                    "INSERT INTO api_keys (id, key_hash, prefix, created_at, user_id, status, metadata,"
                    " spent) VALUES ('k_a', 'h', 'sk-', 1.0, 'u_a', 'active', '{}', 0)"
                )
            )
            for n, key in ((1, "k_a"), (2, "master")):
                await conn.execute(
                    sa.text(
                        "INSERT INTO usage_records (ts, request_id, key_id, endpoint, model, status, stream,"
                        " latency_ms, input_tokens, output_tokens, cached_input_tokens, cache_write_tokens,"
                        " reasoning_tokens, usage_estimated, cost, unpriced) VALUES (:ts, :rid, :key,"
                        " 'chat.completions', 'alpha', 200, false, 1.0, 1, 1, 0, 0, 0, false, 0, false)"
                    ),
                    {"ts": T0 + n, "rid": f"req_{n}", "key": key},
                )
        await store.start()  # the rest of the migrations, 0007 included
        owners = {r.request_id: r.user_id for r in (await store.search_usage(UsageFilter()))[0]}
        assert owners == {"req_1": "u_a", "req_2": None}
        key = await store.get_key("k_a")
        assert key is not None and key.log_bodies is None
