"""Users, groups, balances, an append-only ledger and redemption codes (SQLAlchemy 2 async).

Money is always an integer number of micro-units of credit. A user's `balance` only ever moves in the
same transaction that appends ledger rows, so `balance == sum(ledger.amount)` holds for every user.
The tables live on the shared `omnirelay.storage.tables.metadata`; migration 0006 creates them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import secrets
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from omnirelay.storage.tables import metadata

Role = Literal["admin", "user"]
LedgerKind = Literal["topup", "charge", "redeem", "adjust"]
RedemptionFailure = Literal["unknown", "redeemed", "expired"]

_ROLES = frozenset(get_args(Role))
_KINDS = frozenset(get_args(LedgerKind))
CODE_PREFIX = "rc-"

# --------------------------------------------------------------------------------------------- tables

groups = sa.Table(
    "groups",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("name", sa.String(256), nullable=False, unique=True),
    sa.Column("multiplier_num", sa.BigInteger, nullable=False),
    sa.Column("multiplier_den", sa.BigInteger, nullable=False),
)

users = sa.Table(
    "users",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("name", sa.String(256), nullable=False, unique=True),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("group_id", sa.String(64), sa.ForeignKey("groups.id"), index=True),
    sa.Column("balance", sa.BigInteger, nullable=False, default=0),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
)

ledger = sa.Table(
    "ledger",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("ts", sa.Float, nullable=False),
    sa.Column("user_id", sa.String(64), sa.ForeignKey("users.id"), nullable=False),
    sa.Column("amount", sa.BigInteger, nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("key_id", sa.String(64)),
    sa.Column("request_id", sa.String(64)),
    sa.Column("note", sa.Text),
    sa.Index("ix_ledger_user_id_ts", "user_id", "ts"),
)

redemption_codes = sa.Table(
    "redemption_codes",
    metadata,
    sa.Column("code_hash", sa.String(64), primary_key=True),
    sa.Column("value", sa.BigInteger, nullable=False),
    sa.Column("expires_at", sa.Float),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("redeemed_by", sa.String(64)),
    sa.Column("redeemed_at", sa.Float),
    sa.Column("batch", sa.String(128), index=True),
)

# -------------------------------------------------------------------------------------------- records


@dataclass(slots=True)
class GroupRecord:
    """A pricing group: prices are multiplied by the exact fraction multiplier_num / multiplier_den."""

    id: str
    name: str
    multiplier_num: int = 1
    multiplier_den: int = 1


@dataclass(slots=True)
class UserRecord:
    id: str
    name: str
    role: Role = "user"
    group_id: str | None = None
    balance: int = 0  # micro-units; moves only through the ledger
    created_at: float = field(default_factory=time.time)
    status: str = "active"  # active | disabled


@dataclass(slots=True)
class LedgerEntry:
    """One append-only ledger row. `id` makes a retried batch idempotent."""

    id: str
    ts: float
    user_id: str
    amount: int  # micro-units: positive = credit, negative = charge
    kind: LedgerKind
    key_id: str | None = None
    request_id: str | None = None
    note: str | None = None


@dataclass(slots=True)
class RedemptionCode:
    """A stored code: only the SHA-256 of the plaintext is kept."""

    code_hash: str
    value: int
    expires_at: float | None
    created_at: float
    redeemed_by: str | None = None
    redeemed_at: float | None = None
    batch: str | None = None


_GROUP_FIELDS = [f.name for f in dataclasses.fields(GroupRecord)]
_USER_FIELDS = [f.name for f in dataclasses.fields(UserRecord)]
_LEDGER_FIELDS = [f.name for f in dataclasses.fields(LedgerEntry)]
_CODE_FIELDS = [f.name for f in dataclasses.fields(RedemptionCode)]

# --------------------------------------------------------------------------------------------- errors


class BillingError(Exception):
    """Base of the billing store's own errors."""


class UnknownUserError(BillingError, LookupError):
    def __init__(self, user_ids: Sequence[str]) -> None:
        self.user_ids = list(user_ids)
        super().__init__(f"unknown user(s): {', '.join(sorted(self.user_ids))}")


class GroupInUseError(BillingError):
    def __init__(self, group_id: str) -> None:
        super().__init__(f"users still belong to group {group_id}")
        self.group_id = group_id


class RedemptionError(BillingError):
    """A code that cannot be redeemed; `reason` says why (unknown, redeemed, expired)."""

    def __init__(self, reason: RedemptionFailure) -> None:
        self.reason: RedemptionFailure = reason
        messages = {
            "unknown": "unknown redemption code",
            "redeemed": "redemption code already redeemed",
            "expired": "redemption code expired",
        }
        super().__init__(messages[reason])


def hash_code(code: str) -> str:
    return hashlib.sha256(code.encode()).hexdigest()


def new_code() -> str:
    """`rc-` + 24 URL-safe characters (18 random bytes, 144 bits)."""
    return CODE_PREFIX + secrets.token_urlsafe(18)


def new_entry_id(prefix: str = "led") -> str:
    return f"{prefix}_{uuid.uuid4().hex}"


def _check_group(group: GroupRecord) -> None:
    if group.multiplier_den <= 0 or group.multiplier_num < 0:
        raise ValueError("a group multiplier needs multiplier_num >= 0 and multiplier_den > 0")


def _check_user(user: UserRecord) -> None:
    if user.role not in _ROLES:
        raise ValueError(f"unknown role {user.role!r}")


# ------------------------------------------------------------------------------------------ interface


class BillingStore(ABC):
    # users
    @abstractmethod
    async def create_user(self, user: UserRecord) -> None:
        """Insert a user. A nonzero `balance` is recorded as an opening "adjust" ledger entry."""

    @abstractmethod
    async def get_user(self, user_id: str) -> UserRecord | None: ...

    @abstractmethod
    async def get_user_by_name(self, name: str) -> UserRecord | None: ...

    @abstractmethod
    async def list_users(
        self, limit: int = 100, offset: int = 0, group_id: str | None = None
    ) -> list[UserRecord]:
        """Ordered by (created_at, id)."""

    @abstractmethod
    async def update_user(self, user: UserRecord) -> None:
        """Overwrite name/role/group/status; the balance is never overwritten (ledger only)."""

    # groups
    @abstractmethod
    async def create_group(self, group: GroupRecord) -> None: ...

    @abstractmethod
    async def get_group(self, group_id: str) -> GroupRecord | None: ...

    @abstractmethod
    async def list_groups(self, limit: int = 100, offset: int = 0) -> list[GroupRecord]: ...

    @abstractmethod
    async def update_group(self, group: GroupRecord) -> None: ...

    @abstractmethod
    async def delete_group(self, group_id: str) -> bool:
        """Delete a group no user belongs to: False when unknown; GroupInUseError when in use."""

    # money
    @abstractmethod
    async def balance(self, user_id: str) -> int | None:
        """The user's balance in micro-units, None for an unknown user."""

    @abstractmethod
    async def apply(self, entries: Sequence[LedgerEntry]) -> None:
        """In ONE transaction: append the entries not already stored (by id) and move each user's
        balance by the sum of its new entries. Raises UnknownUserError (nothing applied)."""

    @abstractmethod
    async def topup(
        self, user_id: str, amount: int, note: str | None = None, *, ts: float | None = None
    ) -> LedgerEntry: ...

    @abstractmethod
    async def ledger(self, user_id: str, limit: int = 100, offset: int = 0) -> list[LedgerEntry]:
        """Newest first."""

    @abstractmethod
    async def ledger_sum(self, user_id: str) -> int: ...

    # redemption codes
    @abstractmethod
    async def create_codes(
        self,
        count: int,
        value: int,
        expires_at: float | None = None,
        batch: str | None = None,
        *,
        now: float | None = None,
    ) -> list[str]:
        """Mint codes; the plaintexts are returned this once and only their hashes are stored."""

    @abstractmethod
    async def redeem(self, code: str, user_id: str, now: float | None = None) -> int:
        """Single use, atomically: credit the code's value to the user and return it.
        Raises RedemptionError (unknown, redeemed, expired) or UnknownUserError."""

    @abstractmethod
    async def get_code(self, code: str) -> RedemptionCode | None: ...

    @abstractmethod
    async def void_code(self, code_hash: str, now: float | None = None) -> RedemptionCode | None:
        """Make an unredeemed code expire now (it stays listed); None when unknown. A redeemed
        code is returned unchanged."""

    @abstractmethod
    async def list_codes(
        self, batch: str | None = None, limit: int = 100, offset: int = 0
    ) -> list[RedemptionCode]: ...


# ------------------------------------------------------------------------------------ SQL implementation


class SqlBillingStore(BillingStore):
    """On the engine of a started `SqlStore` (pass `store.engine`); the schema comes from its migrations."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    # users ----------------------------------------------------------------------------------------
    async def create_user(self, user: UserRecord) -> None:
        _check_user(user)
        values = dataclasses.asdict(user)
        values["balance"] = 0
        async with self.engine.begin() as conn:
            await conn.execute(sa.insert(users).values(**values))
            if user.balance:
                opening = LedgerEntry(
                    id=new_entry_id("open"),
                    ts=user.created_at,
                    user_id=user.id,
                    amount=user.balance,
                    kind="adjust",
                    note="opening balance",
                )
                await self._apply(conn, [opening])

    async def _one_user(self, clause: Any) -> UserRecord | None:
        cols = [users.c[f] for f in _USER_FIELDS]
        async with self.engine.connect() as conn:
            row = (await conn.execute(sa.select(*cols).where(clause))).first()
        return UserRecord(**row._asdict()) if row else None

    async def get_user(self, user_id: str) -> UserRecord | None:
        return await self._one_user(users.c.id == user_id)

    async def get_user_by_name(self, name: str) -> UserRecord | None:
        return await self._one_user(users.c.name == name)

    async def list_users(
        self, limit: int = 100, offset: int = 0, group_id: str | None = None
    ) -> list[UserRecord]:
        cols = [users.c[f] for f in _USER_FIELDS]
        query = sa.select(*cols).order_by(users.c.created_at, users.c.id)
        if group_id is not None:
            query = query.where(users.c.group_id == group_id)
        async with self.engine.connect() as conn:
            rows = await conn.execute(query.limit(limit).offset(offset))
            return [UserRecord(**row._asdict()) for row in rows]

    async def update_user(self, user: UserRecord) -> None:
        _check_user(user)
        values = dataclasses.asdict(user)
        for fixed in ("id", "balance", "created_at"):
            values.pop(fixed)
        async with self.engine.begin() as conn:
            result = await conn.execute(sa.update(users).where(users.c.id == user.id).values(**values))
            if result.rowcount == 0:
                raise UnknownUserError([user.id])

    # groups ---------------------------------------------------------------------------------------
    async def create_group(self, group: GroupRecord) -> None:
        _check_group(group)
        async with self.engine.begin() as conn:
            await conn.execute(sa.insert(groups).values(**dataclasses.asdict(group)))

    async def get_group(self, group_id: str) -> GroupRecord | None:
        cols = [groups.c[f] for f in _GROUP_FIELDS]
        async with self.engine.connect() as conn:
            row = (await conn.execute(sa.select(*cols).where(groups.c.id == group_id))).first()
        return GroupRecord(**row._asdict()) if row else None

    async def list_groups(self, limit: int = 100, offset: int = 0) -> list[GroupRecord]:
        cols = [groups.c[f] for f in _GROUP_FIELDS]
        query = sa.select(*cols).order_by(groups.c.name, groups.c.id).limit(limit).offset(offset)
        async with self.engine.connect() as conn:
            return [GroupRecord(**row._asdict()) for row in await conn.execute(query)]

    async def update_group(self, group: GroupRecord) -> None:
        _check_group(group)
        values = dataclasses.asdict(group)
        values.pop("id")
        async with self.engine.begin() as conn:
            result = await conn.execute(sa.update(groups).where(groups.c.id == group.id).values(**values))
            if result.rowcount == 0:
                raise LookupError(f"unknown group: {group.id}")

    async def delete_group(self, group_id: str) -> bool:
        async with self.engine.begin() as conn:
            members = await conn.execute(sa.select(users.c.id).where(users.c.group_id == group_id).limit(1))
            if members.first() is not None:
                raise GroupInUseError(group_id)
            result = await conn.execute(sa.delete(groups).where(groups.c.id == group_id))
            return bool(result.rowcount)

    # money ----------------------------------------------------------------------------------------
    async def balance(self, user_id: str) -> int | None:
        async with self.engine.connect() as conn:
            value = (await conn.execute(sa.select(users.c.balance).where(users.c.id == user_id))).scalar()
        return None if value is None else int(value)

    async def apply(self, entries: Sequence[LedgerEntry]) -> None:
        if not entries:
            return
        async with self.engine.begin() as conn:
            await self._apply(conn, entries)

    async def _apply(self, conn: AsyncConnection, entries: Sequence[LedgerEntry]) -> None:
        """Append the new entries and move the balances, on the caller's transaction."""
        batch: dict[str, LedgerEntry] = {}
        for entry in entries:
            if entry.kind not in _KINDS:
                raise ValueError(f"unknown ledger kind {entry.kind!r}")
            batch.setdefault(entry.id, entry)  # an id repeated inside one batch counts once
        user_ids = sorted({e.user_id for e in batch.values()})
        known = await conn.execute(sa.select(users.c.id).where(users.c.id.in_(user_ids)))
        missing = set(user_ids) - set(known.scalars())
        if missing:
            raise UnknownUserError(sorted(missing))

        inserted = await self._insert_new_entries(conn, list(batch.values()))
        deltas: dict[str, int] = {}
        for entry_id in inserted:
            entry = batch[entry_id]
            deltas[entry.user_id] = deltas.get(entry.user_id, 0) + entry.amount
        for user_id in sorted(deltas):  # one fixed lock order: concurrent batches cannot deadlock
            if deltas[user_id]:
                await conn.execute(
                    sa.update(users)
                    .where(users.c.id == user_id)
                    .values(balance=users.c.balance + deltas[user_id])
                )

    async def _insert_new_entries(self, conn: AsyncConnection, entries: list[LedgerEntry]) -> list[str]:
        """Insert the entries whose id is not stored yet; return the ids actually inserted."""
        rows = [{f: getattr(e, f) for f in _LEDGER_FIELDS} for e in entries]
        dialect = conn.dialect.name
        if dialect in ("postgresql", "sqlite"):
            # INSERT .. ON CONFLICT DO NOTHING RETURNING id: exact even against a concurrent
            # transaction inserting the same id (it waits for that one, then skips the row).
            if dialect == "postgresql":
                from sqlalchemy.dialects.postgresql import insert as pg_insert

                stmt: Any = pg_insert(ledger).on_conflict_do_nothing(index_elements=[ledger.c.id])
            else:
                from sqlalchemy.dialects.sqlite import insert as sqlite_insert

                stmt = sqlite_insert(ledger).on_conflict_do_nothing(index_elements=[ledger.c.id])
            inserted: list[str] = []
            for row in rows:
                result = await conn.execute(stmt.values(**row).returning(ledger.c.id))
                inserted.extend(result.scalars())
            return inserted
        existing = await conn.execute(sa.select(ledger.c.id).where(ledger.c.id.in_([r["id"] for r in rows])))
        seen = set(existing.scalars())
        fresh = [r for r in rows if r["id"] not in seen]
        if fresh:
            await conn.execute(sa.insert(ledger), fresh)
        return [r["id"] for r in fresh]

    async def topup(
        self, user_id: str, amount: int, note: str | None = None, *, ts: float | None = None
    ) -> LedgerEntry:
        if amount <= 0:
            raise ValueError("a top-up amount must be positive (use an 'adjust' entry to debit)")
        entry = LedgerEntry(
            id=new_entry_id("top"),
            ts=time.time() if ts is None else ts,
            user_id=user_id,
            amount=amount,
            kind="topup",
            note=note,
        )
        await self.apply([entry])
        return entry

    async def ledger(self, user_id: str, limit: int = 100, offset: int = 0) -> list[LedgerEntry]:
        cols = [ledger.c[f] for f in _LEDGER_FIELDS]
        query = (
            sa.select(*cols)
            .where(ledger.c.user_id == user_id)
            .order_by(ledger.c.ts.desc(), ledger.c.id.desc())
            .limit(limit)
            .offset(offset)
        )
        async with self.engine.connect() as conn:
            return [LedgerEntry(**row._asdict()) for row in await conn.execute(query)]

    async def ledger_sum(self, user_id: str) -> int:
        query = sa.select(sa.func.coalesce(sa.func.sum(ledger.c.amount), 0)).where(
            ledger.c.user_id == user_id
        )
        async with self.engine.connect() as conn:
            return int((await conn.execute(query)).scalar_one())

    # redemption codes -----------------------------------------------------------------------------
    async def create_codes(
        self,
        count: int,
        value: int,
        expires_at: float | None = None,
        batch: str | None = None,
        *,
        now: float | None = None,
    ) -> list[str]:
        if count <= 0:
            raise ValueError("count must be positive")
        if value <= 0:
            raise ValueError("a code's value must be positive")
        created_at = time.time() if now is None else now
        codes = [new_code() for _ in range(count)]
        rows = [
            {
                "code_hash": hash_code(code),
                "value": value,
                "expires_at": expires_at,
                "created_at": created_at,
                "redeemed_by": None,
                "redeemed_at": None,
                "batch": batch,
            }
            for code in codes
        ]
        async with self.engine.begin() as conn:
            await conn.execute(sa.insert(redemption_codes), rows)
        return codes

    async def redeem(self, code: str, user_id: str, now: float | None = None) -> int:
        at = time.time() if now is None else now
        code_hash = hash_code(code.strip())
        table = redemption_codes
        async with self.engine.begin() as conn:
            # The UPDATE is the first statement, so the transaction takes the write lock at once
            # (SQLite) or the row lock (PostgreSQL): exactly one concurrent redeemer matches.
            claimed = await conn.execute(
                sa.update(table)
                .where(
                    table.c.code_hash == code_hash,
                    table.c.redeemed_by.is_(None),
                    sa.or_(table.c.expires_at.is_(None), table.c.expires_at > at),
                )
                .values(redeemed_by=user_id, redeemed_at=at)
            )
            if claimed.rowcount != 1:
                row = (
                    await conn.execute(sa.select(table.c.redeemed_by).where(table.c.code_hash == code_hash))
                ).first()
                if row is None:
                    raise RedemptionError("unknown")
                raise RedemptionError("redeemed" if row.redeemed_by is not None else "expired")
            found = (
                await conn.execute(
                    sa.select(table.c.value, table.c.batch).where(table.c.code_hash == code_hash)
                )
            ).one()
            value = int(found.value)
            entry = LedgerEntry(
                id=f"rdm_{code_hash[:40]}",  # one code, one credit: never the plaintext
                ts=at,
                user_id=user_id,
                amount=value,
                kind="redeem",
                note=f"batch {found.batch}" if found.batch else None,
            )
            await self._apply(conn, [entry])  # UnknownUserError rolls the claim back too
        return value

    async def get_code(self, code: str) -> RedemptionCode | None:
        cols = [redemption_codes.c[f] for f in _CODE_FIELDS]
        query = sa.select(*cols).where(redemption_codes.c.code_hash == hash_code(code.strip()))
        async with self.engine.connect() as conn:
            row = (await conn.execute(query)).first()
        return RedemptionCode(**row._asdict()) if row else None

    async def void_code(self, code_hash: str, now: float | None = None) -> RedemptionCode | None:
        now = time.time() if now is None else now
        table = redemption_codes
        async with self.engine.begin() as conn:
            await conn.execute(
                sa.update(table)
                .where(table.c.code_hash == code_hash, table.c.redeemed_by.is_(None))
                .where(sa.or_(table.c.expires_at.is_(None), table.c.expires_at > now))
                .values(expires_at=now)
            )
            cols = [table.c[f] for f in _CODE_FIELDS]
            row = (await conn.execute(sa.select(*cols).where(table.c.code_hash == code_hash))).first()
        return RedemptionCode(**row._asdict()) if row else None

    async def list_codes(
        self, batch: str | None = None, limit: int = 100, offset: int = 0
    ) -> list[RedemptionCode]:
        cols = [redemption_codes.c[f] for f in _CODE_FIELDS]
        query = sa.select(*cols).order_by(redemption_codes.c.created_at, redemption_codes.c.code_hash)
        if batch is not None:
            query = query.where(redemption_codes.c.batch == batch)
        async with self.engine.connect() as conn:
            rows = await conn.execute(query.limit(limit).offset(offset))
            return [RedemptionCode(**row._asdict()) for row in rows]
