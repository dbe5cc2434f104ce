"""`/admin/api/users`: create and read users, and top up their balance (a ledger entry)."""

from __future__ import annotations

import secrets
import time
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import Request
from starlette.responses import Response

from omnirelay.admin.keys import BIGINT, MAX_BODY, parse_model
from omnirelay.call import Call
from omnirelay.errors import BadRequest, NotFound
from omnirelay.pipeline import read_body
from omnirelay.runtime import Runtime
from omnirelay.storage.billing import UserRecord
from omnirelay.transport import json


class UserCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=256)
    role: Literal["admin", "user"] = "user"
    group_id: str | None = Field(None, max_length=64)


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
