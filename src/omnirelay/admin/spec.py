"""The pieces an admin module uses to describe its operations in the admin OpenAPI document.

An admin module that serves routes exposes `OPERATIONS` (rows keyed by (method, Starlette path) as
written in `omnirelay.app.ADMIN_ROUTES`) and `schemas()` (its component schemas by name);
`omnirelay.admin.openapi` merges them into one document."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

REF = "#/components/schemas/"


def ref(name: str) -> dict[str, Any]:
    return {"$ref": REF + name}


def nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {"anyOf": [schema, {"type": "null"}]}


@dataclass(frozen=True, slots=True)
class QueryParam:
    name: str
    schema: dict[str, Any]
    description: str


@dataclass(frozen=True, slots=True)
class Operation:
    """One admin operation. `body` and `response` name schemas under components/schemas."""

    operation_id: str
    summary: str
    tag: str
    response: str | None  # None: any JSON object
    status: int = 200
    body: str | None = None
    query: tuple[QueryParam, ...] = ()


def model_schema(model: type[BaseModel], title: str, defs: dict[str, Any]) -> dict[str, Any]:
    """A pydantic model's JSON schema as a component; its nested definitions go into `defs`."""
    schema = model.model_json_schema(ref_template=REF + "{model}")
    defs.update(schema.pop("$defs", {}))
    schema["title"] = title
    return schema


def list_of(item: str) -> dict[str, Any]:
    """A page of `item` objects: `{object: "list", data: [...], limit, offset}`."""
    return {
        "type": "object",
        "properties": {
            "object": {"const": "list"},
            "data": {"type": "array", "items": ref(item)},
            "limit": {"type": "integer"},
            "offset": {"type": "integer"},
        },
        "required": ["object", "data"],
    }


PAGE_QUERY = (
    QueryParam(
        "limit",
        {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100},
        "Page size (values outside 1..1000 are clamped).",
    ),
    QueryParam("offset", {"type": "integer", "minimum": 0, "default": 0}, "Items to skip."),
)
