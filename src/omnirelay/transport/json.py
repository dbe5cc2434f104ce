"""JSON on the hot path: orjson, with errors that say where the document broke."""

from __future__ import annotations

from typing import Any

import orjson

from omnirelay.errors import BadRequest

dumps = orjson.dumps
JSONDecodeError = orjson.JSONDecodeError


def loads(data: bytes | str) -> Any:
    return orjson.loads(data)


def parse_body(data: bytes) -> Any:
    """Parse a client's request body, turning a syntax error into a 400 that names the position."""
    if not data:
        raise BadRequest("The request body is empty; expected a JSON object.", code="invalid_json")
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(
            f"The request body is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno} "
            f"(char {exc.pos}).",
            code="invalid_json",
        ) from None


def parse_object(data: bytes) -> dict[str, Any]:
    body = parse_body(data)
    if not isinstance(body, dict):
        raise BadRequest("The request body must be a JSON object.", code="invalid_json")
    return body
