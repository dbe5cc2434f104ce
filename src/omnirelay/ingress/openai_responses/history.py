"""Server-side conversation state for `previous_response_id` and `item_reference`, as pure functions.

The pipeline owns storage. For a request with `previous_response_id` it loads the stored exchange
(the request body as it was decoded, i.e. already expanded, and the response object) and calls
`prepend_history(body, history_items(stored_body, stored_response))` before `decode`. Because the
stored body is the expanded one, one lookup covers the whole chain. `instructions` are deliberately
not carried over (the API's rule). `item_reference` items can be resolved against the same items
with `resolve_item_references`; anything left unresolved is rejected by `decode`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from omnirelay.transport import json


def input_items(raw: Any) -> list[dict[str, Any]]:
    """A request's `input` as a list of items (a plain string is one user message)."""
    if isinstance(raw, str):
        return [{"type": "message", "role": "user", "content": raw}]
    if isinstance(raw, list):
        return [dict(item) if isinstance(item, dict) else item for item in raw]
    return []


def history_items(
    request_body: Mapping[str, Any], response_json: Mapping[str, Any] | bytes | str
) -> list[dict[str, Any]]:
    """The input items and then the output items of a stored exchange, ready to prepend to the next
    request's input. Failed responses contribute no output."""
    response = json.loads(response_json) if isinstance(response_json, bytes | str) else response_json
    items = input_items(request_body.get("input"))
    if not isinstance(response, Mapping) or response.get("status") == "failed":
        return items
    return items + [dict(item) for item in response.get("output") or [] if isinstance(item, dict)]


def prepend_history(body: Mapping[str, Any], history: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """A copy of `body` whose `input` is `history` followed by the body's own input items.
    `previous_response_id` stays, so that the answer echoes it."""
    out = dict(body)
    out["input"] = [*history, *input_items(body.get("input"))]
    return out


def item_index(items: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Items by their `id`, for `resolve_item_references`."""
    return {str(item["id"]): dict(item) for item in items if isinstance(item.get("id"), str)}


def resolve_item_references(
    body: Mapping[str, Any], known: Mapping[str, Mapping[str, Any]]
) -> dict[str, Any]:
    """A copy of `body` with each `item_reference` whose id is in `known` replaced by that item."""
    raw = body.get("input")
    if not isinstance(raw, list):
        return dict(body)
    resolved: list[Any] = []
    for item in raw:
        is_ref = isinstance(item, dict) and (
            item.get("type") == "item_reference" or ("type" not in item and "role" not in item)
        )
        ref = item.get("id") if is_ref else None
        resolved.append(dict(known[ref]) if isinstance(ref, str) and ref in known else item)
    out = dict(body)
    out["input"] = resolved
    return out
