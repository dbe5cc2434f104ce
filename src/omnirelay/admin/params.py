"""What every admin endpoint reads the same way: a JSON body checked by a pydantic model, and a page
(`limit` clamped to 1..1000, default 100; `offset` ≥ 0) answered as `{object: "list", data, limit,
offset}`. One place, so validation errors and pagination are alike across the admin API."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from omnirelay.errors import BadRequest
from omnirelay.transport import json

M = TypeVar("M", bound=BaseModel)
MAX_BODY = 64 * 1024
BIGINT = 2**63 - 1  # the database's integer range


def parse_model(model: type[M], raw: bytes) -> M:
    """A JSON body validated by a pydantic model; the first problem becomes a 400 naming the field."""
    try:
        return model.model_validate(json.parse_object(raw) if raw.strip() else {})
    except ValidationError as exc:
        first = exc.errors()[0]
        param = ".".join(str(p) for p in first["loc"])
        raise BadRequest(f"{param}: {first['msg']}", param=param, code="invalid_value") from None


def page(params: Mapping[str, str]) -> tuple[int, int]:
    """`limit` and `offset` from a query string (400 naming the one that is not an integer)."""
    try:
        limit = min(max(int(params.get("limit", "100")), 1), 1000)
    except ValueError:
        raise BadRequest("limit must be an integer.", param="limit", code="invalid_value") from None
    try:
        offset = min(max(int(params.get("offset", "0")), 0), BIGINT)
    except ValueError:
        raise BadRequest("offset must be an integer.", param="offset", code="invalid_value") from None
    return limit, offset


def page_json(items: list[dict[str, Any]], limit: int, offset: int, **extra: Any) -> bytes:
    return json.dumps({"object": "list", "data": items, "limit": limit, "offset": offset, **extra})
