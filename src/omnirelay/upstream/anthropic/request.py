"""Canonical request → Anthropic Messages request body.

Mapping decisions, in one place:

- System messages (wherever they are) become the top-level `system`: a string when there is one
  text, text blocks otherwise. System prompts take text only; other parts are a 400.
- user / tool / assistant messages become alternating user / assistant turns. Consecutive turns of
  one role are merged; in a user turn the `tool_result` blocks go first, in an assistant turn the
  thinking blocks go first (Anthropic's ordering rules). Empty and whitespace-only text is skipped,
  and a message left with nothing is dropped. A final assistant turn (prefill) loses trailing
  whitespace, which Anthropic rejects.
- Thinking in assistant turns: with a signature → `thinking`; redacted with
  `provider_details["anthropic"]["data"]` → `redacted_thinking`; unsigned (another vendor's
  reasoning) → dropped, since Anthropic rejects unsigned thinking.
- Tool calls: `input` is the parsed `arguments`. Empty arguments give `{}`; arguments that are not
  a JSON object (invalid JSON included) are kept as `{"_raw": <text>}`, so the model still sees what
  was produced and the request stays valid. Tool ids that do not match `^[a-zA-Z0-9_-]+$` are
  rewritten by `tool_id` (disallowed runs → `_`, plus 10 hex digits of the id's SHA-256), which is
  deterministic and used for both `tool_use.id` and `tool_result.tool_use_id`.
- Images: base64 (media type from the part, else sniffed from the data) or URL sources. Files: PDF →
  `document` with a base64 source; text/* → `document` with a plain-text source; file ids and other
  types are a 400. Audio is a 400.
- Reasoning: `reasoning_budget` wins (0 → off, below 1024 → 1024); otherwise `reasoning_effort` by
  `EFFORT_BUDGETS` ("none" → off). Thinking is switched off when the request forces a tool
  (`required` / a named tool), when the conversation ends with an assistant prefill, or when the
  last assistant turn holds tool calls but no signed thinking to replay (all three are 400s at
  Anthropic). With thinking on, `temperature` and `top_k` are dropped, `top_p` below 0.95 is dropped.
- `max_tokens` defaults to 4096; when it is not above the thinking budget the budget is added to it.
- `temperature` is clamped to 0..1; `top_p` is not sent together with `temperature` (newer models
  reject the pair). `seed`, penalties and logprobs have no Anthropic equivalent and are dropped;
  `n > 1` is a 400.
- `response_format` json_schema → `output_config.format` (Anthropic structured output);
  json_object → an instruction appended to the system prompt. Never a hidden tool.
- `user` (or `metadata["user_id"]`) → `metadata.user_id`; `stop` → `stop_sequences` (blank ones
  dropped); `parallel_tool_calls: false` → `disable_parallel_tool_use: true` on `tool_choice`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from typing import Any

from omnirelay.canonical.messages import (
    AudioPart,
    FilePart,
    ImagePart,
    Message,
    Part,
    RefusalPart,
    TextPart,
    ThinkingPart,
    ToolCallPart,
    ToolResultPart,
)
from omnirelay.canonical.request import ChatRequest, Tool
from omnirelay.errors import BadRequest
from omnirelay.transport import json

DEFAULT_MAX_TOKENS = 4096
MIN_THINKING_BUDGET = 1024
# reasoning_effort → thinking budget_tokens.
EFFORT_BUDGETS: dict[str, int] = {
    "minimal": 1024,
    "low": 1024,
    "medium": 4096,
    "high": 16384,
    "xhigh": 32768,
    "max": 32768,
}
JSON_OBJECT_INSTRUCTION = (
    "Answer with exactly one JSON object and nothing else: no prose before or after it, no Markdown "
    "code fences."
)

_TOOL_ID = re.compile(r"[a-zA-Z0-9_-]+")
_NOT_ID = re.compile(r"[^a-zA-Z0-9_-]+")
_DATA_URL = re.compile(r"^data:(?P<mt>[\w.+-]+/[\w.+-]+)?(?:;[^,]*)?;base64,(?P<data>.*)$", re.S)
# Leading base64 characters of common file signatures.
_SNIFF = (
    ("/9j/", "image/jpeg"),
    ("iVBORw0KGgo", "image/png"),
    ("R0lGOD", "image/gif"),
    ("UklGR", "image/webp"),
    ("JVBERi0", "application/pdf"),
)


def tool_id(raw: str) -> str:
    """A tool id Anthropic accepts; ids that already match are kept, others rewritten deterministically."""
    if _TOOL_ID.fullmatch(raw):
        return raw
    digest = hashlib.sha256(raw.encode()).hexdigest()[:10]
    cleaned = _NOT_ID.sub("_", raw).strip("_")
    return f"{cleaned}_{digest}" if cleaned else f"toolu_{digest}"


def thinking_budget(req: ChatRequest) -> int | None:
    """The thinking budget the request asks for, or None for no thinking."""
    if req.reasoning_budget is not None:
        return max(req.reasoning_budget, MIN_THINKING_BUDGET) if req.reasoning_budget > 0 else None
    effort = req.reasoning_effort
    if effort is None or effort.lower() == "none":
        return None
    budget = EFFORT_BUDGETS.get(effort.lower())
    if budget is None:
        allowed = ", ".join(["none", *EFFORT_BUDGETS])
        raise BadRequest(
            f"Unsupported reasoning_effort {effort!r}; expected one of {allowed}.", param="reasoning_effort"
        )
    return budget


def build_body(req: ChatRequest) -> dict[str, Any]:
    if req.n > 1:
        raise BadRequest("Anthropic does not support n > 1.", param="n", code="unsupported_parameter")
    system, turns = conversation(req.messages)
    if not turns:
        raise BadRequest(
            "The conversation has no user or assistant content to send to Anthropic.", param="messages"
        )
    fmt = req.response_format
    if fmt is not None and fmt.type == "json_object":
        system.append(JSON_OBJECT_INSTRUCTION)

    budget = thinking_budget(req)
    if budget is not None and not _thinking_allowed(req, turns):
        budget = None
    max_tokens = req.max_tokens if req.max_tokens and req.max_tokens > 0 else DEFAULT_MAX_TOKENS
    if budget is not None and max_tokens <= budget:
        max_tokens += budget

    body: dict[str, Any] = {"model": req.model, "max_tokens": max_tokens}
    if system:
        body["system"] = system[0] if len(system) == 1 else [{"type": "text", "text": t} for t in system]
    body["messages"] = turns
    if budget is not None:
        body["thinking"] = {"type": "enabled", "budget_tokens": budget}
    _sampling(req, body, thinking=budget is not None)
    stops = [s for s in req.stop if s.strip()]
    if stops:
        body["stop_sequences"] = stops
    if req.tools:
        body["tools"] = [_tool(t) for t in req.tools]
        choice = _tool_choice(req)
        if choice is not None:
            body["tool_choice"] = choice
    if fmt is not None and fmt.type == "json_schema":
        schema = fmt.schema or {"type": "object"}
        body["output_config"] = {"format": {"type": "json_schema", "schema": schema}}
    user_id = req.user or (req.metadata or {}).get("user_id")
    if isinstance(user_id, str) and user_id:
        body["metadata"] = {"user_id": user_id}
    return body


# --- messages -----------------------------------------------------------------------------------


def conversation(messages: list[Message]) -> tuple[list[str], list[dict[str, Any]]]:
    """System texts and alternating user/assistant turns."""
    system: list[str] = []
    turns: list[dict[str, Any]] = []
    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        if message.role == "system":
            system.extend(_system_texts(message, where))
            continue
        role = "assistant" if message.role == "assistant" else "user"
        blocks = _assistant_blocks(message, where) if role == "assistant" else _user_blocks(message, where)
        if not blocks:
            continue
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})
    for turn in turns:
        first = "tool_result" if turn["role"] == "user" else "thinking"
        turn["content"].sort(key=lambda b: 0 if b["type"].endswith(first) else 1)
    if turns and turns[-1]["role"] == "assistant":
        _trim_prefill(turns)
    return system, turns


def _trim_prefill(turns: list[dict[str, Any]]) -> None:
    content = turns[-1]["content"]
    last = content[-1]
    if last["type"] == "text":
        last["text"] = last["text"].rstrip()
        if not last["text"]:
            content.pop()
    if not content:
        turns.pop()


def _system_texts(message: Message, where: str) -> list[str]:
    texts = []
    for part in message.parts:
        if isinstance(part, TextPart):
            if part.text.strip():
                texts.append(part.text)
        else:
            raise BadRequest(f"{where}: Anthropic system prompts accept text only.", param=where)
    return texts


def _user_blocks(message: Message, where: str) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    for part in message.parts:
        if isinstance(part, ToolResultPart):
            blocks.append(_tool_result(part, where))
        else:
            block = _content_block(part, where)
            if block is not None:
                blocks.append(block)
    return blocks


def _assistant_blocks(message: Message, where: str) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    for part in message.parts:
        if isinstance(part, ThinkingPart):
            block = _thinking(part)
            if block is not None:
                blocks.append(block)
        elif isinstance(part, (TextPart, RefusalPart)):
            if part.text.strip():
                blocks.append({"type": "text", "text": part.text})
        elif isinstance(part, ToolCallPart):
            blocks.append(
                {
                    "type": "tool_use",
                    "id": tool_id(part.id),
                    "name": part.name,
                    "input": _input(part.arguments),
                }
            )
        # Assistant turns cannot hold images, files or audio at Anthropic; such parts are dropped.
    return blocks


def _thinking(part: ThinkingPart) -> dict[str, Any] | None:
    if part.redacted:
        data = ((part.provider_details or {}).get("anthropic") or {}).get("data")
        return {"type": "redacted_thinking", "data": data} if isinstance(data, str) and data else None
    if part.signature:
        return {"type": "thinking", "thinking": part.text, "signature": part.signature}
    return None


def _input(arguments: str) -> dict[str, Any]:
    if not arguments.strip():
        return {}
    try:
        value = json.loads(arguments)
    except json.JSONDecodeError:
        return {"_raw": arguments}
    return value if isinstance(value, dict) else {"_raw": arguments}


def _tool_result(part: ToolResultPart, where: str) -> dict[str, Any]:
    block: dict[str, Any] = {"type": "tool_result", "tool_use_id": tool_id(part.tool_call_id)}
    content = []
    for item in part.content:
        inner = _content_block(item, where)
        if inner is not None:
            content.append(inner)
    if content:
        block["content"] = content
    if part.is_error:
        block["is_error"] = True
    return block


def _content_block(part: Part, where: str) -> dict[str, Any] | None:
    """A user-side block (user turn or tool result content); None for parts that have no place there."""
    if isinstance(part, (TextPart, RefusalPart)):
        return {"type": "text", "text": part.text} if part.text.strip() else None
    if isinstance(part, ImagePart):
        return _image(part, where)
    if isinstance(part, FilePart):
        return _document(part, where)
    if isinstance(part, AudioPart):
        raise BadRequest(
            f"{where}: Anthropic does not accept audio input (input_audio).",
            param=where,
            code="unsupported_content",
        )
    return None


def _sniff(data: str, default: str) -> str:
    head = data[:16].lstrip()
    return next((mt for prefix, mt in _SNIFF if head.startswith(prefix)), default)


def _image(part: ImagePart, where: str) -> dict[str, Any]:
    data, media_type = part.data, part.media_type
    if not data and part.url and (m := _DATA_URL.match(part.url)):
        data, media_type = m.group("data"), m.group("mt")
    if data:
        source = {"type": "base64", "media_type": media_type or _sniff(data, "image/png"), "data": data}
        return {"type": "image", "source": source}
    if part.url:
        return {"type": "image", "source": {"type": "url", "url": part.url}}
    raise BadRequest(f"{where}: an image needs a URL or base64 data.", param=where)


def _document(part: FilePart, where: str) -> dict[str, Any]:
    if not part.data:
        raise BadRequest(
            f"{where}: file references (file_id) cannot be sent to Anthropic; send the file's data inline.",
            param=where,
            code="unsupported_content",
        )
    media_type = part.media_type or _sniff(part.data, "")
    if not media_type and (part.filename or "").lower().endswith(".pdf"):
        media_type = "application/pdf"
    block: dict[str, Any]
    if media_type == "application/pdf":
        block = {
            "type": "document",
            "source": {"type": "base64", "media_type": media_type, "data": part.data},
        }
    elif media_type.startswith("text/"):
        try:
            text = base64.b64decode(part.data, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise BadRequest(f"{where}: the text file is not valid base64 UTF-8.", param=where) from None
        block = {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": text}}
    else:
        raise BadRequest(
            f"{where}: Anthropic accepts PDF and plain-text documents, not {media_type or 'this file type'}.",
            param=where,
            code="unsupported_content",
        )
    if part.filename:
        block["title"] = part.filename
    return block


# --- tools, thinking, sampling ------------------------------------------------------------------


def _tool(tool: Tool) -> dict[str, Any]:
    schema: dict[str, Any] = (
        dict(tool.parameters) if tool.parameters else {"type": "object", "properties": {}}
    )
    schema.setdefault("type", "object")
    out: dict[str, Any] = {"name": tool.name}
    if tool.description:
        out["description"] = tool.description
    out["input_schema"] = schema
    if tool.strict:
        out["strict"] = True
    return out


def _tool_choice(req: ChatRequest) -> dict[str, Any] | None:
    choice = req.tool_choice
    mode = choice.mode if choice is not None else "auto"
    out: dict[str, Any]
    if mode == "none":
        return {"type": "none"}
    if mode == "required":
        out = {"type": "any"}
    elif mode == "tool" and choice is not None and choice.name:
        out = {"type": "tool", "name": choice.name}
    elif choice is None and req.parallel_tool_calls is not False:
        return None  # Anthropic's default is auto
    else:
        out = {"type": "auto"}
    if req.parallel_tool_calls is False:
        out["disable_parallel_tool_use"] = True
    return out


def _forces_tool(req: ChatRequest) -> bool:
    return bool(req.tools) and req.tool_choice is not None and req.tool_choice.mode in ("required", "tool")


def _thinking_allowed(req: ChatRequest, turns: list[dict[str, Any]]) -> bool:
    if _forces_tool(req) or turns[-1]["role"] == "assistant":
        return False
    last_assistant = next((t for t in reversed(turns) if t["role"] == "assistant"), None)
    if last_assistant is None:
        return True
    content = last_assistant["content"]
    if not any(b["type"] == "tool_use" for b in content):
        return True
    return content[0]["type"] in ("thinking", "redacted_thinking")


def _sampling(req: ChatRequest, body: dict[str, Any], *, thinking: bool) -> None:
    if req.temperature is not None and not thinking:
        body["temperature"] = min(max(float(req.temperature), 0.0), 1.0)
    if req.top_p is not None and "temperature" not in body and (not thinking or req.top_p >= 0.95):
        body["top_p"] = req.top_p
    if req.top_k is not None and not thinking:
        body["top_k"] = req.top_k
