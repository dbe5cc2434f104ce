"""Contract of the billing store (users, groups, ledger, redemption codes) over SQLite and PostgreSQL.

PostgreSQL runs when reachable at 127.0.0.1:5432 (trust auth, user postgres): each test gets a
throw-away database, dropped afterwards. Without asyncpg or the server those cases skip, loudly.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import sqlalchemy as sa

from omnirelay.storage import sql
from omnirelay.storage.billing import (
    CODE_PREFIX,
    GroupInUseError,
    GroupRecord,
    LedgerEntry,
    LedgerKind,
    RedemptionError,
    SqlBillingStore,
    UnknownUserError,
    UserRecord,
    hash_code,
    ledger,
    redemption_codes,
)
from tests.contract.databases import BACKENDS, database_url


@asynccontextmanager
async def billing_store(
    backend: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[SqlBillingStore]:
    monkeypatch.setattr(sql, "SCHEMA_HEAD", "0006")
    async with database_url(backend, tmp_path, "billing") as url:
        store = sql.SqlStore(url)
        try:
            await store.start()
            yield SqlBillingStore(store.engine)
        finally:
            await store.close()


def charge(entry_id: str, user_id: str, amount: int, ts: float = 1000.0) -> LedgerEntry:
    return LedgerEntry(
        id=entry_id, ts=ts, user_id=user_id, amount=-amount, kind="charge", key_id="k1", request_id=entry_id
    )


async def assert_consistent(billing: SqlBillingStore, user_id: str) -> int:
    balance = await billing.balance(user_id)
    assert balance is not None
    assert balance == await billing.ledger_sum(user_id)
    return balance


@pytest.mark.parametrize("backend", BACKENDS)
async def test_user_and_group_crud(backend: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async with billing_store(backend, tmp_path, monkeypatch) as billing:
        await billing.create_group(GroupRecord(id="g_default", name="default"))
        await billing.create_group(GroupRecord(id="g_vip", name="vip", multiplier_num=4, multiplier_den=5))
        with pytest.raises(ValueError):
            await billing.create_group(GroupRecord(id="g_bad", name="bad", multiplier_den=0))
        assert await billing.get_group("g_vip") == GroupRecord("g_vip", "vip", 4, 5)
        assert await billing.get_group("nope") is None
        await billing.update_group(GroupRecord(id="g_vip", name="vip", multiplier_num=3, multiplier_den=4))
        assert await billing.get_group("g_vip") == GroupRecord("g_vip", "vip", 3, 4)
        assert [g.id for g in await billing.list_groups()] == ["g_default", "g_vip"]
        assert [g.id for g in await billing.list_groups(limit=1, offset=1)] == ["g_vip"]
        with pytest.raises(LookupError):
            await billing.update_group(GroupRecord(id="nope", name="nope"))

        for i in range(5):
            group = "g_vip" if i % 2 else "g_default"
            await billing.create_user(
                UserRecord(id=f"u{i}", name=f"user{i}", group_id=group, created_at=10.0 + i)
            )
        await billing.create_user(
            UserRecord(id="root", name="root", role="admin", created_at=1.0, balance=700)
        )
        root = await billing.get_user("root")
        assert root == UserRecord("root", "root", "admin", None, 700, 1.0, "active")
        assert await billing.get_user_by_name("user3") == await billing.get_user("u3")
        assert await billing.get_user("nope") is None
        # an opening balance goes through the ledger, so the invariant holds from the start
        assert await assert_consistent(billing, "root") == 700
        assert [e.kind for e in await billing.ledger("root")] == ["adjust"]

        assert [u.id for u in await billing.list_users()] == ["root", "u0", "u1", "u2", "u3", "u4"]
        assert [u.id for u in await billing.list_users(limit=2, offset=2)] == ["u1", "u2"]
        assert [u.id for u in await billing.list_users(group_id="g_vip")] == ["u1", "u3"]

        # update never overwrites the balance: money only moves through the ledger
        await billing.update_user(
            UserRecord(
                id="root", name="admin", role="admin", group_id="g_vip", balance=10**9, status="disabled"
            )
        )
        root = await billing.get_user("root")
        assert root is not None
        assert (root.name, root.group_id, root.status, root.balance, root.created_at) == (
            "admin",
            "g_vip",
            "disabled",
            700,
            1.0,
        )
        with pytest.raises(UnknownUserError):
            await billing.update_user(UserRecord(id="ghost", name="ghost"))
        with pytest.raises(ValueError):
            await billing.create_user(UserRecord(id="x", name="x", role="owner"))  # type: ignore[arg-type]
        with pytest.raises(sa.exc.IntegrityError):
            await billing.create_user(UserRecord(id="dup", name="user1"))  # names are unique


@pytest.mark.parametrize("backend", BACKENDS)
async def test_topup_and_charges(backend: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async with billing_store(backend, tmp_path, monkeypatch) as billing:
        await billing.create_user(UserRecord(id="u1", name="alice"))
        await billing.create_user(UserRecord(id="u2", name="bob"))
        assert await billing.balance("u1") == 0
        assert await billing.balance("nobody") is None
        assert await billing.ledger_sum("u1") == 0

        entry = await billing.topup("u1", 5_000_000, "wire transfer", ts=100.0)
        assert (entry.kind, entry.amount, entry.user_id, entry.note) == (
            "topup",
            5_000_000,
            "u1",
            "wire transfer",
        )
        with pytest.raises(ValueError):
            await billing.topup("u1", 0)
        with pytest.raises(UnknownUserError):
            await billing.topup("nobody", 10)

        await billing.apply(
            [charge("c1", "u1", 1_250, 200.0), charge("c2", "u1", 750, 201.0), charge("c3", "u2", 100, 202.0)]
        )
        assert await assert_consistent(billing, "u1") == 5_000_000 - 2_000
        assert await assert_consistent(billing, "u2") == -100  # a balance may go negative; policy is above
        history = await billing.ledger("u1")
        assert [e.id for e in history] == ["c2", "c1", entry.id]  # newest first
        assert history[0] == charge("c2", "u1", 750, 201.0)
        assert [e.id for e in await billing.ledger("u1", limit=1, offset=1)] == ["c1"]

        # a batch naming an unknown user applies nothing at all
        with pytest.raises(UnknownUserError):
            await billing.apply([charge("c4", "u1", 1), charge("c5", "ghost", 1)])
        assert await assert_consistent(billing, "u1") == 5_000_000 - 2_000
        assert len(await billing.ledger("u1")) == 3
        with pytest.raises(ValueError):
            await billing.apply([LedgerEntry("bad", 1.0, "u1", 1, "gift")])  # type: ignore[arg-type]
        await billing.apply([])


@pytest.mark.parametrize("backend", BACKENDS)
async def test_apply_is_idempotent(backend: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async with billing_store(backend, tmp_path, monkeypatch) as billing:
        await billing.create_user(UserRecord(id="u1", name="alice"))
        await billing.create_user(UserRecord(id="u2", name="bob"))
        batch = [charge("r1", "u1", 10), charge("r2", "u2", 20), charge("r3", "u1", 30)]
        await billing.apply(batch)
        await billing.apply(batch)  # retried after a failure past the commit: no second effect
        assert await assert_consistent(billing, "u1") == -40
        assert await assert_consistent(billing, "u2") == -20

        # a partly-new batch applies only its new entries; an id repeated inside a batch counts once
        await billing.apply([charge("r3", "u1", 30), charge("r4", "u1", 5), charge("r4", "u1", 5)])
        assert await assert_consistent(billing, "u1") == -45
        assert len(await billing.ledger("u1")) == 3

        # the same batch retried concurrently still lands once
        retried = [charge(f"x{i}", "u1" if i % 2 else "u2", i + 1) for i in range(10)]
        await asyncio.gather(*(billing.apply(retried) for _ in range(8)))
        assert await assert_consistent(billing, "u1") == -45 - sum(i + 1 for i in range(10) if i % 2)
        assert await assert_consistent(billing, "u2") == -20 - sum(i + 1 for i in range(10) if i % 2 == 0)


@pytest.mark.parametrize("backend", BACKENDS)
async def test_randomized_workload_keeps_balance_equal_to_ledger(
    backend: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = random.Random(20240611)
    async with billing_store(backend, tmp_path, monkeypatch) as billing:
        user_ids = [f"u{i}" for i in range(5)]
        for uid in user_ids:
            await billing.create_user(UserRecord(id=uid, name=f"name-{uid}"))
        expected = dict.fromkeys(user_ids, 0)
        applied: set[str] = set()
        batches: list[list[LedgerEntry]] = []
        codes = await billing.create_codes(20, 1_000, batch="rand")
        redeemed: set[str] = set()
        counter = 0
        for step in range(200):
            op = rng.choice(["topup", "apply", "retry", "redeem"])
            if op == "topup":
                uid = rng.choice(user_ids)
                amount = rng.randint(1, 10**9)
                await billing.topup(uid, amount)
                expected[uid] += amount
            elif op == "apply" or (op == "retry" and not batches):
                batch = []
                for _ in range(rng.randint(1, 6)):
                    counter += 1
                    kind: LedgerKind = rng.choice(["charge", "charge", "adjust"])
                    amount = -rng.randint(0, 10**6) if kind == "charge" else rng.randint(-500, 500)
                    batch.append(LedgerEntry(f"e{counter}", float(step), rng.choice(user_ids), amount, kind))
                if batches and rng.random() < 0.3:
                    batch += rng.sample(batches[-1], 1)  # overlaps an already applied batch
                await billing.apply(batch)
                for e in batch:
                    if e.id not in applied:
                        applied.add(e.id)
                        expected[e.user_id] += e.amount
                batches.append(batch)
            elif op == "retry":
                await billing.apply(rng.choice(batches))
            else:
                code = rng.choice(codes)
                uid = rng.choice(user_ids)
                if code in redeemed:
                    with pytest.raises(RedemptionError):
                        await billing.redeem(code, uid)
                else:
                    assert await billing.redeem(code, uid) == 1_000
                    redeemed.add(code)
                    expected[uid] += 1_000
        for uid in user_ids:
            assert await assert_consistent(billing, uid) == expected[uid]


@pytest.mark.parametrize("backend", BACKENDS)
async def test_redemption_is_single_use_under_concurrency(
    backend: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with billing_store(backend, tmp_path, monkeypatch) as billing:
        for i in range(20):
            await billing.create_user(UserRecord(id=f"u{i}", name=f"user{i}"))
        (code,) = await billing.create_codes(1, 2_500_000, expires_at=None, batch="promo")
        assert code.startswith(CODE_PREFIX) and len(code) == len(CODE_PREFIX) + 24

        results = await asyncio.gather(
            *(billing.redeem(code, f"u{i % 4}", now=50.0) for i in range(20)), return_exceptions=True
        )
        wins = [r for r in results if not isinstance(r, BaseException)]
        losses = [r for r in results if isinstance(r, BaseException)]
        assert wins == [2_500_000]
        assert all(isinstance(r, RedemptionError) and r.reason == "redeemed" for r in losses), losses
        balances = [await assert_consistent(billing, f"u{i}") for i in range(4)]
        assert sorted(balances) == [0, 0, 0, 2_500_000]
        stored = await billing.get_code(code)
        assert stored is not None and stored.redeemed_at == 50.0 and stored.batch == "promo"
        assert stored.redeemed_by == f"u{balances.index(2_500_000)}"

        # different users racing for one code: still exactly one credit
        (code2,) = await billing.create_codes(1, 7, batch="promo")
        results = await asyncio.gather(
            *(billing.redeem(code2, f"u{i}") for i in range(20)), return_exceptions=True
        )
        assert [r for r in results if not isinstance(r, BaseException)] == [7]
        total = sum([await assert_consistent(billing, f"u{i}") for i in range(20)])
        assert total == 2_500_007


@pytest.mark.parametrize("backend", BACKENDS)
async def test_expired_unknown_and_foreign_codes_are_refused(
    backend: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with billing_store(backend, tmp_path, monkeypatch) as billing:
        await billing.create_user(UserRecord(id="u1", name="alice"))
        expiring = await billing.create_codes(3, 100, expires_at=1_000.0, batch="b1", now=10.0)
        assert len(set(expiring)) == 3

        with pytest.raises(RedemptionError) as err:
            await billing.redeem(expiring[0], "u1", now=1_000.0)  # expiry is exclusive
        assert err.value.reason == "expired" and "expired" in str(err.value)
        with pytest.raises(RedemptionError) as err:
            await billing.redeem("rc-" + "A" * 24, "u1", now=10.0)
        assert err.value.reason == "unknown"
        assert await assert_consistent(billing, "u1") == 0
        code = await billing.get_code(expiring[0])
        assert code is not None and code.redeemed_by is None  # a refused attempt leaves it untouched

        # an unknown user cannot burn a code: the claim is rolled back with the credit
        with pytest.raises(UnknownUserError):
            await billing.redeem(expiring[1], "ghost", now=10.0)
        assert await billing.redeem(expiring[1], "u1", now=999.0) == 100
        with pytest.raises(RedemptionError) as err:
            await billing.redeem(expiring[1], "u1", now=999.5)
        assert err.value.reason == "redeemed"
        assert await assert_consistent(billing, "u1") == 100
        (entry,) = await billing.ledger("u1")
        assert (entry.kind, entry.amount, entry.ts) == ("redeem", 100, 999.0)
        assert expiring[1] not in (entry.id + (entry.note or ""))

        listed = await billing.list_codes(batch="b1")
        assert sorted(c.code_hash for c in listed) == sorted(hash_code(c) for c in expiring)
        assert [c.redeemed_by for c in listed].count("u1") == 1
        assert await billing.list_codes(batch="other") == []
        with pytest.raises(ValueError):
            await billing.create_codes(0, 100)
        with pytest.raises(ValueError):
            await billing.create_codes(1, 0)


@pytest.mark.parametrize("backend", BACKENDS)
async def test_groups_in_use_stay_and_voided_codes_cannot_be_redeemed(
    backend: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with billing_store(backend, tmp_path, monkeypatch) as billing:
        await billing.create_group(GroupRecord(id="g1", name="one"))
        await billing.create_user(UserRecord(id="u1", name="alice", group_id="g1"))
        with pytest.raises(GroupInUseError):
            await billing.delete_group("g1")
        assert await billing.get_group("g1") is not None
        await billing.update_user(UserRecord(id="u1", name="alice"))
        assert await billing.delete_group("g1") is True
        assert await billing.delete_group("g1") is False
        assert await billing.get_group("g1") is None

        codes = await billing.create_codes(2, 100, batch="v", now=10.0)
        voided = await billing.void_code(hash_code(codes[0]), now=20.0)
        assert voided is not None and voided.expires_at == 20.0 and voided.redeemed_by is None
        with pytest.raises(RedemptionError) as err:
            await billing.redeem(codes[0], "u1", now=21.0)
        assert err.value.reason == "expired"
        assert await billing.redeem(codes[1], "u1", now=30.0) == 100
        kept = await billing.void_code(hash_code(codes[1]), now=40.0)  # redeemed: left as it was
        assert kept is not None and kept.redeemed_by == "u1" and kept.expires_at is None
        assert await billing.void_code("0" * 64) is None
        assert await assert_consistent(billing, "u1") == 100


async def test_codes_are_stored_only_as_hashes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async with billing_store("sqlite", tmp_path, monkeypatch) as billing:
        await billing.create_user(UserRecord(id="u1", name="alice"))
        codes = await billing.create_codes(5, 42, batch="secret-batch")
        await billing.redeem(codes[0], "u1")
        async with billing.engine.connect() as conn:
            hashes = set((await conn.execute(sa.select(redemption_codes.c.code_hash))).scalars())
            notes = list((await conn.execute(sa.select(ledger.c.id, ledger.c.note))).all())
    assert hashes == {hash_code(c) for c in codes}
    assert all(codes[0] not in f"{row.id} {row.note}" for row in notes)
    # the whole database on disk (main file plus any write-ahead log) holds no plaintext code
    blob = _database_bytes(tmp_path)
    assert b"secret-batch" in blob  # sanity: the data really is in these files
    for code in codes:
        assert code.encode() not in blob
        assert code[len(CODE_PREFIX) :].encode() not in blob


def _database_bytes(data_dir: Path) -> bytes:
    return b"".join(p.read_bytes() for p in data_dir.iterdir() if p.name.startswith("omnirelay.db"))


async def test_migration_matches_table_definitions(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from omnirelay.storage.tables import metadata

    billing_tables = {"groups", "users", "ledger", "redemption_codes"}

    def diff(conn: sa.Connection) -> list[object]:
        context = MigrationContext.configure(conn)
        changes = compare_metadata(context, metadata)
        return [c for c in changes if billing_tables & set(_table_names(c))]

    async with (
        billing_store("sqlite", tmp_path, monkeypatch) as billing,
        billing.engine.connect() as conn,
    ):
        assert await conn.run_sync(diff) == []


def _table_names(change: object) -> list[str]:
    names: list[str] = []
    items = change if isinstance(change, list) else [change]
    for item in items:
        for part in item if isinstance(item, tuple) else (item,):
            name = getattr(part, "name", None)
            table = getattr(part, "table", None)
            if isinstance(part, str):
                names.append(part)
            if isinstance(name, str):
                names.append(name)
            if table is not None and isinstance(getattr(table, "name", None), str):
                names.append(table.name)
    return names
