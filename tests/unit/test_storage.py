from __future__ import annotations

from pathlib import Path

from alembic.config import Config
from alembic.script import ScriptDirectory

from omnirelay.storage import sql
from omnirelay.storage.records import StoredResponse, UsageRecord


def test_schema_head_matches_migrations() -> None:
    cfg = Config()
    cfg.set_main_option("script_location", str(Path(sql.__file__).parent / "migrations"))
    assert ScriptDirectory.from_config(cfg).get_current_head() == sql.SCHEMA_HEAD


def record(i: int) -> UsageRecord:
    return UsageRecord(
        ts=1.0 + i,
        request_id=f"req_{i}",
        key_id="master",
        endpoint="chat.completions",
        model="m",
        provider="p",
        upstream_model="m",
        status=200,
        stream=False,
        ttfb_ms=1.0,
        latency_ms=2.0,
        input_tokens=i,
        output_tokens=2 * i,
    )


async def test_sqlite_store_round_trip_and_idempotent_batches(tmp_path: Path) -> None:
    store = sql.SqlStore(sql.sqlite_url(tmp_path))
    await store.start()
    await store.add_usage([record(1), record(2)])
    await store.add_usage([record(2), record(3)])  # a retried batch must not duplicate
    assert await store.count_usage() == 3
    newest = await store.list_usage(limit=1)
    assert newest[0] == record(3)
    await store.set_setting("a", "1")
    await store.set_setting("a", "2")
    assert await store.get_setting("a") == "2" and await store.get_setting("b") is None
    await store.close()
    # A second start on the same file finds the schema current.
    again = sql.SqlStore(sql.sqlite_url(tmp_path))
    await again.start()
    assert await again.count_usage() == 3 and await again.ping()
    await again.close()


async def test_stored_responses(tmp_path: Path) -> None:
    store = sql.SqlStore(sql.sqlite_url(tmp_path))
    await store.start()
    rec = StoredResponse(id="resp_1", ts=1.0, key_id="k", model="m", request="[]", response='{"id":"resp_1"}')
    await store.add_responses([rec])
    await store.add_responses([rec])
    assert await store.get_response("resp_1") == rec
    assert await store.get_response("resp_2") is None
    await store.close()
