"""JSON Schema → the OpenAPI-subset `Schema` the Gemini Developer API accepts in `functionDeclarations`.

The API answers 400 "Invalid JSON payload received. Unknown name …" for any key outside its `Schema`
message (`additionalProperties`, `$schema`, `$defs`, `$ref`, `const`, `default`, `examples`, `strict`, …),
and takes only string `enum` values and a few `format`s. `clean_schema` rewrites a schema recursively:

- keeps the keys Gemini knows (type, format, title, description, nullable, enum, items, properties,
  required, anyOf, min/max bounds, pattern, propertyOrdering, example);
- inlines local `$ref`s from `$defs`/`definitions` (a recursive reference becomes a bare object);
- `oneOf` → `anyOf`; `allOf` is merged into one schema; a `null` variant or type becomes `nullable`;
- `const` → an enum of one; non-string enum values move into the description;
- formats Gemini does not take are dropped.
"""

from __future__ import annotations

from typing import Any

_KEEP = frozenset(
    {
        "title",
        "description",
        "minItems",
        "maxItems",
        "minimum",
        "maximum",
        "minLength",
        "maxLength",
        "minProperties",
        "maxProperties",
        "pattern",
        "example",
    }
)
_FORMATS = {
    "string": {"enum", "date-time"},
    "number": {"float", "double"},
    "integer": {"int32", "int64"},
}
_MAX_DEPTH = 40


def clean_schema(schema: Any) -> dict[str, Any]:
    """A copy of `schema` that the Gemini API accepts as `parameters` or `responseSchema`."""
    if not isinstance(schema, dict):
        return {}
    defs: dict[str, Any] = {}
    for key in ("definitions", "$defs"):
        if isinstance(schema.get(key), dict):
            defs.update(schema[key])
    return _clean(schema, defs, (), 0)


def is_empty_object(schema: dict[str, Any]) -> bool:
    """True for an object schema without properties (Gemini rejects it as function parameters)."""
    kind = schema.get("type")
    return (
        (kind is None or str(kind).lower() == "object")
        and not schema.get("properties")
        and (not schema.get("anyOf"))
    )


def _add_note(out: dict[str, Any], note: str) -> None:
    text = out.get("description")
    out["description"] = f"{text} ({note})" if isinstance(text, str) and text else note


def _resolve(node: dict[str, Any], defs: dict[str, Any], seen: tuple[str, ...], depth: int) -> dict[str, Any]:
    ref = node["$ref"]
    name = ref.rsplit("/", 1)[-1] if isinstance(ref, str) else ""
    target = defs.get(name)
    if name in seen or not isinstance(target, dict) or depth > _MAX_DEPTH:
        base: dict[str, Any] = {"type": "object"}  # recursive or unknown reference: Gemini cannot express it
        if isinstance(target, dict) and isinstance(target.get("description"), str):
            base["description"] = target["description"]
    else:
        base = _clean(target, defs, (*seen, name), depth + 1)
    local = {k: v for k, v in node.items() if k != "$ref"}
    if local:
        base.update(_clean(local, defs, seen, depth + 1))
    return base


def _merge_all_of(
    node: dict[str, Any], defs: dict[str, Any], seen: tuple[str, ...], depth: int
) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for sub in node.get("allOf") or []:
        part = _clean(sub, defs, seen, depth + 1)
        props = part.pop("properties", None)
        required = part.pop("required", None)
        if props:
            merged.setdefault("properties", {}).update(props)
        if required:
            merged.setdefault("required", [])
            merged["required"] += [r for r in required if r not in merged["required"]]
        for key, value in part.items():
            merged.setdefault(key, value)
    rest = {k: v for k, v in node.items() if k != "allOf"}
    own = _clean(rest, defs, seen, depth + 1) if rest else {}
    if "properties" in own:
        merged.setdefault("properties", {}).update(own.pop("properties"))
    if "required" in own:
        merged.setdefault("required", [])
        merged["required"] += [r for r in own.pop("required") if r not in merged["required"]]
    merged.update(own)
    return merged


def _variants(node: dict[str, Any], defs: dict[str, Any], seen: tuple[str, ...], depth: int) -> list[Any]:
    raw = node.get("anyOf") if isinstance(node.get("anyOf"), list) else node.get("oneOf")
    return [_clean(v, defs, seen, depth + 1) for v in raw or []]


def _clean(node: Any, defs: dict[str, Any], seen: tuple[str, ...], depth: int) -> dict[str, Any]:
    if not isinstance(node, dict) or depth > _MAX_DEPTH:
        return {}
    if "$ref" in node:
        return _resolve(node, defs, seen, depth)
    if isinstance(node.get("allOf"), list):
        return _merge_all_of(node, defs, seen, depth)
    out: dict[str, Any] = {k: v for k, v in node.items() if k in _KEEP}
    nullable = node.get("nullable") is True

    kind = node.get("type")
    if isinstance(kind, list):
        kinds = [str(k) for k in kind if k != "null"]
        nullable = nullable or "null" in kind
        if len(kinds) == 1:
            kind = kinds[0]
        elif kinds:
            out["anyOf"] = [{"type": k} for k in kinds]
            kind = None
        else:
            kind = "null"
    if isinstance(kind, str):
        out["type"] = kind
    elif "properties" in node:
        out["type"] = "object"
    elif "items" in node:
        out["type"] = "array"

    variants = _variants(node, defs, seen, depth)
    if variants:
        non_null = [v for v in variants if str(v.get("type", "")).lower() != "null"]
        nullable = nullable or len(non_null) < len(variants)
        if len(non_null) == 1:
            for key, value in non_null[0].items():
                out.setdefault(key, value)
        elif non_null:
            out["anyOf"] = non_null

    if isinstance(node.get("properties"), dict):
        out["properties"] = {
            str(name): _clean(sub, defs, seen, depth + 1) for name, sub in node["properties"].items()
        }
        required = node.get("required")
        if isinstance(required, list):
            names = [r for r in required if r in out["properties"]]
            if names:
                out["required"] = names
        ordering = node.get("propertyOrdering")
        if isinstance(ordering, list) and all(o in out["properties"] for o in ordering):
            out["propertyOrdering"] = ordering
    items = node.get("items")
    if isinstance(items, list):
        items = items[0] if items else None
    if isinstance(items, dict):
        out["items"] = _clean(items, defs, seen, depth + 1)

    values = node.get("enum") if isinstance(node.get("enum"), list) else None
    if values is None and "const" in node:
        values = [node["const"]]
    if values is not None:
        strings = [v for v in values if v is not None]
        if strings and all(isinstance(v, str) for v in strings):
            out["enum"] = strings
            out.setdefault("type", "string")
        elif strings:
            _add_note(out, "one of: " + ", ".join(str(v) for v in strings))
        nullable = nullable or None in values

    fmt = node.get("format")
    if isinstance(fmt, str) and fmt in _FORMATS.get(str(out.get("type", "")).lower(), ()):
        out["format"] = fmt
    if nullable and out.get("type") != "null":
        out["nullable"] = True
    return out
