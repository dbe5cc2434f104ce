"""The OpenAI Chat Completions dialect reached from the canonical model: how an Anthropic or Gemini client
reaches an OpenAI-compatible upstream (OpenAI, DeepSeek, Groq, vLLM...). Sending and error mapping are
shared with the same-protocol relay (`upstream.openai`). Policy decisions, in one place:

- Output limit: `max_completion_tokens` goes to api.openai.com / Azure OpenAI (which accept it for every
  model and deprecate `max_tokens`) and to OpenAI reasoning models by name (`o1`, `o3`, `o4`, `gpt-5`
  prefixes, which reject `max_tokens`); every other OpenAI-compatible vendor gets `max_tokens`, the one
  field they all accept. A vendor-prefixed name (`openai/o3`) means a router, which takes `max_tokens`.
- `ChatRequest.extra` is never forwarded. Those are fields of the *ingress* protocol, and OpenAI-Chat
  clients in front of OpenAI-dialect upstreams go through the passthrough, so here they would be
  Anthropic or Gemini fields the upstream rejects. `top_k` and `metadata` are dropped for the same
  reason (not Chat Completions fields; strict vendors answer 400).
- Reasoning: `reasoning_effort` is sent as given; with only a budget, <=1024 tokens is `low`, <=8192
  `medium`, more `high`; a budget <= 0 (off, or Gemini's "dynamic") sends nothing. Reasoning text comes
  back from `reasoning_content` (DeepSeek, vLLM, new-api) or `reasoning` (OpenRouter, newer vLLM) as
  thinking, dropped when the client did not ask for it (`include_reasoning`). Thinking is replayed as
  `reasoning_content` on assistant messages that carry tool calls, where thinking OpenAI-dialect
  upstreams (DeepSeek, Kimi, GLM) require it; redacted thinking has no text and is not sent.
- Unsupported content (a refusal while streaming, tool-result images) is kept, not dropped: refusal
  deltas stream as text, tool-result media moves into a user message after the tool messages.
"""

from __future__ import annotations

import base64
import secrets
import struct
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

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
from omnirelay.canonical.request import ChatRequest, EmbeddingRequest, Tool
from omnirelay.canonical.response import ChatResponse, Choice, EmbeddingResponse, FinishReason
from omnirelay.canonical.stream import (
    BlockDelta,
    BlockKind,
    BlockStart,
    BlockStop,
    Finish,
    StreamEvent,
    StreamStart,
    UsageEvent,
)
from omnirelay.canonical.usage import Usage
from omnirelay.errors import UpstreamError
from omnirelay.transport import json, sse
from omnirelay.transport.http import TransportError, UpstreamResponse
from omnirelay.upstream import openai
from omnirelay.upstream.base import Target
from omnirelay.wire.openai import parse_usage

Events = list[StreamEvent]
_COMPLETION_TOKENS_MODELS = ("o1", "o3", "o4", "gpt-5")
_COMPLETION_TOKENS_HOSTS = ("api.openai.com", ".openai.azure.com")
_FINISH: dict[str, FinishReason] = {"stop": "stop", "length": "length", "tool_calls": "tool_calls"}
_FINISH.update({"function_call": "tool_calls", "content_filter": "content_filter"})
_FINISH["insufficient_system_resource"] = "error"  # DeepSeek cut the answer short
_IMAGE_MAGIC = {
    "iVBORw0KGgo": "image/png",
    "/9j/": "image/jpeg",
    "R0lGOD": "image/gif",
    "UklGR": "image/webp",
}


class OpenAIChatAdapter:
    def __init__(self, target: Target) -> None:
        self.target = target

    async def complete(self, req: ChatRequest, key: str | None) -> ChatResponse:
        resp = await self._post("/chat/completions", build_body(req, self.target, stream=False), key)
        return parse_response(await self._read_json(resp), req, self.target)

    async def stream(self, req: ChatRequest, key: str | None) -> AsyncIterator[StreamEvent]:
        resp = await self._post("/chat/completions", build_body(req, self.target, stream=True), key)
        try:
            if "event-stream" not in resp.headers.get("content-type", "text/event-stream"):
                # A vendor that ignored `stream: true` and answered with one JSON body.
                for event in response_events(parse_response(await self._read_json(resp), req, self.target)):
                    yield event
                return
            reader = _StreamReader(self.target, req)
            splitter = sse.EventSplitter()
            try:
                async for chunk in resp.iter_bytes():
                    for raw in splitter.feed(chunk):
                        for event in reader.feed(raw):
                            yield event
                    if reader.done:
                        break
                if not reader.done:
                    for event in reader.feed(splitter.rest()):  # a last event without its blank line
                        yield event
            except TransportError as exc:
                for event in reader.usage_event():
                    yield event
                raise openai.transport_error(self.target, exc) from None
            events, failure = reader.end()
            for event in events:
                yield event
            if failure is not None:
                raise failure
        finally:
            await resp.aclose()

    async def embed(self, req: EmbeddingRequest, key: str | None) -> EmbeddingResponse:
        body: dict[str, Any] = {"model": req.model, "input": req.inputs, "encoding_format": "float"}
        body.update(_drop_none(dimensions=req.dimensions, user=req.user))
        data = await self._read_json(await self._post("/embeddings", body, key))
        items = [_obj(d) for d in data.get("data") or []]
        vectors: list[list[float]] = []
        for item in sorted(items, key=lambda d: int(d.get("index") or 0)):
            vector = item.get("embedding")
            if isinstance(vector, str):  # base64 little-endian float32, from a vendor that ignored the format
                count = len(raw := base64.b64decode(vector)) // 4
                vector = list(struct.unpack(f"<{count}f", raw[: count * 4]))
            if not isinstance(vector, list):
                raise _malformed(self.target, "an embedding that is not a list of numbers")
            vectors.append([float(v) for v in vector])
        usage = _obj(data.get("usage"))
        tokens = int(usage.get("prompt_tokens") or usage.get("total_tokens") or 0)
        return EmbeddingResponse(str(data.get("model") or req.model), vectors, Usage(input_tokens=tokens))

    async def _post(self, path: str, body: dict[str, Any], key: str | None) -> UpstreamResponse:
        resp = await openai.send(self.target, key, path, json.dumps(body))
        if not 200 <= resp.status < 300:
            try:
                raw = await resp.read()
            except TransportError as exc:
                raise openai.transport_error(self.target, exc) from None
            raise openai.error_from_response(self.target, resp.status, resp.headers, raw)
        return resp

    async def _read_json(self, resp: UpstreamResponse) -> dict[str, Any]:
        try:
            raw = await resp.read()
        except TransportError as exc:
            raise openai.transport_error(self.target, exc) from None
        try:
            data = json.loads(raw)
        except json.JSONDecodeError:
            raise _malformed(self.target) from None
        if not isinstance(data, dict):
            raise _malformed(self.target)
        if "error" in data and "choices" not in data and "data" not in data:
            raise reported_error(self.target, data["error"])
        return data


# --- errors -------------------------------------------------------------------------------------


def _failed(
    target: Target, what: str, code: str = "bad_upstream_response", retry: bool = True
) -> UpstreamError:
    message = f"Provider {target.name!r} {what}."
    return UpstreamError(message, status=502, code=code, provider=target.name, retryable=retry)


def _malformed(target: Target, what: str = "a malformed JSON body") -> UpstreamError:
    return _failed(target, "returned " + what)


def reported_error(target: Target, err: Any) -> UpstreamError:
    """An error object inside a 200 answer or a stream event; a numeric `code` is taken as the status."""
    code = err.get("code") if isinstance(err, dict) else None
    status = code if isinstance(code, int) and 400 <= code < 600 else 502
    return openai.error_from_response(target, status, {}, json.dumps({"error": err}))


# --- request ------------------------------------------------------------------------------------


def max_tokens_field(model: str, base_url: str) -> str:
    host = (urlsplit(base_url).hostname or "").lower()
    if host == _COMPLETION_TOKENS_HOSTS[0] or host.endswith(_COMPLETION_TOKENS_HOSTS[1]):
        return "max_completion_tokens"
    return "max_completion_tokens" if model.lower().startswith(_COMPLETION_TOKENS_MODELS) else "max_tokens"


def reasoning_effort(req: ChatRequest) -> str | None:
    if req.reasoning_effort:
        return req.reasoning_effort
    budget = req.reasoning_budget
    if budget is None or budget <= 0:
        return None
    return "low" if budget <= 1024 else "medium" if budget <= 8192 else "high"


def build_body(req: ChatRequest, target: Target, stream: bool) -> dict[str, Any]:
    body: dict[str, Any] = {"model": req.model, "messages": encode_messages(req.messages)}
    if stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    if req.tools:
        body["tools"] = [_tool_json(t) for t in req.tools]
        # Both are rejected by OpenAI when no tools are sent.
        if req.tool_choice is not None:
            tc = req.tool_choice
            body["tool_choice"] = (
                {"type": "function", "function": {"name": tc.name}} if tc.mode == "tool" else tc.mode
            )
        if req.parallel_tool_calls is not None:
            body["parallel_tool_calls"] = req.parallel_tool_calls
    fmt = req.response_format
    if fmt is not None and fmt.type == "json_object":
        body["response_format"] = {"type": "json_object"}
    elif fmt is not None and fmt.type == "json_schema":
        spec = _drop_none(name=fmt.name or "response", schema=fmt.schema, strict=fmt.strict)
        body["response_format"] = {"type": "json_schema", "json_schema": spec}
    if req.max_tokens is not None:
        body[max_tokens_field(req.model, target.base_url)] = req.max_tokens
    if req.stop:
        body["stop"] = list(req.stop)
    if req.n != 1:
        body["n"] = req.n
    if req.logprobs:
        body["logprobs"] = True
        if req.top_logprobs is not None:
            body["top_logprobs"] = req.top_logprobs
    body.update(_drop_none(temperature=req.temperature, top_p=req.top_p, seed=req.seed, user=req.user))
    body.update(_drop_none(frequency_penalty=req.frequency_penalty, presence_penalty=req.presence_penalty))
    body.update(_drop_none(reasoning_effort=reasoning_effort(req)))
    return body


def _tool_json(tool: Tool) -> dict[str, Any]:
    parameters = tool.parameters or {"type": "object", "properties": {}}
    fn = _drop_none(name=tool.name, description=tool.description, parameters=parameters, strict=tool.strict)
    return {"type": "function", "function": fn}


def _obj(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _drop_none(**fields: Any) -> dict[str, Any]:
    return {k: v for k, v in fields.items() if v is not None}


def _data_url(data: str, media_type: str | None, default: str) -> str:
    if not media_type:
        media_type = next((mt for magic, mt in _IMAGE_MAGIC.items() if data.startswith(magic)), default)
    return f"data:{media_type};base64,{data}"


def _content_part(part: Part) -> dict[str, Any] | None:
    if isinstance(part, TextPart):
        return {"type": "text", "text": part.text}
    if isinstance(part, ImagePart):
        url = part.url or _data_url(part.data or "", part.media_type, "image/png")
        return {"type": "image_url", "image_url": _drop_none(url=url, detail=part.detail)}
    if isinstance(part, AudioPart):
        return {"type": "input_audio", "input_audio": {"data": part.data, "format": part.format}}
    if isinstance(part, FilePart):
        if part.data is not None:
            spec = _drop_none(
                file_data=_data_url(part.data, part.media_type, "application/pdf"),
                filename=part.filename or "file",
            )
        else:
            spec = _drop_none(file_id=part.file_id, filename=part.filename)
        return {"type": "file", "file": spec}
    return None  # thinking, tool calls and refusals have no place in user content


def _user_content(parts: list[Part]) -> str | list[dict[str, Any]]:
    """A plain string when the parts are all text (the form every vendor takes), else typed parts."""
    if all(isinstance(p, TextPart) for p in parts):
        return _join(parts)
    return [c for p in parts if (c := _content_part(p)) is not None]


def _join(parts: list[Part], sep: str = "\n\n") -> str:
    return sep.join(p.text for p in parts if isinstance(p, TextPart) and p.text)


def _assistant(message: Message) -> dict[str, Any]:
    calls = [p for p in message.parts if isinstance(p, ToolCallPart)]
    text = _join(message.parts, "")
    out: dict[str, Any] = {"role": "assistant", "content": text if text or not calls else None}
    refusal = "".join(p.text for p in message.parts if isinstance(p, RefusalPart))
    if refusal:
        out["refusal"] = refusal
    if calls:
        thinking = "".join(p.text for p in message.parts if isinstance(p, ThinkingPart) and not p.redacted)
        if thinking:
            out["reasoning_content"] = thinking
        out["tool_calls"] = [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments or "{}"}}
            for c in calls
        ]
    if message.name:
        out["name"] = message.name
    return out


def encode_messages(messages: list[Message]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for message in messages:
        if message.role == "assistant":
            out.append(_assistant(message))
            continue
        if message.role == "system":
            out.append(_drop_none(role="system", content=_join(message.parts), name=message.name))
            continue
        # user and tool turns: every tool result is its own `tool` message, first (each must follow the
        # assistant's tool calls); what else the turn holds, and tool-result media, follows as a user turn.
        rest: list[Part] = []
        media: list[Part] = []
        for part in message.parts:
            if not isinstance(part, ToolResultPart):
                rest.append(part)
                continue
            text = _join(part.content, "\n")
            media.extend(p for p in part.content if isinstance(p, ImagePart | AudioPart | FilePart))
            if part.is_error:
                text = "Error: " + text  # Chat has no error flag
            out.append({"role": "tool", "tool_call_id": part.tool_call_id, "content": text})
        rest = media + rest
        if rest or (message.role == "user" and not message.parts):
            out.append(_drop_none(role="user", content=_user_content(rest), name=message.name))
    return out


# --- response -----------------------------------------------------------------------------------


def _text(content: Any) -> str:
    """`content` as a string, also from vendors that send a list of text parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [_obj(p) for p in content]
        return "".join(str(p.get("text") or "") for p in parts if p.get("type", "text") == "text")
    return ""


def _reasoning(message: dict[str, Any]) -> str:
    # Some vendors send both names with the same text: take one, never both.
    return _text(message.get("reasoning_content")) or _text(message.get("reasoning"))


def _call_id(raw: Any) -> str:
    return raw if isinstance(raw, str) and raw else "call_" + secrets.token_hex(12)


def _arguments(raw: Any) -> str:
    if isinstance(raw, str):
        return raw
    return json.dumps(raw).decode() if raw is not None else ""


def parse_usage_json(raw: dict[str, Any]) -> Usage:
    usage = parse_usage(raw)
    if not usage.cached_input_tokens and isinstance(raw.get("prompt_cache_hit_tokens"), int):
        usage.cached_input_tokens = raw["prompt_cache_hit_tokens"]  # DeepSeek's name
    total = raw.get("total_tokens")
    if usage.reasoning_tokens and total == usage.input_tokens + usage.output_tokens + usage.reasoning_tokens:
        usage.output_tokens += usage.reasoning_tokens  # vendors (xAI) that count reasoning apart
    return usage


def finish_reason(raw: Any, has_calls: bool) -> FinishReason | None:
    if not isinstance(raw, str) or not raw:
        return None
    reason = _FINISH.get(raw, "stop")
    # Some vendors answer tool calls with "stop"; clients loop on "tool_calls".
    return "tool_calls" if reason == "stop" and has_calls else reason


def parse_response(data: dict[str, Any], req: ChatRequest, target: Target) -> ChatResponse:
    raw_choices = data.get("choices")
    if not isinstance(raw_choices, list):
        raise _malformed(target, "an answer without choices")
    choices: list[Choice] = []
    for position, raw in enumerate(raw_choices):
        if not isinstance(raw, dict):
            raise _malformed(target, "a malformed choice")
        msg = _obj(raw.get("message"))
        parts: list[Part] = []
        if req.include_reasoning and (thinking := _reasoning(msg)):
            parts.append(ThinkingPart(thinking))
        if text := _text(msg.get("content")):
            parts.append(TextPart(text))
        if isinstance(msg.get("refusal"), str) and msg["refusal"]:
            parts.append(RefusalPart(msg["refusal"]))
        calls = [c for c in msg.get("tool_calls") or [] if isinstance(c, dict)]
        if isinstance(msg.get("function_call"), dict):
            calls.append({"function": msg["function_call"]})  # the legacy single call
        for call in calls:
            fn = _obj(call.get("function"))
            name, args = str(fn.get("name") or ""), _arguments(fn.get("arguments"))
            parts.append(ToolCallPart(_call_id(call.get("id")), name, args))
        index, reason = raw.get("index"), finish_reason(raw.get("finish_reason"), bool(calls))
        choices.append(
            Choice(index if isinstance(index, int) else position, Message("assistant", parts), reason)
        )
    usage = data.get("usage")
    usage_ = parse_usage_json(usage) if isinstance(usage, dict) else None
    return ChatResponse(*_head(data, req.model), choices=choices, usage=usage_)


def _head(data: dict[str, Any], model: str) -> tuple[str, str, int]:
    """id, model and created of an answer or chunk, made up where the vendor left them out."""
    answer_id = str(data.get("id") or "chatcmpl-" + secrets.token_hex(12))
    return answer_id, str(data.get("model") or model), int(data.get("created") or time.time())


def response_events(resp: ChatResponse) -> list[StreamEvent]:
    """A whole answer as stream events (for a vendor that answered a stream request with JSON)."""
    events: list[StreamEvent] = [StreamStart(id=resp.id, model=resp.model, created=resp.created)]
    for choice in resp.choices:
        c, index = choice.index, 0
        for part in choice.message.parts:
            if isinstance(part, ToolCallPart):
                events.append(BlockStart(index, "tool_call", c, tool_call_id=part.id, tool_name=part.name))
                text = part.arguments
            elif isinstance(part, ThinkingPart):
                events.append(BlockStart(index, "thinking", c))
                text = part.text
            elif isinstance(part, TextPart | RefusalPart):
                events.append(BlockStart(index, "text", c))
                text = part.text
            else:
                continue
            if text:
                events.append(BlockDelta(index, text, choice=c))
            events.append(BlockStop(index, c))
            index += 1
        events.append(Finish(choice.finish_reason or "stop", c))
    if resp.usage is not None:
        events.append(UsageEvent(resp.usage))
    return events


# --- stream -------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Choice:
    """Block bookkeeping of one choice: one open block at a time, indices contiguous from 0."""

    next_index: int = 0
    open_index: int | None = None
    open_kind: BlockKind | None = None
    tools: dict[int, tuple[str, int]] = field(default_factory=dict)  # upstream index -> (call id, block)
    pending: dict[int, list[str]] = field(default_factory=dict)  # upstream index -> [id, args, name], held
    saw_calls: bool = False
    finished: bool = False


class _StreamReader:
    """Upstream `chat.completion.chunk` events in, canonical stream events out."""

    def __init__(self, target: Target, req: ChatRequest) -> None:
        self.target = target
        self.model = req.model
        self.include_reasoning = req.include_reasoning
        self.started = False
        self.done = False
        self.usage: Usage | None = None
        self.choices: dict[int, _Choice] = {}

    def feed(self, raw: bytes) -> list[StreamEvent]:
        payload = sse.data_payload(raw) if raw.strip() else None
        if not payload or self.done:
            return []
        if payload.startswith(b"[DONE]"):
            self.done = True
            return []
        try:
            data = json.loads(payload)
        except json.JSONDecodeError:
            raise _malformed(self.target, "a malformed stream event") from None
        if not isinstance(data, dict):
            raise _malformed(self.target, "a malformed stream event")
        if data.get("error") is not None:
            raise reported_error(self.target, data["error"])
        events: list[StreamEvent] = []
        if not self.started:
            self.started = True
            events.append(StreamStart(*_head(data, self.model)))
        if isinstance(data.get("usage"), dict):  # the usage chunk, or usage riding on a content chunk
            self.usage = parse_usage_json(data["usage"])
        for position, choice in enumerate(data.get("choices") or []):
            if isinstance(choice, dict):
                index = choice.get("index")
                self._choice(index if isinstance(index, int) else position, choice, events)
        return events

    def _choice(self, c: int, raw: dict[str, Any], out: Events) -> None:
        st = self.choices.setdefault(c, _Choice())
        if st.finished:
            return
        delta = _obj(raw.get("delta"))
        if self.include_reasoning and (thinking := _reasoning(delta)):
            self._text(st, c, "thinking", thinking, out)
        if text := _text(delta.get("content")):
            self._text(st, c, "text", text, out)
        if isinstance(delta.get("refusal"), str) and delta["refusal"]:
            self._text(st, c, "text", delta["refusal"], out)  # no refusal block kind: stream it as text
        calls = delta.get("tool_calls")
        if isinstance(delta.get("function_call"), dict):
            calls = [{"index": 0, "function": delta["function_call"]}]
        for call in calls if isinstance(calls, list) else []:
            if isinstance(call, dict):
                self._tool(st, c, call, out)
        reason = finish_reason(raw.get("finish_reason"), st.saw_calls)
        if reason is not None:
            self._finish(st, c, reason, out)

    def _stop(self, st: _Choice, c: int, out: Events) -> None:
        if st.open_index is not None:
            out.append(BlockStop(st.open_index, c))
            st.open_index = st.open_kind = None

    def _start(
        self, st: _Choice, c: int, kind: BlockKind, out: Events, call: tuple[str, str] | None = None
    ) -> int:
        self._stop(st, c, out)
        index = st.open_index = st.next_index
        st.open_kind = kind
        st.next_index += 1
        tool_id, tool_name = call or (None, None)
        out.append(BlockStart(index, kind, c, tool_call_id=tool_id, tool_name=tool_name))
        return index

    def _text(self, st: _Choice, c: int, kind: BlockKind, text: str, out: Events) -> None:
        index = st.open_index if st.open_kind == kind else self._start(st, c, kind, out)
        assert index is not None
        out.append(BlockDelta(index, text, choice=c))

    def _tool(self, st: _Choice, c: int, call: dict[str, Any], out: Events) -> None:
        fn = _obj(call.get("function"))
        call_id, name, args = call.get("id"), fn.get("name"), _arguments(fn.get("arguments"))
        k = call.get("index")
        keys = [*st.tools, *st.pending]
        if not isinstance(k, int):  # vendors that omit the index: a new id is a new call
            known = {cid: i for i, (cid, _) in st.tools.items()} | {p[0]: i for i, p in st.pending.items()}
            k = known.get(call_id, max(keys, default=-1) + 1) if call_id else max(keys, default=0)
        elif k in st.tools and call_id and name and call_id != st.tools[k][0]:
            k = max(keys) + 1  # an index reused for another call
        st.saw_calls = True
        if k in st.tools:
            if args:
                out.append(BlockDelta(st.tools[k][1], args, choice=c))
            return
        pending = st.pending.setdefault(k, [_call_id(call_id), "", ""])
        pending[1] += args
        if name:
            pending[2] = str(name)
        # The first call streams live once its name is known. Later calls are held whole until the
        # choice finishes: some vendors interleave the fragments of parallel calls, and a block must
        # get all its deltas before it stops (the next block's start stops it).
        if pending[2] and not st.tools:
            self._open_tool(st, c, k, out)

    def _open_tool(self, st: _Choice, c: int, k: int, out: Events) -> None:
        call_id, args, name = st.pending.pop(k)
        index = self._start(st, c, "tool_call", out, (call_id, name))
        st.tools[k] = (call_id, index)
        if args:
            out.append(BlockDelta(index, args, choice=c))

    def _finish(self, st: _Choice, c: int, reason: FinishReason, out: Events) -> None:
        for k in sorted(st.pending):
            self._open_tool(st, c, k, out)
        self._stop(st, c, out)
        st.finished = True
        out.append(Finish(reason, c))

    def usage_event(self) -> list[StreamEvent]:
        return [UsageEvent(self.usage)] if self.usage is not None else []

    def end(self) -> tuple[list[StreamEvent], UpstreamError | None]:
        """After `[DONE]` or the end of the body: close what is open, or name why the stream failed.

        A lenient upstream may end without `[DONE]` once every choice has finished. Known usage is
        reported even for a failed stream, so accounting does not lose it.
        """
        finished = bool(self.choices) and all(st.finished for st in self.choices.values())
        if not self.started or not (self.done or finished):
            # Retryable while nothing reached the client: another deployment may serve the request.
            failure = _failed(
                self.target, "ended the stream early", "upstream_stream_incomplete", not self.started
            )
            return self.usage_event(), failure
        events: list[StreamEvent] = []
        for c, st in sorted(self.choices.items()):
            if not st.finished:
                self._finish(st, c, "tool_calls" if st.saw_calls else "stop", events)
        return events + self.usage_event(), None
