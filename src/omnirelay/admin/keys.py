"""`/admin/api/keys`: create (the secret is shown once), list, read, update, revoke gateway keys."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import secrets
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from starlette.requests import Request
from starlette.responses import Response

from omnirelay.accounting.prices import multiplier_text, parse_multiplier
from omnirelay.admin.access import check_owner, own_scope
from omnirelay.admin.params import (
    BIGINT,
    MAX_BODY,
    future_time,
    page,
    page_json,
    parse_model,
    rfc3339_or_none,
)
from omnirelay.call import Call
from omnirelay.errors import BadRequest, NotFound, PermissionDenied
from omnirelay.pipeline import read_body
from omnirelay.runtime import Runtime
from omnirelay.security.keys import generate_key, key_hash, key_prefix
from omnirelay.storage.records import KeyRecord
from omnirelay.transport import json


class KeyFields(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(None, max_length=256)
    user_id: str | None = Field(None, min_length=1, max_length=64)
    quota: int | None = Field(None, ge=0, le=BIGINT)  # credits in micro-units; null = unlimited
    expires_at: datetime | None = None  # RFC 3339
    allowed_models: list[str] | None = None
    allowed_ips: list[str] | None = None
    rpm: int | None = Field(None, ge=1, le=BIGINT)
    rpd: int | None = Field(None, ge=1, le=BIGINT)
    tpm: int | None = Field(None, ge=1, le=BIGINT)
    metadata: dict[str, Any] = Field(default_factory=dict)
    # Log this key's request/response bodies (true/false); null = the gateway's setting. Admins only.
    log_bodies: bool | None = None
    # An exact decimal string ("1.5"), times the user's group multiplier; null = 1. Admins only.
    price_multiplier: str | None = Field(None, max_length=32)

    @field_validator("price_multiplier", mode="before")
    @classmethod
    def _exact_multiplier(cls, value: Any) -> Any:
        if isinstance(value, bool | float):
            raise ValueError('give the multiplier as a decimal string such as "1.5" (exact)')
        if isinstance(value, int):
            value = str(value)
        if isinstance(value, str):
            value = multiplier_text(parse_multiplier(value))
        return value

    @field_validator("allowed_ips")
    @classmethod
    def _networks(cls, value: list[str] | None) -> list[str] | None:
        for entry in value or []:
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError:
                raise ValueError(f"{entry!r} is not an IP address or CIDR") from None
        return value

    _expiry = field_validator("expires_at")(future_time)


class KeyUpdate(KeyFields):
    status: Literal["active", "disabled"] | None = None


def key_json(key: KeyRecord) -> dict[str, Any]:
    return {
        "id": key.id,
        "object": "api_key",
        "prefix": key.prefix,
        "name": key.name,
        "user_id": key.user_id,
        # An active key past its expiry shows as expired (it is refused with 401 key_expired).
        "status": "expired"
        if key.status == "active" and key.expires_at is not None and key.expires_at <= time.time()
        else key.status,
        "created_at": rfc3339_or_none(key.created_at),
        "expires_at": rfc3339_or_none(key.expires_at),
        "quota": key.quota,
        "allowed_models": key.allowed_models,
        "allowed_ips": key.allowed_ips,
        "rpm": key.rpm,
        "rpd": key.rpd,
        "tpm": key.tpm,
        "metadata": key.metadata,
        "log_bodies": key.log_bodies,
        "price_multiplier": key.price_multiplier,
    }


async def create(rt: Runtime, request: Request, call: Call) -> Response:
    fields = parse_model(KeyFields, await read_body(request, MAX_BODY))
    scope = own_scope(call)
    if scope is not None and fields.log_bodies is not None:
        raise PermissionDenied("Only an admin may set a key's body logging.", param="log_bodies")
    if scope is not None and fields.price_multiplier is not None:
        raise PermissionDenied("Only an admin may set a key's price multiplier.", param="price_multiplier")
    if scope is not None:
        if fields.user_id not in (None, scope):
            raise PermissionDenied("A user may create keys only for itself.", param="user_id")
        fields.user_id = scope
        if call.principal is not None and call.principal.key is not None:
            _no_wider_than(call.principal.key, fields)
    async with _creating(scope):  # one self-service creation per user at a time: the cap holds
        return await _create(rt, call, fields, scope)


_CREATING: dict[str, asyncio.Lock] = {}  # a lock per user that created keys (one replica)


@contextlib.asynccontextmanager
async def _creating(user_id: str | None) -> AsyncIterator[None]:
    if user_id is None:  # an admin: no cap
        yield
        return
    async with _CREATING.setdefault(user_id, asyncio.Lock()):
        yield


_INHERITED = ("allowed_models", "allowed_ips", "rpm", "rpd", "tpm", "expires_at")


def _no_wider_than(caller: KeyRecord, fields: KeyFields) -> None:
    """A key a user creates can do no more than the key that creates it: it inherits the caller's
    model and IP lists, rate limits and expiry where it sets none, and may only narrow them."""
    for name in _INHERITED:
        if getattr(fields, name) is None and getattr(caller, name) is not None:
            value = getattr(caller, name)
            setattr(fields, name, datetime.fromtimestamp(value, UTC) if name == "expires_at" else value)
    _only_tighten(caller, {name: getattr(fields, name) for name in _INHERITED})


async def _create(rt: Runtime, call: Call, fields: KeyFields, scope: str | None) -> Response:
    if scope is not None:
        cap = rt.config.billing.max_keys_per_user
        if await rt.store.count_active_keys(scope) >= cap:
            raise PermissionDenied(
                f"A user may hold at most {cap} active keys; revoke one first.", code="too_many_keys"
            )
    elif fields.user_id is not None and await rt.store.billing.get_user(fields.user_id) is None:
        raise BadRequest(f"No user {fields.user_id!r}.", param="user_id", code="user_not_found")
    secret = generate_key()
    record = KeyRecord(
        id="key_" + secrets.token_hex(12),
        key_hash=key_hash(secret),
        prefix=key_prefix(secret),
        created_at=time.time(),
        name=fields.name,
        user_id=fields.user_id,
        quota=fields.quota,
        expires_at=fields.expires_at.timestamp() if fields.expires_at else None,
        allowed_models=fields.allowed_models,
        allowed_ips=fields.allowed_ips,
        rpm=fields.rpm,
        rpd=fields.rpd,
        tpm=fields.tpm,
        metadata=fields.metadata,
        log_bodies=fields.log_bodies,
        price_multiplier=fields.price_multiplier,
    )
    await rt.store.add_key(record)
    rt.auth.remember(record)
    return call.json_response(json.dumps({**key_json(record), "key": secret}), status=201)


async def list_keys(rt: Runtime, request: Request, call: Call) -> Response:
    params = request.query_params
    limit, offset = page(params)
    scope = own_scope(call)
    keys = await rt.store.list_keys(scope if scope is not None else params.get("user_id"), limit, offset)
    return call.json_response(page_json([key_json(k) for k in keys], limit, offset))


async def _existing(rt: Runtime, request: Request, call: Call) -> KeyRecord:
    key_id = request.path_params["key_id"]
    key = await rt.store.get_key(key_id)
    if key is None:
        raise NotFound(f"No API key {key_id!r}.", code="key_not_found")
    check_owner(call, key.user_id, f"API key {key_id!r}")
    return key


async def get(rt: Runtime, request: Request, call: Call) -> Response:
    return call.json_response(json.dumps(key_json(await _existing(rt, request, call))))


_TIGHTER_LIMITS = ("quota", "rpm", "rpd", "tpm")
_NARROWER_LISTS = ("allowed_models", "allowed_ips")


def _only_tighten(key: KeyRecord, changes: dict[str, Any]) -> None:
    """A user may tighten its own keys but not undo what an admin set: lower a limit, narrow a
    list, bring the expiry forward, disable the key. Raising, widening, postponing and re-enabling
    need an admin (a key an admin revoked stays revoked)."""

    def refuse(param: str, what: str) -> None:
        raise PermissionDenied(f"A user may only {what}; ask an admin for more.", param=param)

    for name in _TIGHTER_LIMITS:  # no limit before: any limit tightens
        old = getattr(key, name)
        if name in changes and old is not None and (changes[name] is None or changes[name] > old):
            refuse(name, f"lower its key's {name}")
    for name in _NARROWER_LISTS:  # no list before: any list narrows
        old = getattr(key, name)
        if name in changes and old is not None and (changes[name] is None or set(changes[name]) - set(old)):
            refuse(name, f"narrow its key's {name}")
    if "expires_at" in changes:
        new_ts = changes["expires_at"].timestamp() if changes["expires_at"] else None
        if key.expires_at is not None and (new_ts is None or new_ts > key.expires_at):
            refuse("expires_at", "bring its key's expiry forward")
    if changes.get("status") == "active" and key.status != "active":
        refuse("status", "disable its key")


async def update(rt: Runtime, request: Request, call: Call) -> Response:
    key = await _existing(rt, request, call)
    changes = parse_model(KeyUpdate, await read_body(request, MAX_BODY)).model_dump(exclude_unset=True)
    scope = own_scope(call)
    if scope is not None and "log_bodies" in changes:
        raise PermissionDenied("Only an admin may set a key's body logging.", param="log_bodies")
    if scope is not None and "price_multiplier" in changes:
        raise PermissionDenied("Only an admin may set a key's price multiplier.", param="price_multiplier")
    if scope is not None and changes.get("user_id", scope) != scope:
        raise PermissionDenied("A user may not give its keys to another user.", param="user_id")
    if scope is not None:
        _only_tighten(key, changes)
    if (
        scope is None
        and changes.get("user_id")
        and await rt.store.billing.get_user(changes["user_id"]) is None
    ):
        raise BadRequest(f"No user {changes['user_id']!r}.", param="user_id", code="user_not_found")
    if "expires_at" in changes:
        changes["expires_at"] = changes["expires_at"].timestamp() if changes["expires_at"] else None
    for name, value in changes.items():
        setattr(key, name, value)
    await rt.store.update_key(key)
    rt.auth.remember(key)
    return call.json_response(json.dumps(key_json(key)))


async def revoke(rt: Runtime, request: Request, call: Call) -> Response:
    key = await _existing(rt, request, call)
    key.status = "disabled"
    await rt.store.update_key(key)
    rt.auth.remember(key)
    return call.json_response(json.dumps(key_json(key)))
