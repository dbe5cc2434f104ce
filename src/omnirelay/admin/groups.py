"""`/admin/api/groups`: pricing groups. A group's `multiplier` is an exact decimal string ("0.8")
stored as the fraction multiplier_num / multiplier_den; charges of its users' keys are multiplied
by it (see runtime and accounting.prices)."""

from __future__ import annotations

import secrets
from fractions import Fraction
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy.exc import IntegrityError
from starlette.requests import Request
from starlette.responses import Response

from omnirelay.accounting.prices import multiplier_text, parse_multiplier
from omnirelay.admin.params import MAX_BODY, page, page_json, parse_model
from omnirelay.admin.spec import PAGE_QUERY, Operation, list_of, model_schema
from omnirelay.call import Call
from omnirelay.errors import BadRequest, NotFound
from omnirelay.pipeline import read_body
from omnirelay.runtime import Runtime
from omnirelay.storage.billing import GroupInUseError, GroupRecord
from omnirelay.transport import json


def _multiplier(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError("must be an exact decimal string such as '0.8', never a float")
    text = str(value)
    if len(text) > 40:
        raise ValueError("is too long")
    parse_multiplier(text)
    return text.strip()


class GroupCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=256)
    multiplier: str | int = "1"

    _check = field_validator("multiplier", mode="before")(_multiplier)


class GroupUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(None, min_length=1, max_length=256)
    multiplier: str | int | None = None

    _check = field_validator("multiplier", mode="before")(_multiplier)


def group_json(group: GroupRecord) -> dict[str, Any]:
    return {
        "id": group.id,
        "object": "group",
        "name": group.name,
        "multiplier": multiplier_text(Fraction(group.multiplier_num, group.multiplier_den)),
        "multiplier_num": group.multiplier_num,
        "multiplier_den": group.multiplier_den,
    }


async def _group(rt: Runtime, group_id: str) -> GroupRecord:
    group = await rt.store.billing.get_group(group_id)
    if group is None:
        raise NotFound(f"No group {group_id!r}.", code="group_not_found")
    return group


async def _name_free(rt: Runtime, name: str, group_id: str | None = None) -> None:
    offset = 0
    while True:  # groups are few; the billing store has no lookup by name
        page = await rt.store.billing.list_groups(1000, offset)
        if any(g.name == name and g.id != group_id for g in page):
            raise BadRequest(f"A group named {name!r} exists already.", param="name", code="duplicate_name")
        if len(page) < 1000:
            return
        offset += 1000


def _set_multiplier(group: GroupRecord, text: str | int) -> None:
    exact = parse_multiplier(str(text))
    group.multiplier_num, group.multiplier_den = exact.numerator, exact.denominator


async def create(rt: Runtime, request: Request, call: Call) -> Response:
    body = parse_model(GroupCreate, await read_body(request, MAX_BODY))
    await _name_free(rt, body.name)
    group = GroupRecord(id="grp_" + secrets.token_hex(12), name=body.name)
    _set_multiplier(group, body.multiplier)
    try:
        await rt.store.billing.create_group(group)
    except IntegrityError:
        raise BadRequest(
            f"A group named {body.name!r} exists already.", param="name", code="duplicate_name"
        ) from None
    return call.json_response(json.dumps(group_json(await _group(rt, group.id))), status=201)


async def list_groups(rt: Runtime, request: Request, call: Call) -> Response:
    limit, offset = page(request.query_params)
    groups = await rt.store.billing.list_groups(limit, offset)
    return call.json_response(page_json([group_json(g) for g in groups], limit, offset))


async def get(rt: Runtime, request: Request, call: Call) -> Response:
    return call.json_response(json.dumps(group_json(await _group(rt, request.path_params["group_id"]))))


async def update(rt: Runtime, request: Request, call: Call) -> Response:
    group = await _group(rt, request.path_params["group_id"])
    body = parse_model(GroupUpdate, await read_body(request, MAX_BODY))
    if body.name is not None and body.name != group.name:
        await _name_free(rt, body.name, group.id)
        group.name = body.name
    if body.multiplier is not None:
        _set_multiplier(group, body.multiplier)
    try:
        await rt.store.billing.update_group(group)
    except IntegrityError:
        raise BadRequest(
            f"A group named {group.name!r} exists already.", param="name", code="duplicate_name"
        ) from None
    except LookupError:
        raise NotFound(f"No group {group.id!r}.", code="group_not_found") from None
    rt.auth.remember_group(group)  # the new multiplier applies to the next request
    return call.json_response(json.dumps(group_json(await _group(rt, group.id))))


async def delete(rt: Runtime, request: Request, call: Call) -> Response:
    group = await _group(rt, request.path_params["group_id"])
    try:
        deleted = await rt.store.billing.delete_group(group.id)
    except GroupInUseError:
        raise BadRequest(
            f"Users still belong to group {group.id!r}; move them first.",
            param="group_id",
            code="group_in_use",
        ) from None
    if not deleted:
        raise NotFound(f"No group {group.id!r}.", code="group_not_found")
    return call.json_response(json.dumps({**group_json(group), "deleted": True}))


OPERATIONS: dict[tuple[str, str], Operation] = {
    ("POST", "/admin/api/groups"): Operation(
        "createGroup",
        'Create a pricing group; `multiplier` is an exact decimal string (default "1").',
        "groups",
        "Group",
        status=201,
        body="GroupCreate",
    ),
    ("GET", "/admin/api/groups"): Operation(
        "listGroups", "List groups by name.", "groups", "GroupList", query=PAGE_QUERY
    ),
    ("GET", "/admin/api/groups/{group_id}"): Operation("getGroup", "Read one group.", "groups", "Group"),
    ("PATCH", "/admin/api/groups/{group_id}"): Operation(
        "updateGroup", "Rename a group or change its multiplier.", "groups", "Group", body="GroupUpdate"
    ),
    ("DELETE", "/admin/api/groups/{group_id}"): Operation(
        "deleteGroup", "Delete a group no user belongs to (400 group_in_use otherwise).", "groups", None
    ),
}


def schemas() -> dict[str, Any]:
    defs: dict[str, Any] = {}
    group = {
        "type": "object",
        "properties": {
            "id": {"type": "string"},
            "object": {"const": "group"},
            "name": {"type": "string"},
            "multiplier": {"type": "string", "description": 'Exact decimal, e.g. "0.8".'},
            "multiplier_num": {"type": "integer"},
            "multiplier_den": {"type": "integer"},
        },
        "required": ["id", "object", "name", "multiplier", "multiplier_num", "multiplier_den"],
    }
    out = {
        "GroupCreate": model_schema(GroupCreate, "GroupCreate", defs),
        "GroupUpdate": model_schema(GroupUpdate, "GroupUpdate", defs),
        "Group": group,
        "GroupList": list_of("Group"),
    }
    return {**defs, **out}
