"""What every admin endpoint reads the same way: a JSON body checked by a pydantic model, and a page
(`limit` clamped to 1..1000, default 100; `offset` ≥ 0) answered as `{object: "list", data, limit,
offset}`. One place, so validation errors and pagination are alike across the admin API."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
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


def rfc3339(ts: float) -> str:
    """Unix seconds as an RFC 3339 UTC time ("2026-11-25T10:00:00Z")."""
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


def rfc3339_or_none(ts: float | None) -> str | None:
    return None if ts is None else rfc3339(ts)


def future_time(value: datetime | None) -> datetime | None:
    """A validator for expiry times: an RFC 3339 time with a zone, within the database's range."""
    if value is None:
        return None
    if value.tzinfo is None:
        raise ValueError("needs a time zone (RFC 3339, e.g. 2026-12-31T23:59:59Z)")
    try:
        if value.astimezone(UTC).year > 9998:
            raise ValueError("is out of range (year 9998 at the latest)")
    except OverflowError:
        raise ValueError("is out of range") from None
    return value
