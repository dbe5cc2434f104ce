"""Canonical answers → Responses API `response` objects, shared by the JSON and the streaming encoder.

Ids: the response id is `resp_<48 hex>` (the upstream's id when it already is one, so a streamed and
a JSON answer with the same canonical id are identical). Output item ids are derived from the response
id and the item's position (`rs_…`, `msg_…`, `fc_…`), so the stream can name an item before it is
finished and the final object names it the same way. A tool call without an upstream id gets a
`call_…` id derived the same way.

Output items, in the canonical part order: a `reasoning` item per thinking part; one `message` item per
run of consecutive text/refusal parts (empty text skipped); a `function_call` item per tool call.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from typing import Any

from omnirelay.canonical.ids import carry
from omnirelay.canonical.messages import Message, RefusalPart, TextPart, ThinkingPart, ToolCallPart
from omnirelay.canonical.request import ChatRequest, ResponseFormat, ToolChoice
from omnirelay.canonical.response import ChatResponse, FinishReason
from omnirelay.canonical.usage import Usage
from omnirelay.errors import GatewayError
from omnirelay.ingress.openai_responses.thinking import reasoning_item

_SERVICE_TIERS = frozenset(["auto", "default", "flex", "scale", "priority", "fast", "ultrafast"])


def new_response_id() -> str:
    return "resp_" + secrets.token_hex(24)


def item_id(prefix: str, response_id: str, output_index: int) -> str:
    digest = hashlib.blake2b(f"{response_id}/{output_index}".encode(), digest_size=24).hexdigest()
    return f"{prefix}_{digest}"


def call_id(
    tool_call_id: str | None, response_id: str, output_index: int, details: dict[str, Any] | None = None
) -> str:
    """The client-visible call id (vendor data it must echo is carried in it, see canonical.ids)."""
    return carry(tool_call_id or item_id("call", response_id, output_index), details)


def usage_json(usage: Usage | None) -> dict[str, Any] | None:
    if usage is None:
        return None
    return {
        "input_tokens": usage.input_tokens,
        "input_tokens_details": {
            "cached_tokens": usage.cached_input_tokens,
            "cache_write_tokens": usage.cache_write_tokens,
        },
        "output_tokens": usage.output_tokens,
        "output_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
        "total_tokens": usage.total_tokens,
    }


def outcome(reason: FinishReason | None) -> tuple[str, dict[str, Any] | None, dict[str, Any] | None]:
    """(status, incomplete_details, error) of a response that ended with `reason`."""
    if reason == "length":
        return "incomplete", {"reason": "max_output_tokens"}, None
    if reason == "content_filter":
        return "incomplete", {"reason": "content_filter"}, None
    if reason == "error":
        return "failed", None, {"code": "server_error", "message": "The model ended its answer with an error"}
    return "completed", None, None


def error_object(err: GatewayError) -> dict[str, Any]:
    """`response.error` for a failed response; its `code` is one of the values the API defines."""
    if err.status == 429:
        code = "rate_limit_exceeded"
    elif err.status in (400, 413, 422):
        code = "invalid_prompt"
    else:
        code = "server_error"
    return {"code": code, "message": err.message}


# --- echo of the request ------------------------------------------------------------------------


def _format_json(fmt: ResponseFormat | None) -> dict[str, Any]:
    if fmt is None or fmt.type == "text":
        return {"type": "text"}
    if fmt.type == "json_object":
        return {"type": "json_object"}
    out: dict[str, Any] = {"type": "json_schema", "name": fmt.name or "response", "schema": fmt.schema or {}}
    if fmt.strict is not None:
        out["strict"] = fmt.strict
    return out


def _tool_choice_json(choice: ToolChoice | None) -> str | dict[str, Any]:
    if choice is None:
        return "auto"
    if choice.mode == "tool":
        return {"type": "function", "name": choice.name}
    return choice.mode


def _raw_dict(req: ChatRequest, key: str) -> dict[str, Any]:
    value = req.extra.get(key)
    return value if isinstance(value, dict) else {}


def response_object(
    req: ChatRequest,
    *,
    response_id: str,
    created_at: int,
    status: str,
    output: list[dict[str, Any]],
    usage: Usage | None = None,
    incomplete_details: dict[str, Any] | None = None,
    error: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A full `response` object; request settings are echoed the way the API echoes them."""
    extra = req.extra
    text: dict[str, Any] = {"format": _format_json(req.response_format)}
    if (verbosity := _raw_dict(req, "text").get("verbosity")) is not None:
        text["verbosity"] = verbosity
    reasoning = _raw_dict(req, "reasoning")
    instructions = extra.get("instructions")
    tier = extra.get("service_tier")
    store = extra.get("store")
    return {
        "id": response_id,
        "object": "response",
        "created_at": created_at,
        "status": status,
        "background": False,
        "error": error,
        "incomplete_details": incomplete_details,
        "instructions": instructions if isinstance(instructions, str) else None,
        "max_output_tokens": req.max_tokens,
        "max_tool_calls": extra.get("max_tool_calls"),
        "model": req.model,
        "output": output,
        "parallel_tool_calls": req.parallel_tool_calls is not False,
        "previous_response_id": extra.get("previous_response_id"),
        "prompt_cache_key": extra.get("prompt_cache_key"),
        "reasoning": {
            "effort": req.reasoning_effort,
            "summary": reasoning.get("summary") or reasoning.get("generate_summary"),
        },
        "safety_identifier": extra.get("safety_identifier"),
        "service_tier": tier if tier in _SERVICE_TIERS else None,
        "store": store is not False,
        "temperature": req.temperature,
        "text": text,
        "tool_choice": _tool_choice_json(req.tool_choice),
        "tools": [
            {
                "type": "function",
                "name": t.name,
                "description": t.description,
                "parameters": t.parameters,
                "strict": t.strict,
            }
            for t in req.tools
        ],
        "top_logprobs": extra.get("top_logprobs"),
        "top_p": req.top_p,
        "truncation": extra.get("truncation") or "disabled",
        "usage": usage_json(usage),
        "user": extra.get("user") if isinstance(extra.get("user"), str) else None,
        "metadata": req.metadata or {},
    }


# --- output items -------------------------------------------------------------------------------


def text_content(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def message_item(item_id_: str, content: list[dict[str, Any]], status: str) -> dict[str, Any]:
    return {"type": "message", "id": item_id_, "status": status, "role": "assistant", "content": content}


def function_call_item(item_id_: str, call: str, name: str, arguments: str, status: str) -> dict[str, Any]:
    return {
        "type": "function_call",
        "id": item_id_,
        "call_id": call,
        "name": name,
        "arguments": arguments,
        "status": status,
    }


def message_status(reason: FinishReason | None, output_index: int, last_index: int) -> str:
    """A message cut off by the token limit is `incomplete`, when it is the last thing generated."""
    return "incomplete" if reason == "length" and output_index == last_index else "completed"


def output_items(
    message: Message, response_id: str, include_reasoning: bool, reason: FinishReason | None
) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    content: list[dict[str, Any]] | None = None  # of the message item being filled
    for part in message.parts:
        if isinstance(part, TextPart | RefusalPart):
            if not part.text:
                continue
            if content is None:
                content = []
                items.append(message_item(item_id("msg", response_id, len(items)), content, "completed"))
            if isinstance(part, TextPart):
                content.append(text_content(part.text))
            else:
                content.append({"type": "refusal", "refusal": part.text})
            continue
        if isinstance(part, ThinkingPart):
            content = None
            items.append(reasoning_item(item_id("rs", response_id, len(items)), part, include_reasoning))
        elif isinstance(part, ToolCallPart):
            content = None
            index = len(items)
            items.append(
                function_call_item(
                    item_id("fc", response_id, index),
                    call_id(part.id, response_id, index, part.provider_details),
                    part.name,
                    part.arguments,
                    "completed",
                )
            )
    if items and items[-1]["type"] == "message":
        items[-1]["status"] = message_status(reason, len(items) - 1, len(items) - 1)
    return items


def encode_response(resp: ChatResponse, req: ChatRequest) -> dict[str, Any]:
    response_id = resp.id if resp.id.startswith("resp_") else new_response_id()
    choice = resp.choices[0] if resp.choices else None
    reason = choice.finish_reason if choice else None
    status, incomplete, error = outcome(reason)
    output = output_items(choice.message, response_id, req.include_reasoning, reason) if choice else []
    return response_object(
        req,
        response_id=response_id,
        created_at=resp.created or int(time.time()),
        status=status,
        output=output,
        usage=resp.usage,
        incomplete_details=incomplete,
        error=error,
    )
