"""OpenAI Chat Completions as a client-facing protocol: decode requests, encode answers and errors.

Used when the upstream speaks another dialect (the mock provider now; Anthropic and Gemini later).
Same-protocol traffic is relayed by `omnirelay.passthrough` and only goes through `check_request`.
"""

from __future__ import annotations

import base64
import re
import struct
from typing import Any

from omnirelay.canonical.ids import carry, uncarry
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
from omnirelay.canonical.request import ChatRequest, EmbeddingRequest, ResponseFormat, Tool, ToolChoice
from omnirelay.canonical.response import ChatResponse, EmbeddingResponse
from omnirelay.canonical.stream import (
    BlockDelta,
    BlockStart,
    Finish,
    StreamError,
    StreamEvent,
    StreamStart,
    UsageEvent,
)
from omnirelay.canonical.usage import Usage
from omnirelay.errors import BadRequest, GatewayError
from omnirelay.transport import json, sse
from omnirelay.wire.openai import usage_json

_DATA_URL = re.compile(r"^data:(?P<mt>[\w.+-]+/[\w.+-]+)?(?:;[^,]*)?;base64,(?P<data>.*)$", re.S)

# Fields the canonical request models; everything else goes into `extra`.
_KNOWN = frozenset(
    [
        "model",
        "messages",
        "stream",
        "stream_options",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "response_format",
        "max_tokens",
        "max_completion_tokens",
        "temperature",
        "top_p",
        "stop",
        "seed",
        "n",
        "reasoning_effort",
        "logprobs",
        "top_logprobs",
        "user",
        "functions",
        "function_call",
    ]
)


def check_request(body: dict[str, Any]) -> str:
    """The validation every chat request gets, passthrough included. Returns the model name."""
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise BadRequest("'model' is required and must be a string.", param="model", code="missing_model")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise BadRequest("'messages' must be a non-empty array.", param="messages", code="invalid_value")
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise BadRequest(f"messages[{i}] must be an object with a 'role'.", param=f"messages[{i}]")
    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise BadRequest("'stream' must be a boolean.", param="stream", code="invalid_type")
    return model


# --- decode -------------------------------------------------------------------------------------


def _image(part: dict[str, Any]) -> ImagePart:
    spec = part.get("image_url")
    url = spec.get("url") if isinstance(spec, dict) else spec
    if not isinstance(url, str):
        raise BadRequest("image_url.url must be a string.", param="messages")
    detail = spec.get("detail") if isinstance(spec, dict) else None
    m = _DATA_URL.match(url)
    if m:
        return ImagePart(data=m.group("data"), media_type=m.group("mt"), detail=detail)
    return ImagePart(url=url, detail=detail)


def _parts(content: Any, where: str) -> list[Part]:
    if content is None:
        return []
    if isinstance(content, str):
        return [TextPart(content)]
    if not isinstance(content, list):
        raise BadRequest(f"{where}.content must be a string or an array of parts.", param=where)
    parts: list[Part] = []
    for item in content:
        kind = item.get("type") if isinstance(item, dict) else None
        if kind == "text":
            parts.append(TextPart(str(item.get("text", ""))))
        elif kind == "image_url":
            parts.append(_image(item))
        elif kind == "input_audio":
            audio = item.get("input_audio") or {}
            parts.append(AudioPart(data=audio.get("data", ""), format=audio.get("format", "wav")))
        elif kind == "file":
            spec = item.get("file") or {}
            data, media_type = spec.get("file_data"), None
            if isinstance(data, str) and (m := _DATA_URL.match(data)):
                data, media_type = m.group("data"), m.group("mt")
            parts.append(
                FilePart(
                    data=data,
                    media_type=media_type,
                    file_id=spec.get("file_id"),
                    filename=spec.get("filename"),
                )
            )
        elif kind == "refusal":
            parts.append(RefusalPart(str(item.get("refusal", ""))))
        else:
            raise BadRequest(f"{where}: unsupported content part type {kind!r}.", param=where)
    return parts


def _message(raw: dict[str, Any], i: int) -> Message:
    role = raw["role"]
    where = f"messages[{i}]"
    if role in ("system", "developer"):
        return Message("system", _parts(raw.get("content"), where), raw.get("name"))
    if role == "user":
        return Message("user", _parts(raw.get("content"), where), raw.get("name"))
    if role == "assistant":
        parts: list[Part] = []
        if isinstance(raw.get("reasoning_content"), str):
            parts.append(ThinkingPart(raw["reasoning_content"]))
        parts.extend(_parts(raw.get("content"), where))
        if isinstance(raw.get("refusal"), str):
            parts.append(RefusalPart(raw["refusal"]))
        for call in raw.get("tool_calls") or []:
            fn = call.get("function") or {}
            call_id, details = uncarry(str(call.get("id", "")))
            parts.append(
                ToolCallPart(
                    id=call_id,
                    name=fn.get("name", ""),
                    arguments=fn.get("arguments") or "",
                    provider_details=details,
                )
            )
        if isinstance(raw.get("function_call"), dict):
            fn = raw["function_call"]
            parts.append(
                ToolCallPart(
                    id=fn.get("name", ""), name=fn.get("name", ""), arguments=fn.get("arguments") or ""
                )
            )
        return Message("assistant", parts, raw.get("name"))
    if role == "tool":
        result_id = raw.get("tool_call_id")
        if not isinstance(result_id, str):
            raise BadRequest(f"{where}: a tool message needs 'tool_call_id'.", param=where)
        return Message("tool", [ToolResultPart(uncarry(result_id)[0], _parts(raw.get("content"), where))])
    if role == "function":
        name = raw.get("name") or ""
        return Message("tool", [ToolResultPart(name, _parts(raw.get("content"), where))])
    raise BadRequest(f"{where}: unknown role {role!r}.", param=where)


def _tool_choice(raw: Any) -> ToolChoice | None:
    if raw is None:
        return None
    if raw in ("auto", "none", "required"):
        return ToolChoice(mode=raw)
    if isinstance(raw, dict):
        fn = raw.get("function") or raw.get("custom") or {}
        if isinstance(fn, dict) and fn.get("name"):
            return ToolChoice(mode="tool", name=fn["name"])
        if raw.get("type") == "allowed_tools":
            mode = (raw.get("allowed_tools") or {}).get("mode", "auto")
            return ToolChoice(mode="required" if mode == "required" else "auto")
    raise BadRequest("Invalid 'tool_choice'.", param="tool_choice")


def decode_request(body: dict[str, Any]) -> ChatRequest:
    model = check_request(body)
    messages = [_message(m, i) for i, m in enumerate(body["messages"])]
    tools: list[Tool] = []
    for spec in body.get("tools") or []:
        fn = spec.get("function") if isinstance(spec, dict) else None
        if not isinstance(fn, dict) or not fn.get("name"):
            raise BadRequest("Each tool needs type 'function' and a function.name.", param="tools")
        tools.append(Tool(fn["name"], fn.get("description"), fn.get("parameters"), fn.get("strict")))
    for fn in body.get("functions") or []:
        tools.append(Tool(fn["name"], fn.get("description"), fn.get("parameters")))
    choice = _tool_choice(body.get("tool_choice"))
    if choice is None and isinstance(body.get("function_call"), (str, dict)):
        fc = body["function_call"]
        choice = ToolChoice(mode="tool", name=fc["name"]) if isinstance(fc, dict) else _tool_choice(fc)
    fmt = None
    if isinstance(rf := body.get("response_format"), dict):
        if rf.get("type") == "json_schema":
            js = rf.get("json_schema") or {}
            fmt = ResponseFormat("json_schema", js.get("name"), js.get("schema"), js.get("strict"))
        elif rf.get("type") in ("json_object", "text"):
            fmt = ResponseFormat(rf["type"])
        else:
            raise BadRequest(f"Unsupported response_format type {rf.get('type')!r}.", param="response_format")
    stop = body.get("stop")
    stream_options = body.get("stream_options") or {}
    return ChatRequest(
        model=model,
        messages=messages,
        stream=bool(body.get("stream")),
        include_usage=bool(stream_options.get("include_usage")),
        tools=tools,
        tool_choice=choice,
        parallel_tool_calls=body.get("parallel_tool_calls"),
        response_format=fmt,
        max_tokens=body.get("max_completion_tokens") or body.get("max_tokens"),
        temperature=body.get("temperature"),
        top_p=body.get("top_p"),
        stop=[stop] if isinstance(stop, str) else list(stop or []),
        seed=body.get("seed"),
        n=int(body.get("n") or 1),
        reasoning_effort=body.get("reasoning_effort"),
        logprobs=bool(body.get("logprobs")),
        top_logprobs=body.get("top_logprobs"),
        user=body.get("user"),
        extra={k: v for k, v in body.items() if k not in _KNOWN},
    )


def decode_embeddings(body: dict[str, Any]) -> EmbeddingRequest:
    model = body.get("model")
    if not isinstance(model, str):
        raise BadRequest("'model' is required.", param="model")
    raw = body.get("input")
    inputs: Any
    if isinstance(raw, str) or (isinstance(raw, list) and raw and all(isinstance(x, int) for x in raw)):
        inputs = [raw]
    elif isinstance(raw, list) and raw:
        inputs = raw
    else:
        raise BadRequest("'input' must be a string, an array of strings or token arrays.", param="input")
    return EmbeddingRequest(
        model=model, inputs=inputs, dimensions=body.get("dimensions"), user=body.get("user")
    )


# --- encode -------------------------------------------------------------------------------------


def _finish(reason: str | None) -> str | None:
    """OpenAI has no "error" finish reason; an answer cut short by an upstream error ends as "stop"."""
    return "stop" if reason == "error" else reason


def _message_json(message: Message) -> dict[str, Any]:
    text = "".join(p.text for p in message.parts if isinstance(p, TextPart))
    calls = [p for p in message.parts if isinstance(p, ToolCallPart)]
    thinking = "".join(p.text for p in message.parts if isinstance(p, ThinkingPart))
    refusal = "".join(p.text for p in message.parts if isinstance(p, RefusalPart))
    out: dict[str, Any] = {
        "role": "assistant",
        "content": text if text or not calls else None,
        "refusal": refusal or None,
    }
    if thinking:
        out["reasoning_content"] = thinking
    if calls:
        out["tool_calls"] = [
            {
                "id": carry(c.id, c.provider_details),
                "type": "function",
                "function": {"name": c.name, "arguments": c.arguments},
            }
            for c in calls
        ]
    return out


def encode_response(resp: ChatResponse) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": resp.id,
        "object": "chat.completion",
        "created": resp.created,
        "model": resp.model,
        "choices": [
            {
                "index": c.index,
                "message": _message_json(c.message),
                "finish_reason": _finish(c.finish_reason),
                "logprobs": None,
            }
            for c in resp.choices
        ],
    }
    if resp.usage is not None:
        out["usage"] = usage_json(resp.usage)
    return out


class StreamEncoder:
    """Canonical stream events → `chat.completion.chunk` SSE bytes, OpenAI's framing and ordering."""

    def __init__(self, include_usage: bool) -> None:
        self.include_usage = include_usage
        self._head: dict[str, Any] = {"id": "", "object": "chat.completion.chunk", "created": 0, "model": ""}
        self._tool_index: dict[tuple[int, int], int] = {}
        self._tools_per_choice: dict[int, int] = {}
        self._kinds: dict[tuple[int, int], str] = {}
        self._started: set[int] = set()
        self._usage: Usage | None = None

    def _chunk(self, choice: int, delta: dict[str, Any], finish: str | None = None) -> bytes:
        if choice not in self._started:
            self._started.add(choice)
            delta = {"role": "assistant", **delta}
        body = dict(self._head)
        body["choices"] = [{"index": choice, "delta": delta, "finish_reason": finish, "logprobs": None}]
        if self.include_usage:
            body["usage"] = None
        return sse.encode(json.dumps(body))

    def encode(self, event: StreamEvent) -> bytes:
        if isinstance(event, BlockDelta):
            kind = self._kinds.get((event.choice, event.index), "text")
            if kind == "text":
                return self._chunk(event.choice, {"content": event.text}) if event.text else b""
            if kind == "thinking":
                return self._chunk(event.choice, {"reasoning_content": event.text}) if event.text else b""
            index = self._tool_index[(event.choice, event.index)]
            return self._chunk(
                event.choice, {"tool_calls": [{"index": index, "function": {"arguments": event.text}}]}
            )
        if isinstance(event, BlockStart):
            self._kinds[(event.choice, event.index)] = event.kind
            if event.kind == "tool_call":
                index = self._tools_per_choice.get(event.choice, 0)
                self._tools_per_choice[event.choice] = index + 1
                self._tool_index[(event.choice, event.index)] = index
                call = {
                    "index": index,
                    "id": carry(event.tool_call_id or "", event.provider_details),
                    "type": "function",
                    "function": {"name": event.tool_name, "arguments": ""},
                }
                return self._chunk(event.choice, {"tool_calls": [call]})
            if event.choice not in self._started:
                return self._chunk(event.choice, {"content": ""} if event.kind == "text" else {})
            return b""
        if isinstance(event, Finish):
            return self._chunk(event.choice, {}, _finish(event.reason))
        if isinstance(event, UsageEvent):
            self._usage = event.usage
            return b""
        if isinstance(event, StreamStart):
            self._head.update(id=event.id, model=event.model, created=event.created)
            return b""
        if isinstance(event, StreamError):
            return sse.encode(json.dumps(error_body(event.error)))
        return b""

    def error(self, err: GatewayError) -> bytes:
        return sse.encode(json.dumps(error_body(err)))

    def close(self) -> bytes:
        tail = b""
        if self.include_usage and self._usage is not None:
            body = dict(self._head)
            body["choices"] = []
            body["usage"] = usage_json(self._usage)
            tail = sse.encode(json.dumps(body))
        return tail + b"data: [DONE]\n\n"


def encode_embeddings(resp: EmbeddingResponse, encoding_format: str | None) -> dict[str, Any]:
    data = []
    for i, vector in enumerate(resp.vectors):
        value: Any = vector
        if encoding_format == "base64":
            value = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
        data.append({"object": "embedding", "index": i, "embedding": value})
    return {
        "object": "list",
        "data": data,
        "model": resp.model,
        "usage": {"prompt_tokens": resp.usage.input_tokens, "total_tokens": resp.usage.input_tokens},
    }


def error_body(err: GatewayError) -> dict[str, Any]:
    return {"error": {"message": err.message, "type": err.type, "param": err.param, "code": err.code}}


class OpenAIChatIngress:
    dialect = "openai"

    def decode(self, body: dict[str, Any]) -> ChatRequest:
        return decode_request(body)

    def encode_response(self, resp: ChatResponse, req: ChatRequest) -> bytes:
        return json.dumps(encode_response(resp))

    def stream_encoder(self, req: ChatRequest) -> StreamEncoder:
        return StreamEncoder(include_usage=req.include_usage)

    def error_body(self, err: GatewayError) -> bytes:
        return json.dumps(error_body(err))
