"""`/admin/api/redemption-codes`: mint a batch of codes (the plaintexts are returned once, only their
SHA-256 is stored) and list them (never the plaintext). Users redeem them at `/admin/api/me/redeem`."""

from __future__ import annotations

import secrets
import time
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator
from starlette.requests import Request
from starlette.responses import Response

from omnirelay.admin.params import (
    BIGINT,
    MAX_BODY,
    future_time,
    page,
    page_json,
    parse_model,
    rfc3339_or_none,
)
from omnirelay.admin.spec import PAGE_QUERY, Operation, QueryParam, list_of, model_schema, nullable
from omnirelay.call import Call
from omnirelay.errors import BadRequest, NotFound
from omnirelay.pipeline import read_body
from omnirelay.runtime import Runtime
from omnirelay.storage.billing import RedemptionCode
from omnirelay.transport import json

MAX_CODES = 1000  # per request


class CodesCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    count: int = Field(1, ge=1, le=MAX_CODES)
    value: int = Field(ge=1, le=BIGINT)  # micro-units of credit each code is worth
    expires_at: datetime | None = None  # RFC 3339; null = never
    batch: str | None = Field(None, min_length=1, max_length=128)  # a label; generated when omitted

    _expiry = field_validator("expires_at")(future_time)


def code_json(code: RedemptionCode, now: float) -> dict[str, Any]:
    if code.redeemed_by is not None:
        status = "redeemed"
    elif code.expires_at is not None and code.expires_at <= now:
        status = "expired"
    else:
        status = "active"
    return {
        "object": "redemption_code",
        "code_hash": code.code_hash,
        "batch": code.batch,
        "value": code.value,
        "status": status,
        "created_at": rfc3339_or_none(code.created_at),
        "expires_at": rfc3339_or_none(code.expires_at),
        "redeemed_by": code.redeemed_by,
        "redeemed_at": rfc3339_or_none(code.redeemed_at),
    }


async def create(rt: Runtime, request: Request, call: Call) -> Response:
    fields = parse_model(CodesCreate, await read_body(request, MAX_BODY))
    batch = fields.batch or "batch_" + secrets.token_hex(8)
    expires_at = fields.expires_at.timestamp() if fields.expires_at else None
    codes = await rt.store.billing.create_codes(fields.count, fields.value, expires_at, batch)
    body = {
        "object": "redemption_code_batch",
        "batch": batch,
        "value": fields.value,
        "expires_at": rfc3339_or_none(expires_at),
        "codes": codes,  # the plaintexts, this once
    }
    return call.json_response(json.dumps(body), status=201)


async def list_codes(rt: Runtime, request: Request, call: Call) -> Response:
    limit, offset = page(request.query_params)
    codes = await rt.store.billing.list_codes(request.query_params.get("batch"), limit, offset)
    now = time.time()
    return call.json_response(page_json([code_json(c, now) for c in codes], limit, offset))


async def void(rt: Runtime, request: Request, call: Call) -> Response:
    """Make an unredeemed code unusable (it expires now and stays listed)."""
    code_hash = request.path_params["code_hash"]
    code = await rt.store.billing.void_code(code_hash) if len(code_hash) <= 64 else None
    if code is None:
        raise NotFound("No such redemption code.", code="code_not_found")
    if code.redeemed_by is not None:
        raise BadRequest(
            "This code was redeemed already.", param="code_hash", code="redemption_code_redeemed"
        )
    return call.json_response(json.dumps(code_json(code, time.time())))


OPERATIONS: dict[tuple[str, str], Operation] = {
    ("POST", "/admin/api/redemption-codes"): Operation(
        "createRedemptionCodes",
        "Mint `count` codes worth `value` micro-units each. The codes are returned once, only here.",
        "redemption-codes",
        "RedemptionCodeBatch",
        status=201,
        body="RedemptionCodesCreate",
    ),
    ("GET", "/admin/api/redemption-codes"): Operation(
        "listRedemptionCodes",
        "List codes in creation order (hashes and state, never the codes).",
        "redemption-codes",
        "RedemptionCodeList",
        query=(*PAGE_QUERY, QueryParam("batch", {"type": "string"}, "Only codes of this batch.")),
    ),
    ("DELETE", "/admin/api/redemption-codes/{code_hash}"): Operation(
        "voidRedemptionCode",
        "Void an unredeemed code (by its `code_hash`): it expires now and stays listed.",
        "redemption-codes",
        "RedemptionCode",
    ),
}


def schemas() -> dict[str, Any]:
    defs: dict[str, Any] = {}
    time_or_null = nullable({"type": "string", "format": "date-time"})
    out: dict[str, Any] = {
        "RedemptionCodesCreate": model_schema(CodesCreate, "RedemptionCodesCreate", defs),
        "RedemptionCodeBatch": {
            "type": "object",
            "properties": {
                "object": {"const": "redemption_code_batch"},
                "batch": {"type": "string"},
                "value": {"type": "integer"},
                "expires_at": time_or_null,
                "codes": {
                    "type": "array",
                    "items": {"type": "string"},
                    "description": "The plaintext codes, shown once.",
                },
            },
            "required": ["object", "batch", "value", "expires_at", "codes"],
        },
        "RedemptionCode": {
            "type": "object",
            "properties": {
                "object": {"const": "redemption_code"},
                "code_hash": {"type": "string", "description": "SHA-256 of the code (hex)."},
                "batch": nullable({"type": "string"}),
                "value": {"type": "integer"},
                "status": {"enum": ["active", "redeemed", "expired"]},
                "created_at": {"type": "string", "format": "date-time"},
                "expires_at": time_or_null,
                "redeemed_by": nullable({"type": "string"}),
                "redeemed_at": time_or_null,
            },
            "required": ["object", "code_hash", "value", "status", "created_at"],
        },
        "RedemptionCodeList": list_of("RedemptionCode"),
    }
    return {**defs, **out}
