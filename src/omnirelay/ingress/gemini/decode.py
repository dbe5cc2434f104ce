"""Gemini request bodies → the canonical model.

Wire JSON is camelCase, but the google-genai SDK dumps nested pydantic objects with snake_case keys
(`inlineData: {mime_type}`, `thinkingConfig: {thinking_budget}`, `parameters_json_schema` in function
declarations), so every protocol key is looked up in both spellings. User data (`args`, `response`,
JSON schemas) is never rewritten, except that Gemini's OpenAPI-subset `Schema` (`parameters`,
`responseSchema`) is turned into JSON Schema, which the canonical model and other vendors expect.
"""

from __future__ import annotations

import re
import secrets
from typing import Any

from omnirelay.canonical.messages import (
    AudioPart,
    FilePart,
    ImagePart,
    Message,
    Part,
    TextPart,
    ThinkingPart,
    ToolCallPart,
    ToolResultPart,
)
from omnirelay.canonical.request import ChatRequest, EmbeddingRequest, ResponseFormat, Tool, ToolChoice
from omnirelay.errors import BadRequest
from omnirelay.transport import json

_SNAKE = re.compile(r"(?<!^)(?=[A-Z])")
_snake_cache: dict[str, str] = {}


def snake(name: str) -> str:
    out = _snake_cache.get(name)
    if out is None:
        out = _snake_cache[name] = _SNAKE.sub("_", name).lower()
    return out


def get(obj: Any, name: str) -> Any:
    """`obj[name]` in camelCase or snake_case spelling; None when absent or when obj is no object."""
    if not isinstance(obj, dict):
        return None
    if name in obj:
        return obj[name]
    return obj.get(snake(name))


def _has(obj: dict[str, Any], name: str) -> bool:
    return name in obj or snake(name) in obj


def strip_model(model: str) -> str:
    return model.removeprefix("models/")


def new_call_id() -> str:
    return "call_" + secrets.token_hex(12)


def gemini_details(signature: Any) -> dict[str, Any] | None:
    return {"gemini": {"thoughtSignature": signature}} if isinstance(signature, str) and signature else None


def _int(value: Any, where: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value:
        raise BadRequest(f"{where}: must be an integer.", param=where)
    return int(value)


def _float(value: Any, where: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise BadRequest(f"{where}: must be a number.", param=where)
    return float(value)


# --- Gemini Schema → JSON Schema ----------------------------------------------------------------

_SCHEMA_KEYS = {
    "any_of": "anyOf",
    "max_items": "maxItems",
    "min_items": "minItems",
    "max_length": "maxLength",
    "min_length": "minLength",
    "max_properties": "maxProperties",
    "min_properties": "minProperties",
    "additional_properties": "additionalProperties",
    "defs": "$defs",
    "ref": "$ref",
}
_DROP_SCHEMA_KEYS = frozenset(["propertyOrdering", "property_ordering"])


def json_schema(schema: Any) -> Any:
    """Gemini's OpenAPI-subset `Schema` (upper-case types, `nullable`, either key spelling) → JSON Schema."""
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for raw_key, value in schema.items():
        if raw_key in _DROP_SCHEMA_KEYS:
            continue
        key = _SCHEMA_KEYS.get(raw_key) or str(raw_key)
        if key in ("properties", "$defs") and isinstance(value, dict):
            out[key] = {name: json_schema(sub) for name, sub in value.items()}
        elif key in ("items", "additionalProperties"):
            out[key] = json_schema(value)
        elif key == "anyOf" and isinstance(value, list):
            out[key] = [json_schema(sub) for sub in value]
        elif key == "type" and isinstance(value, str):
            if value.upper() != "TYPE_UNSPECIFIED":
                out[key] = value.lower()
        elif key == "example":
            out["examples"] = [value]
        elif key != "nullable":
            out[key] = value
    if get(schema, "nullable") is True:
        kind = out.get("type")
        if isinstance(kind, str) and kind != "null":
            out["type"] = [kind, "null"]
        elif "anyOf" in out:
            out["anyOf"] = [*out["anyOf"], {"type": "null"}]
    return out


# --- contents -----------------------------------------------------------------------------------


def _audio_format(mime: str) -> str:
    sub = mime.partition("/")[2].lower()
    if sub in ("mpeg", "mp3", "mpeg3", "x-mpeg-3"):
        return "mp3"
    return {"x-wav": "wav", "wave": "wav", "vnd.wave": "wav", "x-flac": "flac"}.get(sub, sub or "wav")


def _media(part: dict[str, Any], where: str) -> Part | None:
    inline = get(part, "inlineData")
    if isinstance(inline, dict):
        mime = str(get(inline, "mimeType") or "application/octet-stream")
        data = get(inline, "data")
        if not isinstance(data, str):
            raise BadRequest(f"{where}.inlineData.data: base64 data is required.", param=where)
        if mime.startswith("image/"):
            return ImagePart(data=data, media_type=mime)
        if mime.startswith("audio/"):
            return AudioPart(data=data, format=_audio_format(mime))
        return FilePart(data=data, media_type=mime, filename=get(inline, "displayName"))
    ref = get(part, "fileData")
    if isinstance(ref, dict):
        uri = get(ref, "fileUri")
        if not isinstance(uri, str) or not uri:
            raise BadRequest(f"{where}.fileData.fileUri is required.", param=where)
        mime = get(ref, "mimeType")
        if isinstance(mime, str) and mime.startswith("image/"):
            return ImagePart(url=uri, media_type=mime)
        # The canonical FilePart has no URL field: the URI travels as the file id.
        return FilePart(media_type=mime, file_id=uri, filename=get(ref, "displayName"))
    return None


class _CallIds:
    """Tool-call ids that stay consistent from a `functionCall` to the `functionResponse` answering it.

    A call keeps its `id` or gets a synthesized `call_<hex>`; a response takes the id of the call it
    answers among the calls of the latest model turn (consecutive model contents are one turn, as a
    streamed answer replayed chunk by chunk is): by id when the client sent one, else by name in call
    order (each call answered once).
    """

    def __init__(self) -> None:
        self._pending: list[tuple[str, str, bool]] = []  # (id, name, id was synthesized)
        self._in_model_turn = False

    def turn(self, model: bool) -> None:
        if model and not self._in_model_turn:
            self._pending = []
        self._in_model_turn = model

    def call(self, raw_id: Any, name: str) -> str:
        synthesized = not (isinstance(raw_id, str) and raw_id)
        call_id = new_call_id() if synthesized else str(raw_id)
        self._pending.append((call_id, name, synthesized))
        return call_id

    def response(self, raw_id: Any, name: str) -> str:
        given = raw_id if isinstance(raw_id, str) and raw_id else None
        for i, (call_id, _name, _synthesized) in enumerate(self._pending):
            if given is not None and call_id == given:
                del self._pending[i]
                return call_id
        for i, (call_id, call_name, synthesized) in enumerate(self._pending):
            # A client cannot know an id it was never shown: match by name then, whatever it sent.
            if call_name == name and (given is None or synthesized):
                del self._pending[i]
                return call_id
        return given or new_call_id()


def _function_call(part: dict[str, Any], ids: _CallIds, where: str) -> ToolCallPart:
    call = get(part, "functionCall")
    name = get(call, "name")
    if not isinstance(name, str) or not name:
        raise BadRequest(f"{where}.functionCall.name is required.", param=where)
    args = get(call, "args")
    if args is not None and not isinstance(args, dict):
        raise BadRequest(f"{where}.functionCall.args must be an object.", param=where)
    return ToolCallPart(
        id=ids.call(get(call, "id"), name),
        name=name,
        arguments=json.dumps(args or {}).decode(),
        provider_details=gemini_details(get(part, "thoughtSignature")),
    )


def _function_response(part: dict[str, Any], ids: _CallIds, where: str) -> ToolResultPart:
    result = get(part, "functionResponse")
    name = get(result, "name")
    if not isinstance(name, str) or not name:
        raise BadRequest(f"{where}.functionResponse.name is required.", param=where)
    response = get(result, "response")
    if response is None:
        response = {}
    content: list[Part] = [TextPart(json.dumps(response).decode())]
    for j, extra in enumerate(get(result, "parts") or []):
        media = _media(extra, f"{where}.functionResponse.parts[{j}]")
        if media is not None:
            content.append(media)
    is_error = isinstance(response, dict) and "error" in response and "output" not in response
    return ToolResultPart(ids.response(get(result, "id"), name), content, is_error)


_GEMINI_ONLY_PARTS = ("executableCode", "codeExecutionResult", "toolCall", "toolResponse")


def _content(raw: Any, i: int, ids: _CallIds) -> list[Message]:
    where = f"contents[{i}]"
    if not isinstance(raw, dict):
        raise BadRequest(f"{where} must be an object with 'parts'.", param=where)
    role = get(raw, "role") or "user"
    if role not in ("user", "model", "function"):
        raise BadRequest(f"{where}.role: must be 'user' or 'model', got {role!r}.", param=where)
    model = role == "model"
    raw_parts = get(raw, "parts")
    if not isinstance(raw_parts, list) or not raw_parts:
        raise BadRequest(f"{where}.parts must be a non-empty array.", param=where)
    ids.turn(model)
    parts: list[Part] = []
    results: list[Part] = []
    for j, part in enumerate(raw_parts):
        at = f"{where}.parts[{j}]"
        if not isinstance(part, dict):
            raise BadRequest(f"{at} must be an object.", param=at)
        signature = get(part, "thoughtSignature")
        text = get(part, "text")
        if isinstance(text, str) or (not part.keys() - {"thoughtSignature", "thought_signature", "thought"}):
            text = text if isinstance(text, str) else ""
            if model and get(part, "thought") is True:
                if text or signature:
                    parts.append(ThinkingPart(text, provider_details=gemini_details(signature)))
                continue
            if model and (details := gemini_details(signature)):
                # TextPart cannot carry provider_details: the signature rides on a redacted thinking
                # part right before the text (other vendors drop redacted thinking they cannot read).
                parts.append(ThinkingPart("", redacted=True, provider_details=details))
            if text:
                parts.append(TextPart(text))
        elif _has(part, "functionCall"):
            if not model:
                raise BadRequest(f"{at}: functionCall parts belong to 'model' turns.", param=at)
            parts.append(_function_call(part, ids, at))
        elif _has(part, "functionResponse"):
            if model:
                raise BadRequest(f"{at}: functionResponse parts belong to 'user' turns.", param=at)
            results.append(_function_response(part, ids, at))
        elif (media := _media(part, at)) is not None:
            parts.append(media)
        else:
            kind = next((k for k in _GEMINI_ONLY_PARTS if _has(part, k)), None)
            if kind:
                raise BadRequest(f"{at}: {kind} parts can only be used with a Gemini model.", param=at)
            raise BadRequest(f"{at}: unsupported part with fields {sorted(part)}.", param=at)
    out = [Message("tool", [r]) for r in results]
    if parts:  # a content of empty text parts only (a replayed stream's last chunk) adds nothing
        out.append(Message("assistant" if model else "user", parts))
    return out


def _system(raw: Any) -> Message | None:
    if raw is None:
        return None
    if isinstance(raw, str):
        return Message("system", [TextPart(raw)]) if raw else None
    parts = get(raw, "parts") if isinstance(raw, dict) else raw
    if not isinstance(parts, list):
        raise BadRequest("systemInstruction must be a Content with text parts.", param="systemInstruction")
    texts: list[Part] = []
    for part in parts:
        text = part if isinstance(part, str) else get(part, "text")
        if isinstance(text, str) and text:
            texts.append(TextPart(text))
    return Message("system", texts) if texts else None


# --- tools, config ------------------------------------------------------------------------------


def _tools(raw: Any) -> list[Tool]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise BadRequest("tools must be an array.", param="tools")
    tools: list[Tool] = []
    for i, spec in enumerate(raw):
        if not isinstance(spec, dict):
            raise BadRequest(f"tools[{i}] must be an object.", param="tools")
        for key in spec:
            if key not in ("functionDeclarations", "function_declarations"):
                raise BadRequest(
                    f"tools[{i}].{key}: the {key} tool can only be used with a Gemini model.", param="tools"
                )
        for j, fn in enumerate(get(spec, "functionDeclarations") or []):
            name = get(fn, "name")
            if not isinstance(name, str) or not name:
                raise BadRequest(f"tools[{i}].functionDeclarations[{j}].name is required.", param="tools")
            params = get(fn, "parametersJsonSchema")
            if params is None and get(fn, "parameters") is not None:
                params = json_schema(get(fn, "parameters"))
            tools.append(Tool(name, get(fn, "description"), params))
    return tools


def _tool_config(raw: Any, tools: list[Tool]) -> tuple[ToolChoice | None, list[Tool]]:
    config = get(raw, "functionCallingConfig")
    if not isinstance(config, dict):
        return None, tools
    mode = str(get(config, "mode") or "MODE_UNSPECIFIED").upper()
    names = get(config, "allowedFunctionNames")
    allowed = [n for n in names if isinstance(n, str)] if isinstance(names, list) else []
    if mode in ("AUTO", "MODE_UNSPECIFIED"):
        return (ToolChoice("auto") if mode == "AUTO" else None), tools
    if mode == "NONE":
        return ToolChoice("none"), tools
    if mode not in ("ANY", "VALIDATED"):
        raise BadRequest(f"toolConfig.functionCallingConfig.mode: unknown mode {mode!r}.", param="toolConfig")
    if allowed:
        # No canonical "one of these tools": offer only the allowed ones.
        tools = [t for t in tools if t.name in allowed]
    if mode == "ANY" and len(allowed) == 1:
        return ToolChoice("tool", allowed[0]), tools
    return ToolChoice("required" if mode == "ANY" else "auto"), tools


_LEVELS = frozenset(["minimal", "low", "medium", "high", "xhigh"])


def _thinking(raw: Any) -> tuple[str | None, int | None, bool]:
    """thinkingConfig → (reasoning_effort, reasoning_budget, include_reasoning)."""
    if not isinstance(raw, dict):
        return None, None, False
    effort: str | None = None
    budget = _int(get(raw, "thinkingBudget"), "generationConfig.thinkingConfig.thinkingBudget")
    level = get(raw, "thinkingLevel")
    if isinstance(level, str) and level.lower() in _LEVELS:
        effort = level.lower()
    elif level is not None and str(level).upper() != "THINKING_LEVEL_UNSPECIFIED":
        raise BadRequest(f"thinkingConfig.thinkingLevel: unknown level {level!r}.", param="thinkingConfig")
    if budget == 0:
        effort, budget = "none", None
    elif budget is not None and budget < 0:
        budget = None  # -1 is "dynamic": the model's own default
    return effort, budget, get(raw, "includeThoughts") is True


_CONFIG_KNOWN = frozenset(
    [
        "maxOutputTokens",
        "temperature",
        "topP",
        "topK",
        "stopSequences",
        "candidateCount",
        "seed",
        "presencePenalty",
        "frequencyPenalty",
        "responseLogprobs",
        "logprobs",
        "thinkingConfig",
    ]
)
_CONFIG_KNOWN_ALL = _CONFIG_KNOWN | {snake(k) for k in _CONFIG_KNOWN}


def _response_format(config: dict[str, Any]) -> tuple[ResponseFormat | None, set[str]]:
    """The response format and the config keys it consumed."""
    mime = get(config, "responseMimeType")
    if not (isinstance(mime, str) and mime.lower() == "application/json"):
        return None, {"responseMimeType", "response_mime_type"} if mime in (None, "text/plain") else set()
    used = {"responseMimeType", "response_mime_type", "responseSchema", "response_schema"}
    used |= {"responseJsonSchema", "response_json_schema"}
    schema = get(config, "responseJsonSchema")
    if schema is None and get(config, "responseSchema") is not None:
        schema = json_schema(get(config, "responseSchema"))
    if isinstance(schema, dict):
        return ResponseFormat("json_schema", "response", schema), used
    return ResponseFormat("json_object"), used


def _stop(raw: Any) -> list[str]:
    if raw is None:
        return []
    if isinstance(raw, str):
        return [raw]
    if not isinstance(raw, list) or not all(isinstance(s, str) for s in raw):
        raise BadRequest("generationConfig.stopSequences must be an array of strings.", param="stopSequences")
    return list(raw)


# Top-level fields read here; `model` and `stream` are put there by the gateway (they come from the URL).
_KNOWN = frozenset(
    ["contents", "systemInstruction", "tools", "toolConfig", "generationConfig", "model", "stream"]
)
# Accepted and deliberately not translated (see the package docstring).
_IGNORED = frozenset(["safetySettings", "cachedContent"])
_TOP_KNOWN_ALL = {k for n in _KNOWN | _IGNORED for k in (n, snake(n))}


def decode_for(model: str, body: dict[str, Any], *, stream: bool = False) -> ChatRequest:
    """A GenerateContentRequest body for `model` (from the URL, `models/` prefix optional)."""
    if not isinstance(model, str) or not strip_model(model):
        raise BadRequest("The model name is required in the URL.", param="model")
    contents = get(body, "contents")
    if not isinstance(contents, list) or not contents:
        raise BadRequest("contents: at least one Content is required.", param="contents")
    ids = _CallIds()
    messages: list[Message] = []
    if (system := _system(get(body, "systemInstruction"))) is not None:
        messages.append(system)
    for i, content in enumerate(contents):
        for message in _content(content, i, ids):
            last = messages[-1] if messages else None
            if last is not None and last.role == message.role and message.role in ("user", "assistant"):
                # One turn split over several contents (a replayed stream): one message, so that
                # parallel calls stay together and roles alternate for strict upstreams.
                last.parts.extend(message.parts)
            else:
                messages.append(message)
    choice, tools = _tool_config(get(body, "toolConfig"), _tools(get(body, "tools")))
    raw_config = get(body, "generationConfig")
    if raw_config is not None and not isinstance(raw_config, dict):
        raise BadRequest("generationConfig must be an object.", param="generationConfig")
    config: dict[str, Any] = raw_config or {}
    fmt, used = _response_format(config)
    effort, budget, include = _thinking(get(config, "thinkingConfig"))
    at = "generationConfig."
    top_logprobs = _int(get(config, "logprobs"), at + "logprobs")
    extra = {k: v for k, v in body.items() if k not in _TOP_KNOWN_ALL}
    leftover = {k: v for k, v in config.items() if k not in _CONFIG_KNOWN_ALL and k not in used}
    if leftover:
        extra["generationConfig"] = leftover
    return ChatRequest(
        model=strip_model(model),
        messages=messages,
        stream=stream,
        include_usage=True,
        tools=tools,
        tool_choice=choice,
        response_format=fmt,
        max_tokens=_int(get(config, "maxOutputTokens"), at + "maxOutputTokens"),
        temperature=_float(get(config, "temperature"), at + "temperature"),
        top_p=_float(get(config, "topP"), at + "topP"),
        top_k=_int(get(config, "topK"), at + "topK"),
        stop=_stop(get(config, "stopSequences")),
        seed=_int(get(config, "seed"), at + "seed"),
        n=_int(get(config, "candidateCount"), at + "candidateCount") or 1,
        reasoning_effort=effort,
        reasoning_budget=budget,
        include_reasoning=include,
        frequency_penalty=_float(get(config, "frequencyPenalty"), at + "frequencyPenalty"),
        presence_penalty=_float(get(config, "presencePenalty"), at + "presencePenalty"),
        logprobs=get(config, "responseLogprobs") is True,
        top_logprobs=top_logprobs,
        extra=extra,
    )


def decode(body: dict[str, Any]) -> ChatRequest:
    """The `Ingress.decode` form: the gateway puts the URL's model into `body["model"]` and, for
    `:streamGenerateContent`, `body["stream"] = True` (neither is a Gemini body field)."""
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise BadRequest("The model name is required in the URL.", param="model")
    return decode_for(model, body, stream=body.get("stream") is True)


def decode_count_tokens(model: str, body: dict[str, Any]) -> ChatRequest:
    """`:countTokens` takes `{contents}` or `{generateContentRequest: {model, contents, ...}}`."""
    inner = get(body, "generateContentRequest")
    if isinstance(inner, dict):
        return decode_for(model, {k: v for k, v in inner.items() if k != "model"})
    return decode_for(model, body)


# --- embeddings ---------------------------------------------------------------------------------


def _embed_text(content: Any, where: str) -> str:
    parts = get(content, "parts")
    if not isinstance(parts, list) or not parts:
        raise BadRequest(f"{where}.parts must be a non-empty array of text parts.", param=where)
    texts: list[str] = []
    for part in parts:
        text = get(part, "text")
        if not isinstance(text, str):
            raise BadRequest(f"{where}: only text parts can be embedded here.", param=where)
        texts.append(text)
    return "\n".join(texts)


def decode_embed(model: str, body: dict[str, Any]) -> EmbeddingRequest:
    """`:embedContent`. `taskType` and `title` have no canonical field and are ignored."""
    return EmbeddingRequest(
        model=strip_model(model),
        inputs=[_embed_text(get(body, "content"), "content")],
        dimensions=_int(get(body, "outputDimensionality"), "outputDimensionality"),
    )


def decode_batch_embed(model: str, body: dict[str, Any]) -> EmbeddingRequest:
    """`:batchEmbedContents`: every `requests[].model` must name the model of the URL."""
    requests = get(body, "requests")
    if not isinstance(requests, list) or not requests:
        raise BadRequest("requests: at least one request is required.", param="requests")
    name = strip_model(model)
    inputs: list[str] = []
    dimensions: set[int] = set()
    for i, item in enumerate(requests):
        where = f"requests[{i}]"
        own = get(item, "model")
        if own is not None and (not isinstance(own, str) or strip_model(own) != name):
            raise BadRequest(
                f"{where}.model: {own!r} does not match the model in the URL (models/{name}).", param=where
            )
        inputs.append(_embed_text(get(item, "content"), f"{where}.content"))
        dims = _int(get(item, "outputDimensionality"), f"{where}.outputDimensionality")
        if dims is not None:
            dimensions.add(dims)
    if len(dimensions) > 1:
        raise BadRequest("requests: every request must ask for the same outputDimensionality.")
    return EmbeddingRequest(model=name, inputs=inputs, dimensions=next(iter(dimensions), None))
