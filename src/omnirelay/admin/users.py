"""`/admin/api/users`: create, list, read and change users, top up their balance (a ledger entry) and
read their ledger."""

from __future__ import annotations

import secrets
import time
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import Request
from starlette.responses import Response

from omnirelay.admin.params import BIGINT, MAX_BODY, page, page_json, parse_model
from omnirelay.admin.spec import PAGE_QUERY, Operation, QueryParam, list_of, model_schema, nullable
from omnirelay.call import Call
from omnirelay.errors import BadRequest, NotFound
from omnirelay.pipeline import read_body
from omnirelay.runtime import Runtime
from omnirelay.storage.billing import LedgerEntry, UserRecord
from omnirelay.transport import json


class UserCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=256)
    role: Literal["admin", "user"] = "user"
    group_id: str | None = Field(None, max_length=64)


class UserUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(None, min_length=1, max_length=256)
    role: Literal["admin", "user"] | None = None
    status: Literal["active", "disabled"] | None = None
    group_id: str | None = Field(None, max_length=64)  # null: no group


class TopUp(BaseModel):
    model_config = ConfigDict(extra="forbid")

    amount: int = Field(ge=1, le=BIGINT)  # micro-units of credit
    note: str | None = Field(None, max_length=500)


def user_json(user: UserRecord) -> dict[str, Any]:
    return {
        "id": user.id,
        "object": "user",
        "name": user.name,
        "role": user.role,
        "group_id": user.group_id,
        "balance": user.balance,
        "status": user.status,
        "created_at": user.created_at,
    }


def ledger_json(entry: LedgerEntry) -> dict[str, Any]:
    return {
        "id": entry.id,
        "object": "ledger_entry",
        "ts": entry.ts,
        "amount": entry.amount,
        "kind": entry.kind,
        "key_id": entry.key_id,
        "request_id": entry.request_id,
        "note": entry.note,
    }


async def ledger_page(rt: Runtime, request: Request, call: Call, user_id: str) -> Response:
    limit, offset = page(request.query_params)
    entries = await rt.store.billing.ledger(user_id, limit, offset)
    return call.json_response(page_json([ledger_json(e) for e in entries], limit, offset))


async def _user(rt: Runtime, user_id: str) -> UserRecord:
    user = await rt.store.billing.get_user(user_id)
    if user is None:
        raise NotFound(f"No user {user_id!r}.", code="user_not_found")
    return user


async def create(rt: Runtime, request: Request, call: Call) -> Response:
    fields: UserCreate = parse_model(UserCreate, await read_body(request, MAX_BODY))
    if await rt.store.billing.get_user_by_name(fields.name) is not None:
        raise BadRequest(f"A user named {fields.name!r} exists already.", param="name", code="duplicate_name")
    user = UserRecord(
        id="usr_" + secrets.token_hex(12),
        name=fields.name,
        role=fields.role,
        group_id=fields.group_id,
        created_at=time.time(),
    )
    try:
        await rt.store.billing.create_user(user)
    except ValueError as exc:
        raise BadRequest(str(exc), code="invalid_value") from None
    return call.json_response(json.dumps(user_json(await _user(rt, user.id))), status=201)


async def get(rt: Runtime, request: Request, call: Call) -> Response:
    return call.json_response(json.dumps(user_json(await _user(rt, request.path_params["user_id"]))))


async def topup(rt: Runtime, request: Request, call: Call) -> Response:
    user = await _user(rt, request.path_params["user_id"])
    fields: TopUp = parse_model(TopUp, await read_body(request, MAX_BODY))
    await rt.store.billing.topup(user.id, fields.amount, fields.note)
    rt.wallets.credit(user.id, fields.amount)
    return call.json_response(json.dumps(user_json(await _user(rt, user.id))))


async def list_users(rt: Runtime, request: Request, call: Call) -> Response:
    limit, offset = page(request.query_params)
    users = await rt.store.billing.list_users(limit, offset, request.query_params.get("group_id"))
    return call.json_response(page_json([user_json(u) for u in users], limit, offset))


async def update(rt: Runtime, request: Request, call: Call) -> Response:
    user = await _user(rt, request.path_params["user_id"])
    changes = parse_model(UserUpdate, await read_body(request, MAX_BODY)).model_dump(exclude_unset=True)
    for name in ("name", "role", "status"):
        if name in changes and changes[name] is None:
            raise BadRequest(f"{name} cannot be null.", param=name, code="invalid_value")
    new_name = changes.get("name")
    if new_name not in (None, user.name) and await rt.store.billing.get_user_by_name(new_name) is not None:
        raise BadRequest(f"A user named {new_name!r} exists already.", param="name", code="duplicate_name")
    group_id = changes.get("group_id")
    if group_id is not None and await rt.store.billing.get_group(group_id) is None:
        raise BadRequest(f"No group {group_id!r}.", param="group_id", code="group_not_found")
    for name, value in changes.items():
        setattr(user, name, value)
    await rt.store.billing.update_user(user)
    fresh = await _user(rt, user.id)
    rt.auth.remember_user(fresh)  # a disabled user's keys stop working at once, a new group applies
    return call.json_response(json.dumps(user_json(fresh)))


async def disable(rt: Runtime, request: Request, call: Call) -> Response:
    """Users are never erased (their ledger is the money's history): DELETE disables the user, whose
    keys stop working at once."""
    user = await _user(rt, request.path_params["user_id"])
    user.status = "disabled"
    await rt.store.billing.update_user(user)
    fresh = await _user(rt, user.id)
    rt.auth.remember_user(fresh)
    return call.json_response(json.dumps(user_json(fresh)))


async def ledger(rt: Runtime, request: Request, call: Call) -> Response:
    user = await _user(rt, request.path_params["user_id"])
    return await ledger_page(rt, request, call, user.id)


OPERATIONS: dict[tuple[str, str], Operation] = {
    ("GET", "/admin/api/users"): Operation(
        "listUsers",
        "List users in creation order, optionally only one group's.",
        "users",
        "UserList",
        query=(*PAGE_QUERY, QueryParam("group_id", {"type": "string"}, "Only users of this group.")),
    ),
    ("PATCH", "/admin/api/users/{user_id}"): Operation(
        "updateUser",
        "Change a user's name, role, status or group; takes effect at once (a disabled user's keys stop).",
        "users",
        "User",
        body="UserUpdate",
    ),
    ("DELETE", "/admin/api/users/{user_id}"): Operation(
        "disableUser",
        "Disable a user (users are kept with their ledger); the user's keys stop working at once.",
        "users",
        "User",
    ),
    ("GET", "/admin/api/users/{user_id}/ledger"): Operation(
        "getUserLedger", "A user's ledger entries, newest first.", "users", "LedgerList", query=PAGE_QUERY
    ),
}


def schemas() -> dict[str, Any]:
    defs: dict[str, Any] = {}
    out: dict[str, Any] = {
        "UserUpdate": model_schema(UserUpdate, "UserUpdate", defs),
        "UserList": list_of("User"),
        "LedgerEntry": {
            "type": "object",
            "properties": {
                "id": {"type": "string"},
                "object": {"const": "ledger_entry"},
                "ts": {"type": "number", "description": "Unix time."},
                "amount": {
                    "type": "integer",
                    "description": "Micro-units: positive credits (topup, redeem), negative charges.",
                },
                "kind": {"enum": ["topup", "charge", "redeem", "adjust"]},
                "key_id": nullable({"type": "string"}),
                "request_id": nullable({"type": "string"}),
                "note": nullable({"type": "string"}),
            },
            "required": ["id", "object", "ts", "amount", "kind"],
        },
        "LedgerList": list_of("LedgerEntry"),
    }
    return {**defs, **out}
