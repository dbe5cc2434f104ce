"""`POST /v1/responses` request bodies → `ChatRequest`.

Top-level fields the canonical request models completely are consumed; every other field goes into
`ChatRequest.extra` unchanged (`store`, `previous_response_id`, `include`, `truncation`, `service_tier`,
`prompt_cache_key`, ...). `instructions`, `reasoning`, `text`, `user` and `safety_identifier` are
decoded *and* kept in `extra`, because the response object echoes them as the client sent them.

Rejected with 400 (the answer would silently be wrong otherwise): built-in tools and hosted tool
choices, `item_reference` items (resolve them first with `history.resolve_item_references`),
hosted-tool call items, `conversation`, `background`, `prompt`, images by `file_id` and files by
`file_url` (the canonical model has no slot for either).
"""

from __future__ import annotations

import mimetypes
import re
from typing import Any

from omnirelay.canonical.ids import uncarry
from omnirelay.canonical.messages import (
    FilePart,
    ImagePart,
    Message,
    Part,
    RefusalPart,
    Role,
    TextPart,
    ToolCallPart,
    ToolResultPart,
)
from omnirelay.canonical.request import ChatRequest, ResponseFormat, Tool, ToolChoice
from omnirelay.errors import BadRequest
from omnirelay.ingress.openai_responses.thinking import thinking_part
from omnirelay.transport import json

_DATA_URL = re.compile(r"^data:(?P<mt>[\w.+-]+/[\w.+-]+)?(?:;[^,]*)?;base64,(?P<data>.*)$", re.S)

# Fields fully represented by the canonical request; everything else is kept in `extra`.
_MODELED = frozenset(
    [
        "model",
        "input",
        "stream",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "max_output_tokens",
        "temperature",
        "top_p",
        "metadata",
    ]
)
# Request fields that need server-side state or features the gateway does not have.
_UNSUPPORTED_FIELDS = {
    "conversation": "conversation objects are not supported; use 'previous_response_id' or send the history",
    "prompt": "stored prompt templates are not supported; send 'instructions' and 'input'",
}
_ROLES: dict[str, Role] = {
    "user": "user",
    "system": "system",
    "developer": "system",
    "assistant": "assistant",
}


def _bad(message: str, param: str, code: str = "invalid_value") -> BadRequest:
    return BadRequest(message, param=param, code=code)


# --- content ------------------------------------------------------------------------------------


def _image(part: dict[str, Any], where: str) -> ImagePart:
    url = part.get("image_url")
    detail = part.get("detail")
    if isinstance(url, str) and url:
        m = _DATA_URL.match(url)
        if m:
            return ImagePart(data=m.group("data"), media_type=m.group("mt"), detail=detail)
        return ImagePart(url=url, detail=detail)
    if part.get("file_id"):
        raise _bad(
            f"{where}: images by 'file_id' are not supported; send 'image_url' (a URL or data URL).",
            where,
            "unsupported_value",
        )
    raise _bad(f"{where}: an input_image needs 'image_url'.", where)


def _file(part: dict[str, Any], where: str) -> FilePart:
    if part.get("file_url") and not (part.get("file_data") or part.get("file_id")):
        raise _bad(
            f"{where}: files by 'file_url' are not supported; send 'file_data' (a data URL) or 'file_id'.",
            where,
            "unsupported_value",
        )
    filename = part.get("filename") if isinstance(part.get("filename"), str) else None
    data = part.get("file_data")
    media_type = None
    if isinstance(data, str):
        if m := _DATA_URL.match(data):
            data, media_type = m.group("data"), m.group("mt")
        elif filename:
            media_type = mimetypes.guess_type(filename)[0]
    else:
        data = None
    file_id = part.get("file_id") if isinstance(part.get("file_id"), str) else None
    if data is None and file_id is None:
        raise _bad(f"{where}: an input_file needs 'file_data' or 'file_id'.", where)
    return FilePart(data=data, media_type=media_type, file_id=file_id, filename=filename)


def _content(content: Any, where: str) -> list[Part]:
    if isinstance(content, str):
        return [TextPart(content)]
    if not isinstance(content, list):
        raise _bad(f"{where}.content must be a string or an array of content parts.", f"{where}.content")
    parts: list[Part] = []
    for j, raw in enumerate(content):
        at = f"{where}.content[{j}]"
        kind = raw.get("type") if isinstance(raw, dict) else None
        if kind in ("input_text", "output_text", "text"):
            parts.append(TextPart(str(raw.get("text") or "")))
        elif kind == "input_image":
            parts.append(_image(raw, at))
        elif kind == "input_file":
            parts.append(_file(raw, at))
        elif kind == "refusal":
            parts.append(RefusalPart(str(raw.get("refusal") or "")))
        else:
            raise _bad(f"{at}: unsupported content part type {kind!r}.", at)
    return parts


# --- input items --------------------------------------------------------------------------------


def _item_kind(item: Any, where: str) -> str:
    if not isinstance(item, dict):
        raise _bad(f"{where} must be an object.", where)
    kind = item.get("type")
    if kind is None:
        # `type` is optional on messages and on item references.
        if "role" in item:
            return "message"
        if "id" in item:
            return "item_reference"
        raise _bad(f"{where}: an input item needs a 'type' (or a 'role' for a message).", where)
    if not isinstance(kind, str):
        raise _bad(f"{where}.type must be a string.", f"{where}.type")
    return kind


def _assistant(out: list[Message]) -> Message:
    """The assistant message the current item belongs to: consecutive assistant-side items (reasoning,
    assistant text, function calls) form one turn."""
    if out and out[-1].role == "assistant":
        return out[-1]
    message = Message("assistant")
    out.append(message)
    return message


def _arguments(raw: Any) -> str:
    if isinstance(raw, str):
        return raw
    return json.dumps(raw if raw is not None else {}).decode()


def _reasoning(item: dict[str, Any]) -> tuple[str, str | None]:
    texts = [str(s.get("text") or "") for s in item.get("summary") or [] if isinstance(s, dict)]
    if not any(texts):
        texts = [str(c.get("text") or "") for c in item.get("content") or [] if isinstance(c, dict)]
    blob = item.get("encrypted_content")
    return "\n\n".join(t for t in texts if t), blob if isinstance(blob, str) and blob else None


def decode_input(raw: Any) -> list[Message]:
    if isinstance(raw, str):
        return [Message("user", [TextPart(raw)])]
    if not isinstance(raw, list):
        raise _bad("'input' must be a string or an array of input items.", "input", "invalid_type")
    out: list[Message] = []
    for i, item in enumerate(raw):
        where = f"input[{i}]"
        kind = _item_kind(item, where)
        if kind == "message":
            role = _ROLES.get(str(item.get("role")))
            if role is None:
                raise _bad(f"{where}.role must be user, assistant, system or developer.", f"{where}.role")
            parts = _content(item.get("content"), where)
            if role == "assistant":
                _assistant(out).parts.extend(parts)
            else:
                out.append(Message(role, parts))
        elif kind == "function_call":
            call_id, name = item.get("call_id"), item.get("name")
            if not isinstance(call_id, str) or not call_id or not isinstance(name, str) or not name:
                raise _bad(f"{where}: a function_call item needs 'call_id' and 'name'.", where)
            plain_id, details = uncarry(call_id)
            _assistant(out).parts.append(
                ToolCallPart(plain_id, name, _arguments(item.get("arguments")), provider_details=details)
            )
        elif kind == "function_call_output":
            call_id = item.get("call_id")
            if not isinstance(call_id, str) or not call_id:
                raise _bad(f"{where}: a function_call_output item needs 'call_id'.", where)
            output = item.get("output")
            content = _content("" if output is None else output, f"{where}.output")
            out.append(Message("tool", [ToolResultPart(uncarry(call_id)[0], content)]))
        elif kind == "reasoning":
            text, blob = _reasoning(item)
            item_id = item.get("id") if isinstance(item.get("id"), str) else None
            _assistant(out).parts.append(thinking_part(item_id, text, blob))
        elif kind == "item_reference":
            raise _bad(
                f"{where}: item_reference {item.get('id')!r} cannot be resolved; send the item itself.",
                where,
                "unsupported_value",
            )
        else:
            message = f"{where}: input items of type {kind!r} are not supported."
            raise _bad(message, where, "unsupported_value")
    return out


# --- tools and settings -------------------------------------------------------------------------


def _tools(raw: Any) -> list[Tool]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise _bad("'tools' must be an array.", "tools", "invalid_type")
    tools: list[Tool] = []
    for i, spec in enumerate(raw):
        where = f"tools[{i}]"
        kind = spec.get("type") if isinstance(spec, dict) else None
        if kind != "function":
            raise _bad(
                f"{where}: tool type {kind!r} is not supported by this gateway; only 'function' tools are.",
                where,
                "unsupported_tool",
            )
        name = spec.get("name")
        if not isinstance(name, str) or not name:
            raise _bad(f"{where}.name is required (Responses function tools are flat).", f"{where}.name")
        strict = spec.get("strict") if isinstance(spec.get("strict"), bool) else None
        tools.append(Tool(name, spec.get("description"), spec.get("parameters"), strict))
    return tools


def _tool_choice(raw: Any, tools: list[Tool]) -> tuple[ToolChoice | None, list[Tool]]:
    """The tool choice, and the tools left after an `allowed_tools` restriction."""
    if raw is None:
        return None, tools
    if raw in ("auto", "none", "required"):
        return ToolChoice(raw), tools
    kind = raw.get("type") if isinstance(raw, dict) else None
    if kind == "function" and isinstance(raw.get("name"), str):
        return ToolChoice("tool", raw["name"]), tools
    if kind == "allowed_tools":
        specs = raw.get("tools") or []
        for spec in specs:
            if not isinstance(spec, dict) or spec.get("type") != "function":
                got = spec.get("type") if isinstance(spec, dict) else spec
                raise _bad(f"tool_choice.tools: tool type {got!r} is not supported.", "tool_choice")
        allowed = {spec.get("name") for spec in specs}
        choice = ToolChoice("required" if raw.get("mode") == "required" else "auto")
        return choice, [t for t in tools if t.name in allowed]
    message = f"tool_choice {raw!r} is not supported; use auto, none, required or a function."
    raise _bad(message, "tool_choice")


def _format(text: Any) -> ResponseFormat | None:
    if text is None:
        return None
    fmt = text.get("format") if isinstance(text, dict) else None
    if fmt is None:
        return None
    kind = fmt.get("type") if isinstance(fmt, dict) else None
    if kind == "json_schema":
        schema = fmt.get("schema")
        if not isinstance(schema, dict):
            raise _bad("text.format.schema is required for json_schema.", "text.format.schema")
        return ResponseFormat("json_schema", fmt.get("name"), schema, fmt.get("strict"))
    if kind in ("text", "json_object"):
        return ResponseFormat(kind)
    raise _bad(f"text.format type {kind!r} is not supported.", "text.format")


def decode_request(body: dict[str, Any]) -> ChatRequest:
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise _bad("'model' is required and must be a string.", "model", "missing_model")
    for name, why in _UNSUPPORTED_FIELDS.items():
        if body.get(name) is not None:
            raise _bad(f"'{name}': {why}.", name, "unsupported_parameter")
    if body.get("background") is True:
        raise _bad("'background' responses are not supported.", "background", "unsupported_parameter")
    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise _bad("'stream' must be a boolean.", "stream", "invalid_type")
    if "input" not in body or body["input"] is None:
        raise _bad("'input' is required.", "input", "missing_required_parameter")
    messages = decode_input(body["input"])
    instructions = body.get("instructions")
    if instructions is not None and not isinstance(instructions, str):
        raise _bad("'instructions' must be a string.", "instructions", "invalid_type")
    if instructions:
        messages.insert(0, Message("system", [TextPart(instructions)]))
    if not messages:
        raise _bad("'input' must contain at least one item.", "input")
    choice, tools = _tool_choice(body.get("tool_choice"), _tools(body.get("tools")))
    raw_reasoning = body.get("reasoning")
    reasoning: dict[str, Any] = raw_reasoning if isinstance(raw_reasoning, dict) else {}
    summary = reasoning.get("summary") or reasoning.get("generate_summary")
    user = body.get("user") or body.get("safety_identifier")
    metadata = body.get("metadata")
    return ChatRequest(
        model=model,
        messages=messages,
        stream=stream is True,
        include_usage=True,
        tools=tools,
        tool_choice=choice,
        parallel_tool_calls=body.get("parallel_tool_calls"),
        response_format=_format(body.get("text")),
        max_tokens=body.get("max_output_tokens"),
        temperature=body.get("temperature"),
        top_p=body.get("top_p"),
        reasoning_effort=reasoning.get("effort"),
        include_reasoning=bool(summary) and summary != "none",
        metadata=metadata if isinstance(metadata, dict) else None,
        user=user if isinstance(user, str) else None,
        extra={k: v for k, v in body.items() if k not in _MODELED},
    )
