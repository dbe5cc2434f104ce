"""`/admin/api/me`: the calling key's user — its balance, group and role, its ledger — and redeeming a
code into its own balance. Any key that belongs to a user may call these (route name `admin.me`)."""

from __future__ import annotations

from fractions import Fraction
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import Request
from starlette.responses import Response

from omnirelay.accounting.prices import multiplier_text, price_multiplier
from omnirelay.admin.params import MAX_BODY, parse_model
from omnirelay.admin.spec import PAGE_QUERY, Operation, model_schema, nullable, ref
from omnirelay.admin.users import ledger_page, user_json
from omnirelay.call import Call
from omnirelay.errors import BadRequest, NotFound
from omnirelay.pipeline import read_body
from omnirelay.runtime import Runtime
from omnirelay.storage.billing import GroupRecord, RedemptionError, UnknownUserError, UserRecord
from omnirelay.transport import json

_REDEEM_FAILURES = {
    "unknown": ("No such redemption code.", "redemption_code_invalid"),
    "redeemed": ("This redemption code has been redeemed already.", "redemption_code_redeemed"),
    "expired": ("This redemption code has expired.", "redemption_code_expired"),
}


class Redeem(BaseModel):
    model_config = ConfigDict(extra="forbid")

    code: str = Field(min_length=1, max_length=128)


def _user_id(call: Call) -> str:
    principal = call.principal
    user_id = principal.user_id if principal is not None else None
    if user_id is None:
        raise NotFound("This key belongs to no user (the master key has no balance).", code="no_user")
    return user_id


async def _me(rt: Runtime, call: Call) -> UserRecord:
    user = await rt.store.billing.get_user(_user_id(call))
    if user is None:
        raise NotFound("The user of this key no longer exists.", code="no_user")
    return user


def _fraction(value: Fraction) -> str:
    return multiplier_text(value)  # the same form as the groups API


def _group_json(group: GroupRecord | None) -> dict[str, Any] | None:
    if group is None:
        return None
    multiplier = Fraction(group.multiplier_num, group.multiplier_den)
    return {"id": group.id, "name": group.name, "multiplier": _fraction(multiplier)}


def _balance(rt: Runtime, user: UserRecord) -> int:
    """The in-memory wallet when this process has loaded it (charges not yet written included)."""
    held = rt.wallets.balance(user.id)
    return user.balance if held is None else held


async def get(rt: Runtime, request: Request, call: Call) -> Response:
    user = await _me(rt, call)
    principal = call.principal
    assert principal is not None and principal.key is not None  # _me found a user, so a key
    group = principal.group if principal.group is not None and principal.group.id == user.group_id else None
    if group is None and user.group_id:
        group = await rt.store.billing.get_group(user.group_id)
    effective = price_multiplier(
        (group.multiplier_num, group.multiplier_den) if group is not None else None,
        principal.key.price_multiplier,
    )
    body = {
        **user_json(user),
        "balance": _balance(rt, user),
        "group": _group_json(group),
        "key": {
            "id": principal.key.id,
            "price_multiplier": principal.key.price_multiplier,
            "effective_multiplier": _fraction(effective),
        },
    }
    return call.json_response(json.dumps(body))


async def ledger(rt: Runtime, request: Request, call: Call) -> Response:
    return await ledger_page(rt, request, call, _user_id(call))


async def redeem(rt: Runtime, request: Request, call: Call) -> Response:
    user_id = _user_id(call)
    fields = parse_model(Redeem, await read_body(request, MAX_BODY))
    try:
        value = await rt.store.billing.redeem(fields.code, user_id)
    except UnknownUserError:  # the key's user is gone
        raise NotFound("This key's user does not exist.", code="user_not_found") from None
    except RedemptionError as exc:
        message, code = _REDEEM_FAILURES[exc.reason]
        raise BadRequest(message, param="code", code=code) from None  # never echo the code
    rt.wallets.credit(user_id, value)
    user = await _me(rt, call)
    body = {"object": "redemption", "amount": value, "balance": _balance(rt, user)}
    return call.json_response(json.dumps(body))


OPERATIONS: dict[tuple[str, str], Operation] = {
    ("GET", "/admin/api/me"): Operation(
        "getMe", "The calling key's user: balance, role, group and price multipliers.", "me", "Me"
    ),
    ("GET", "/admin/api/me/ledger"): Operation(
        "getMyLedger",
        "The calling key's user's ledger entries, newest first.",
        "me",
        "LedgerList",
        query=PAGE_QUERY,
    ),
    ("POST", "/admin/api/me/redeem"): Operation(
        "redeemCode",
        "Redeem a code into the calling key's user's balance (each code once).",
        "me",
        "Redemption",
        body="Redeem",
    ),
}


def schemas() -> dict[str, Any]:
    defs: dict[str, Any] = {}
    fraction = {"type": "string", "description": "An exact fraction: '3/2', '1'."}
    out: dict[str, Any] = {
        "Redeem": model_schema(Redeem, "Redeem", defs),
        "Redemption": {
            "type": "object",
            "properties": {
                "object": {"const": "redemption"},
                "amount": {"type": "integer", "description": "Micro-units credited."},
                "balance": {"type": "integer", "description": "The balance after, micro-units."},
            },
            "required": ["object", "amount", "balance"],
        },
        "Me": {
            "allOf": [
                ref("User"),
                {
                    "type": "object",
                    "properties": {
                        "group": nullable(
                            {
                                "type": "object",
                                "properties": {
                                    "id": {"type": "string"},
                                    "name": {"type": "string"},
                                    "multiplier": fraction,
                                },
                                "required": ["id", "name", "multiplier"],
                            }
                        ),
                        "key": {
                            "type": "object",
                            "properties": {
                                "id": {"type": "string"},
                                "price_multiplier": nullable({"type": "string"}),
                                "effective_multiplier": fraction,
                            },
                            "required": ["id", "price_multiplier", "effective_multiplier"],
                        },
                    },
                    "required": ["group", "key"],
                },
            ]
        },
    }
    return {**defs, **out}
