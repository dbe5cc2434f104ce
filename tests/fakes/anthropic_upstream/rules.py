"""Request validation with the real API's rules and (abridged) error messages."""

from __future__ import annotations

import re
from typing import Any

from .common import FakeAnthropicState

_ID = re.compile(r"[a-zA-Z0-9_-]+")
_TOOL_NAME = re.compile(r"[a-zA-Z0-9_-]{1,128}")
_IMAGE_TYPES = ("image/jpeg", "image/png", "image/gif", "image/webp")
_COUNT_TOP_LEVEL = frozenset(
    ["model", "messages", "system", "tools", "tool_choice", "thinking", "output_config"]
)
_TOP_LEVEL = _COUNT_TOP_LEVEL | {
    "max_tokens",
    "stop_sequences",
    "stream",
    "temperature",
    "top_p",
    "top_k",
    "metadata",
    "service_tier",
    "cache_control",
    "container",
    "inference_geo",
    "speed",
    "diagnostics",
    "context_management",
    "mcp_servers",
}


class Invalid(Exception):
    """A request the real API answers with 400 invalid_request_error."""


def _blocks(content: Any, where: str) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if not isinstance(content, list) or not all(isinstance(b, dict) for b in content):
        raise Invalid(f"{where}.content: Input should be a valid list")
    return content


def _turns(messages: Any) -> list[dict[str, Any]]:
    """Messages with string content as blocks and consecutive same-role turns merged (as the API does)."""
    if not isinstance(messages, list) or not messages:
        raise Invalid("messages: Field required" if messages is None else "messages: at least one message")
    turns: list[dict[str, Any]] = []
    for i, message in enumerate(messages):
        role = message.get("role") if isinstance(message, dict) else None
        if role not in ("user", "assistant"):
            raise Invalid(f"messages.{i}.role: Input should be 'user' or 'assistant'")
        blocks = _blocks(message.get("content"), f"messages.{i}")
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"] = turns[-1]["content"] + blocks
        else:
            turns.append({"role": role, "content": list(blocks), "at": i})
    return turns


def _check_text(block: dict[str, Any], where: str) -> None:
    text = block.get("text")
    if not isinstance(text, str):
        raise Invalid(f"{where}.text: Field required")
    if not text:
        raise Invalid("messages: text content blocks must be non-empty")
    if not text.strip():
        raise Invalid("messages: text content blocks must contain non-whitespace text")


def _check_user_block(block: dict[str, Any], where: str) -> None:
    kind = block.get("type")
    if kind == "text":
        _check_text(block, where)
    elif kind == "image":
        source = block.get("source") or {}
        if source.get("type") == "base64":
            if source.get("media_type") not in _IMAGE_TYPES:
                raise Invalid(f"{where}.source.base64.media_type: Input should be one of {_IMAGE_TYPES}")
            if not isinstance(source.get("data"), str) or not source["data"]:
                raise Invalid(f"{where}.source.base64.data: Field required")
        elif source.get("type") == "url":
            if not str(source.get("url") or "").startswith(("http://", "https://")):
                raise Invalid(f"{where}.source.url.url: invalid URL")
        else:
            raise Invalid(f"{where}.source: Input tag {source.get('type')!r} matches no expected tag")
    elif kind == "document":
        source = block.get("source") or {}
        pdf = source.get("type") == "base64" and source.get("media_type") == "application/pdf"
        text = source.get("type") == "text" and source.get("media_type") == "text/plain"
        if not (pdf or text) or not isinstance(source.get("data"), str):
            raise Invalid(f"{where}.source: unsupported document source")
    elif kind == "tool_result":
        if not _ID.fullmatch(str(block.get("tool_use_id") or "")):
            raise Invalid(f"{where}.tool_use_id: String should match pattern '^[a-zA-Z0-9_-]+$'")
        content = block.get("content")
        if content is not None and not isinstance(content, str):
            for j, inner in enumerate(_blocks(content, where)):
                if inner.get("type") not in ("text", "image", "document"):
                    raise Invalid(f"{where}.content.{j}.type: unsupported in tool_result")
                _check_user_block(inner, f"{where}.content.{j}")
    else:
        raise Invalid(f"{where}: Input tag {kind!r} found using 'type' matches no expected tag")


def _check_assistant_block(block: dict[str, Any], where: str, state: FakeAnthropicState) -> None:
    kind = block.get("type")
    if kind == "text":
        _check_text(block, where)
    elif kind == "tool_use":
        if not _ID.fullmatch(str(block.get("id") or "")):
            raise Invalid(f"{where}.tool_use.id: String should match pattern '^[a-zA-Z0-9_-]+$'")
        if not isinstance(block.get("input"), dict):
            raise Invalid(f"{where}.tool_use.input: Input should be a valid dictionary")
        if not isinstance(block.get("name"), str):
            raise Invalid(f"{where}.tool_use.name: Field required")
    elif kind == "thinking":
        signature = block.get("signature")
        if not isinstance(signature, str) or not signature:
            raise Invalid(f"{where}.thinking.signature: Field required")
        if state.signatures.get(signature) != block.get("thinking"):
            raise Invalid(f"{where}: Invalid `signature` in `thinking` block")
    elif kind == "redacted_thinking":
        if not isinstance(block.get("data"), str) or not block["data"]:
            raise Invalid(f"{where}.redacted_thinking.data: Field required")
    else:
        raise Invalid(f"{where}: Input tag {kind!r} found using 'type' matches no expected tag")


def _check_pairing(turns: list[dict[str, Any]]) -> None:
    seen: set[str] = set()
    for t, turn in enumerate(turns):
        uses = [b["id"] for b in turn["content"] if b.get("type") == "tool_use"]
        if turn["role"] == "assistant":
            if seen & set(uses):
                raise Invalid(f"messages.{turn['at']}: `tool_use` ids must be unique")
            seen.update(uses)
            nxt = turns[t + 1] if t + 1 < len(turns) else None
            answered = {b.get("tool_use_id") for b in nxt["content"]} if nxt else set()
            missing = [u for u in uses if u not in answered]
            if missing:
                raise Invalid(
                    f"messages.{turn['at']}: `tool_use` ids were found without `tool_result` blocks "
                    f"immediately after: {', '.join(missing)}. Each `tool_use` block must have a "
                    "corresponding `tool_result` block in the next message."
                )
            continue
        results = [b for b in turn["content"] if b.get("type") == "tool_result"]
        previous = turns[t - 1]["content"] if t else []
        offered = {b.get("id") for b in previous if b.get("type") == "tool_use"}
        stray = [b["tool_use_id"] for b in results if b["tool_use_id"] not in offered]
        if stray:
            raise Invalid(
                f"messages.{turn['at']}: unexpected `tool_use_id` found in `tool_result` blocks: {stray[0]}. "
                "Each `tool_result` block must have a corresponding `tool_use` block in the previous message."
            )
        kinds = [b.get("type") for b in turn["content"]]
        if results and kinds[: len(results)] != ["tool_result"] * len(results):
            raise Invalid(f"messages.{turn['at']}: `tool_result` blocks must come first in the user message")


def _check_thinking(body: dict[str, Any], turns: list[dict[str, Any]]) -> None:
    thinking = body.get("thinking")
    if thinking is None or thinking.get("type") == "disabled":
        return
    if thinking.get("type") != "enabled":
        raise Invalid(f"thinking.type: unsupported value {thinking.get('type')!r}")
    budget = thinking.get("budget_tokens")
    if not isinstance(budget, int) or budget < 1024:
        raise Invalid("thinking.enabled.budget_tokens: Input should be greater than or equal to 1024")
    if budget >= body.get("max_tokens", 0):
        raise Invalid("`max_tokens` must be greater than `thinking.budget_tokens`")
    if body.get("temperature") not in (None, 1):
        raise Invalid("`temperature` may only be set to 1 when thinking is enabled")
    if body.get("top_k") is not None:
        raise Invalid("`top_k` cannot be set when thinking is enabled")
    if (body.get("tool_choice") or {}).get("type") in ("any", "tool"):
        raise Invalid("Thinking may not be enabled when tool_choice forces tool use.")
    last = next((t for t in reversed(turns) if t["role"] == "assistant"), None)
    if last and any(b.get("type") == "tool_use" for b in last["content"]):
        first = last["content"][0].get("type")
        if first not in ("thinking", "redacted_thinking"):
            raise Invalid(
                f"messages.{last['at']}.content.0.type: Expected `thinking` or `redacted_thinking`, but "
                f"found `{first}`. When `thinking` is enabled, a final `assistant` message must start with a "
                "thinking block (preceeding the lastmost set of `tool_use` and `tool_result` blocks). We "
                "recommend you include thinking blocks from previous turns. To avoid this requirement, "
                "disable `thinking`."
            )


def _check_tools(body: dict[str, Any]) -> None:
    tools = body.get("tools") or []
    names = []
    for i, tool in enumerate(tools):
        if not _TOOL_NAME.fullmatch(str(tool.get("name") or "")):
            raise Invalid(f"tools.{i}.custom.name: String should match pattern '^[a-zA-Z0-9_-]{{1,128}}$'")
        schema = tool.get("input_schema")
        if not isinstance(schema, dict) or schema.get("type") != "object":
            raise Invalid(f"tools.{i}.custom.input_schema.type: Input should be 'object'")
        names.append(tool["name"])
    choice = body.get("tool_choice")
    if choice is None:
        return
    if not tools and choice.get("type") != "none":
        raise Invalid("tool_choice: tool_choice may only be specified while providing tools")
    if choice.get("type") not in ("auto", "any", "tool", "none"):
        raise Invalid(f"tool_choice.type: unexpected value {choice.get('type')!r}")
    if choice.get("type") == "tool" and choice.get("name") not in names:
        raise Invalid(f"tool_choice.name: Tool '{choice.get('name')}' not found in tools")


def check(body: dict[str, Any], state: FakeAnthropicState, *, count: bool = False) -> list[dict[str, Any]]:
    """Validate a Messages request like the API; returns the merged turns."""
    for key in body:
        if key not in (_COUNT_TOP_LEVEL if count else _TOP_LEVEL):
            raise Invalid(f"{key}: Extra inputs are not permitted")
    if not isinstance(body.get("model"), str):
        raise Invalid("model: Field required")
    if not count:
        max_tokens = body.get("max_tokens")
        if max_tokens is None:
            raise Invalid("max_tokens: Field required")
        if not isinstance(max_tokens, int) or max_tokens < 1:
            raise Invalid("max_tokens: Input should be greater than or equal to 1")
    turns = _turns(body.get("messages"))
    for turn in turns:
        for j, block in enumerate(turn["content"]):
            where = f"messages.{turn['at']}.content.{j}"
            if turn["role"] == "user":
                _check_user_block(block, where)
            else:
                _check_assistant_block(block, where, state)
    last = turns[-1]["content"][-1] if turns[-1]["role"] == "assistant" and turns[-1]["content"] else {}
    if last.get("type") == "text" and last["text"] != last["text"].rstrip():
        raise Invalid("messages: final assistant content cannot end with trailing whitespace")
    _check_pairing(turns)
    _check_thinking(body, turns)
    _check_tools(body)
    system = body.get("system")
    if isinstance(system, list):
        for j, block in enumerate(system):
            if block.get("type") != "text":
                raise Invalid(f"system.{j}.type: Input should be 'text'")
            _check_text(block, f"system.{j}")
    elif system is not None and not isinstance(system, str):
        raise Invalid("system: Input should be a valid string or list")
    temperature = body.get("temperature")
    if temperature is not None and not 0 <= temperature <= 1:
        raise Invalid("temperature: Input should be less than or equal to 1")
    if set(body.get("metadata") or {}) - {"user_id"}:
        raise Invalid("metadata: Extra inputs are not permitted")
    stops = body.get("stop_sequences") or []
    if not isinstance(stops, list) or not all(isinstance(s, str) and s.strip() for s in stops):
        raise Invalid("stop_sequences: each stop sequence must contain non-whitespace characters")
    fmt = (body.get("output_config") or {}).get("format")
    if fmt is not None and (fmt.get("type") != "json_schema" or not isinstance(fmt.get("schema"), dict)):
        raise Invalid("output_config.format: expected {type: 'json_schema', schema: {...}}")
    return turns
