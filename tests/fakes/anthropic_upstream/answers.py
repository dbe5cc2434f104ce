"""What the fake answers: the full message for a validated request, and its SSE rendering."""

from __future__ import annotations

import json
import re
import secrets
from typing import Any

from .common import FakeAnthropicState, sign, sse_event


def _words(text: str) -> int:
    return len(text.split())


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    return " ".join(b["text"] for b in content or [] if b.get("type") == "text")


def prompt_words(body: dict[str, Any], turns: list[dict[str, Any]]) -> int:
    system = body.get("system")
    total = _words(system if isinstance(system, str) else _text_of(system))
    for turn in turns:
        for block in turn["content"]:
            if block.get("type") == "text":
                total += _words(block["text"])
            elif block.get("type") == "tool_result":
                total += _words(_text_of(block.get("content")))
    return max(total, 1)


def _last_user_text(turns: list[dict[str, Any]]) -> str:
    for turn in reversed(turns):
        if turn["role"] != "user":
            continue
        kinds = [b.get("type") for b in turn["content"]]
        text = _text_of(turn["content"])
        if kinds.count("image"):
            text += f" [images: {kinds.count('image')}]"
        if kinds.count("document"):
            text += f" [documents: {kinds.count('document')}]"
        if text:
            return text.strip()
    return ""


def _sample(schema: Any) -> Any:
    if not isinstance(schema, dict):
        return None
    if schema.get("enum"):
        return schema["enum"][0]
    kind = schema.get("type", "object" if "properties" in schema else "string")
    if kind == "object":
        return {k: _sample(v) for k, v in (schema.get("properties") or {}).items()}
    return {"string": "x", "integer": 1, "number": 1.5, "boolean": True, "array": [], "null": None}.get(kind)


def answer(body: dict[str, Any], turns: list[dict[str, Any]], state: FakeAnthropicState) -> dict[str, Any]:
    """The full response message (content, stop reason, usage) for a validated request."""
    text = _last_user_text(turns)
    last = turns[-1]["content"]
    results = [b for b in last if b.get("type") == "tool_result"] if turns[-1]["role"] == "user" else []
    content: list[dict[str, Any]] = []
    thinking = body.get("thinking") or {}
    if thinking.get("type") == "enabled":
        idea = f"thinking about: {text}"
        content.append({"type": "thinking", "thinking": idea, "signature": sign(state, idea)})
    tools, choice = body.get("tools") or [], body.get("tool_choice") or {}
    stop_reason, stop_sequence, reply = "end_turn", None, None
    if body["model"] == "refuse":
        reply, stop_reason = "I can't help with that.", "refusal"
    elif results:
        reply = "tool said: " + "; ".join(_text_of(r.get("content")) for r in results)
    elif tools and choice.get("type") != "none":
        names = [t["name"] for t in tools]
        if choice.get("type") == "tool":
            names = [choice["name"]]
        elif choice.get("disable_parallel_tool_use"):
            names = names[:1]
        for name in names:
            block = {"type": "tool_use", "id": "toolu_" + secrets.token_hex(12), "name": name}
            content.append({**block, "input": {"query": text}})
        stop_reason = "tool_use"
    elif (fmt := (body.get("output_config") or {}).get("format")) is not None:
        reply = json.dumps(_sample(fmt["schema"]))
    else:
        reply = "echo: " + text
    if reply is not None:
        for stop in body.get("stop_sequences") or []:
            if stop in reply:
                reply, stop_reason, stop_sequence = reply[: reply.index(stop)], "stop_sequence", stop
        if _words(reply) > body["max_tokens"]:
            reply, stop_reason = " ".join(reply.split()[: body["max_tokens"]]), "max_tokens"
        if reply:
            content.append({"type": "text", "text": reply})
    out_words = sum(_words(b.get("text") or b.get("thinking") or json.dumps(b.get("input"))) for b in content)
    usage: dict[str, Any] = {
        "input_tokens": prompt_words(body, turns),
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "output_tokens": max(out_words, 1),
    }
    if body["model"] == "cache-hit":
        usage.update(input_tokens=100, cache_read_input_tokens=900, cache_creation_input_tokens=50)
    if content and content[0]["type"] == "thinking":
        usage["output_tokens_details"] = {"thinking_tokens": _words(content[0]["thinking"])}
    return {
        "id": "msg_" + secrets.token_hex(12),
        "type": "message",
        "role": "assistant",
        "model": body["model"],
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": stop_sequence,
        "usage": usage,
    }


def _pieces(text: str) -> list[str]:
    """Stream fragments: words with their trailing space (at least two pieces when possible)."""
    parts = re.findall(r"\S+\s*|\s+", text)
    if len(parts) == 1 and len(text) > 1:
        return [text[: len(text) // 2], text[len(text) // 2 :]]
    return parts or [""]


def stream_events(message: dict[str, Any]) -> list[bytes]:
    usage = message["usage"]
    head = {**message, "content": [], "stop_reason": None, "stop_sequence": None}
    head["usage"] = {k: usage[k] for k in usage if k != "output_tokens_details"} | {"output_tokens": 1}
    events = [sse_event({"type": "message_start", "message": head}), sse_event({"type": "ping"})]
    for index, block in enumerate(message["content"]):
        kind = block["type"]
        start: dict[str, Any] = {"type": kind}
        deltas: list[dict[str, Any]] = []
        if kind == "text":
            start["text"] = ""
            deltas = [{"type": "text_delta", "text": p} for p in _pieces(block["text"])]
        elif kind == "thinking":
            start.update(thinking="", signature="")
            deltas = [{"type": "thinking_delta", "thinking": p} for p in _pieces(block["thinking"])]
            deltas.append({"type": "signature_delta", "signature": block["signature"]})
        else:
            start.update(id=block["id"], name=block["name"], input={})
            arguments = json.dumps(block["input"])
            size = max(1, len(arguments) // 3)
            pieces = [arguments[i : i + size] for i in range(0, len(arguments), size)]
            deltas = [{"type": "input_json_delta", "partial_json": p} for p in ["", *pieces]]
        events.append(sse_event({"type": "content_block_start", "index": index, "content_block": start}))
        events += [sse_event({"type": "content_block_delta", "index": index, "delta": d}) for d in deltas]
        events.append(sse_event({"type": "content_block_stop", "index": index}))
    delta = {"stop_reason": message["stop_reason"], "stop_sequence": message["stop_sequence"]}
    events.append(sse_event({"type": "message_delta", "delta": delta, "usage": usage}))
    events.append(sse_event({"type": "message_stop"}))
    return events
