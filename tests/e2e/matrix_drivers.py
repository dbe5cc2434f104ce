"""Client drivers for the translation matrix (`test_matrix.py`).

A driver speaks one client protocol through its official SDK (bounded: 10 s timeouts, no retries) and
reports what the client saw in protocol-neutral terms: texts, tool calls, finish reasons, usage, errors.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import anthropic
import httpx
import openai
import pytest
from google import genai
from google.genai import errors as genai_errors
from google.genai import types

from tests.conftest import MASTER_KEY

PNG_1PX = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
PNG_BYTES = base64.b64decode(PNG_1PX)
TOOL_NAME = "get_weather"
TOOL_PARAMS: dict[str, Any] = {
    "type": "object",
    "properties": {"query": {"type": "string"}},
    "required": ["query"],
}
SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "population": {"type": "integer"}},
    "required": ["name", "population"],
    "additionalProperties": False,
}
TIMEOUT = 10.0


@dataclass
class ToolCall:
    id: str | None
    name: str
    args: Any


@dataclass
class ToolTurn:
    calls: list[ToolCall]
    finish: Any  # the client-visible finish/stop reason (Responses: the response status)
    replay: Any  # the assistant turn as the client sends it back
    reasoning: str | None = None
    events: list[Any] | None = None  # the SDK's stream events, for a streamed turn


@dataclass
class Streamed:
    text: str  # the text deltas, joined
    finish: Any
    events: list[Any]  # what the SDK parsed: chunks or typed events
    final_text: str  # the text of the SDK's own accumulated final answer


@dataclass
class UsageView:
    input_total: int  # prompt tokens with cache reads and writes, whatever the protocol's own rule
    native_input: int  # the protocol's own input figure
    cached: int
    output: int
    request_id: str


@dataclass
class ErrorView:
    status: int
    kind: str | None  # the protocol's error type / code / status name
    retry_after: str | None  # the retry-after header
    retry_delay: str | None = None  # Gemini's RetryInfo.retryDelay


@dataclass
class Thought:
    reasoning: str | None  # reasoning text in the client protocol's own form, None if absent
    answer: str


def expect_error(kinds: type[BaseException] | tuple[type[BaseException], ...], run: Callable[[], Any]) -> Any:
    """Run `run`, which must raise one of `kinds` quickly (not by timing out)."""
    started = time.monotonic()
    with pytest.raises(kinds) as info:
        run()
    assert time.monotonic() - started < TIMEOUT / 2, "the client waited for a timeout"
    assert not isinstance(
        info.value, openai.APITimeoutError | anthropic.APITimeoutError | httpx.TimeoutException
    )
    return info.value


# --- client drivers -----------------------------------------------------------------------------


class OpenAIChatDriver:
    name = "openai-chat"
    stop_finish = "stop"
    tool_finish = "tool_calls"
    error_kind = "rate_limit_exceeded"
    input_excludes_cache = False  # prompt_tokens counts cached tokens too

    def __init__(self, base_url: str) -> None:
        self.client = openai.OpenAI(
            base_url=base_url + "/v1", api_key=MASTER_KEY, max_retries=0, timeout=TIMEOUT
        )
        function = {"name": TOOL_NAME, "description": "Weather for a city", "parameters": TOOL_PARAMS}
        self.tools: Any = [{"type": "function", "function": function}]

    def _create(self, model: str, messages: Any, **kw: Any) -> Any:
        return self.client.chat.completions.create(model=model, messages=messages, **kw)

    def text(self, model: str, system: str, user: str) -> str:
        done = self._create(model, [{"role": "system", "content": system}, {"role": "user", "content": user}])
        assert done.choices[0].finish_reason == self.stop_finish
        return str(done.choices[0].message.content)

    def _stream(self, model: str, user: str, **kw: Any) -> tuple[Any, list[Any]]:
        messages: Any = [{"role": "user", "content": user}]
        with self.client.chat.completions.stream(model=model, messages=messages, **kw) as stream:
            events = list(stream)
            return stream.get_final_completion(), events

    def stream(self, model: str, user: str) -> Streamed:
        final, events = self._stream(model, user)
        text = "".join(e.delta for e in events if e.type == "content.delta")
        return Streamed(text, final.choices[0].finish_reason, events, str(final.choices[0].message.content))

    def _turn(self, done: Any, events: list[Any] | None = None) -> ToolTurn:
        message = done.choices[0].message
        calls = [
            ToolCall(c.id, c.function.name, json.loads(c.function.arguments))
            for c in message.tool_calls or []
        ]
        reasoning = (message.model_extra or {}).get("reasoning_content")
        replay = message.model_dump(exclude_none=True)
        return ToolTurn(calls, done.choices[0].finish_reason, replay, reasoning, events)

    def tools_call(self, model: str, user: str) -> ToolTurn:
        return self._turn(self._create(model, [{"role": "user", "content": user}], tools=self.tools))

    def stream_tools(self, model: str, user: str) -> ToolTurn:
        return self._turn(*self._stream(model, user, tools=self.tools))

    def tool_result(self, model: str, user: str, turn: ToolTurn, result: str, **kw: Any) -> str:
        results = [{"role": "tool", "tool_call_id": c.id, "content": result} for c in turn.calls]
        messages = [{"role": "user", "content": user}, turn.replay, *results]
        return str(self._create(model, messages, tools=self.tools, **kw).choices[0].message.content)

    def image(self, model: str, text: str) -> str:
        url = f"data:image/png;base64,{PNG_1PX}"
        content = [{"type": "text", "text": text}, {"type": "image_url", "image_url": {"url": url}}]
        return str(self._create(model, [{"role": "user", "content": content}]).choices[0].message.content)

    def json_schema(self, model: str, user: str) -> str:
        fmt = {"type": "json_schema", "json_schema": {"name": "city", "schema": SCHEMA, "strict": True}}
        done = self._create(model, [{"role": "user", "content": user}], response_format=fmt)
        return str(done.choices[0].message.content)

    def thinking(self, model: str, user: str) -> Thought:
        done = self._create(model, [{"role": "user", "content": user}], reasoning_effort="low")
        message = done.choices[0].message
        return Thought((message.model_extra or {}).get("reasoning_content"), str(message.content))

    def thinking_tools(self, model: str, user: str, result: str) -> tuple[ToolTurn, str]:
        kw: Any = {"reasoning_effort": "low"}
        first = self._turn(self._create(model, [{"role": "user", "content": user}], tools=self.tools, **kw))
        return first, self.tool_result(model, user, first, result, **kw)

    def usage(self, model: str, user: str) -> UsageView:
        raw = self.client.chat.completions.with_raw_response.create(
            model=model, messages=[{"role": "user", "content": user}]
        )
        return self._usage(raw.parse().usage, raw.headers["x-request-id"])

    def stream_usage(self, model: str, user: str) -> UsageView:
        raw = self.client.chat.completions.with_raw_response.create(
            model=model,
            messages=[{"role": "user", "content": user}],
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = list(raw.parse())
        assert chunks[-1].choices == [], "the usage chunk comes last, without choices"
        return self._usage(chunks[-1].usage, raw.headers["x-request-id"])

    @staticmethod
    def _usage(usage: Any, request_id: str) -> UsageView:
        cached = usage.prompt_tokens_details.cached_tokens if usage.prompt_tokens_details else 0
        return UsageView(
            usage.prompt_tokens, usage.prompt_tokens, cached or 0, usage.completion_tokens, request_id
        )

    def error(self, model: str) -> ErrorView:
        err = expect_error(
            openai.RateLimitError, lambda: self._create(model, [{"role": "user", "content": "x"}])
        )
        return ErrorView(err.status_code, err.code, err.response.headers.get("retry-after"))

    def cut_stream(self, model: str) -> BaseException:
        return expect_error(openai.APIError, lambda: self._stream(model, "a b c d e f"))


class AnthropicDriver:
    name = "anthropic"
    stop_finish = "end_turn"
    tool_finish = "tool_use"
    error_kind = "rate_limit_error"
    input_excludes_cache = True  # input_tokens leaves out cache reads and writes

    def __init__(self, base_url: str) -> None:
        self.client = anthropic.Anthropic(
            base_url=base_url, api_key=MASTER_KEY, max_retries=0, timeout=TIMEOUT
        )
        self.tools: Any = [
            {"name": TOOL_NAME, "description": "Weather for a city", "input_schema": TOOL_PARAMS}
        ]

    def _create(self, model: str, messages: Any, **kw: Any) -> Any:
        kw.setdefault("max_tokens", 256)
        return self.client.messages.create(model=model, messages=messages, **kw)

    @staticmethod
    def _text(message: Any) -> str:
        return "".join(b.text for b in message.content if b.type == "text")

    def text(self, model: str, system: str, user: str) -> str:
        done = self._create(model, [{"role": "user", "content": user}], system=system)
        assert done.stop_reason == self.stop_finish
        return self._text(done)

    def _stream(self, model: str, user: str, **kw: Any) -> tuple[Any, list[Any]]:
        messages: Any = [{"role": "user", "content": user}]
        with self.client.messages.stream(model=model, max_tokens=256, messages=messages, **kw) as stream:
            events = list(stream)
            return stream.get_final_message(), events

    def stream(self, model: str, user: str) -> Streamed:
        final, events = self._stream(model, user)
        text = "".join(e.text for e in events if e.type == "text")
        return Streamed(text, final.stop_reason, events, self._text(final))

    def _turn(self, done: Any, events: list[Any] | None = None) -> ToolTurn:
        calls = [ToolCall(b.id, b.name, b.input) for b in done.content if b.type == "tool_use"]
        thinking = "".join(b.thinking for b in done.content if b.type == "thinking") or None
        return ToolTurn(calls, done.stop_reason, done.content, thinking, events)

    def tools_call(self, model: str, user: str) -> ToolTurn:
        return self._turn(self._create(model, [{"role": "user", "content": user}], tools=self.tools))

    def stream_tools(self, model: str, user: str) -> ToolTurn:
        return self._turn(*self._stream(model, user, tools=self.tools))

    def _history(self, user: str, turn: ToolTurn, result: str) -> Any:
        results = [{"type": "tool_result", "tool_use_id": c.id, "content": result} for c in turn.calls]
        return [
            {"role": "user", "content": user},
            {"role": "assistant", "content": turn.replay},
            {"role": "user", "content": results},
        ]

    def tool_result(self, model: str, user: str, turn: ToolTurn, result: str) -> str:
        return self._text(self._create(model, self._history(user, turn, result), tools=self.tools))

    def image(self, model: str, text: str) -> str:
        source = {"type": "base64", "media_type": "image/png", "data": PNG_1PX}
        content = [{"type": "text", "text": text}, {"type": "image", "source": source}]
        return self._text(self._create(model, [{"role": "user", "content": content}]))

    def json_schema(self, model: str, user: str) -> str:
        config = {"format": {"type": "json_schema", "schema": SCHEMA}}
        return self._text(self._create(model, [{"role": "user", "content": user}], output_config=config))

    THINKING: Any = {"type": "enabled", "budget_tokens": 1024}

    def thinking(self, model: str, user: str) -> Thought:
        done = self._create(
            model, [{"role": "user", "content": user}], max_tokens=2048, thinking=self.THINKING
        )
        blocks = [b for b in done.content if b.type == "thinking"]
        assert not blocks or blocks == done.content[: len(blocks)], "thinking comes first"
        return Thought("".join(b.thinking for b in blocks) or None, self._text(done))

    def thinking_tools(self, model: str, user: str, result: str) -> tuple[ToolTurn, str]:
        """A tool round trip with thinking on: the first turn's signed thinking is replayed."""
        kw: Any = {"max_tokens": 2048, "thinking": self.THINKING, "tools": self.tools}
        first = self._turn(self._create(model, [{"role": "user", "content": user}], **kw))
        second = self._create(model, self._history(user, first, result), **kw)
        return first, self._text(second)

    def usage(self, model: str, user: str) -> UsageView:
        raw = self.client.messages.with_raw_response.create(
            model=model, max_tokens=256, messages=[{"role": "user", "content": user}]
        )
        return self._usage(raw.parse().usage, raw.headers["x-request-id"])

    def stream_usage(self, model: str, user: str) -> UsageView:
        messages: Any = [{"role": "user", "content": user}]
        with self.client.messages.stream(model=model, max_tokens=256, messages=messages) as stream:
            final = stream.get_final_message()
            request_id = stream.response.headers["x-request-id"]
        return self._usage(final.usage, request_id)

    @staticmethod
    def _usage(usage: Any, request_id: str) -> UsageView:
        read, written = usage.cache_read_input_tokens or 0, usage.cache_creation_input_tokens or 0
        total = usage.input_tokens + read + written
        return UsageView(total, usage.input_tokens, read, usage.output_tokens, request_id)

    def error(self, model: str) -> ErrorView:
        err = expect_error(
            anthropic.RateLimitError, lambda: self._create(model, [{"role": "user", "content": "x"}])
        )
        kind = err.body.get("error", {}).get("type") if isinstance(err.body, dict) else None
        return ErrorView(err.status_code, kind, err.response.headers.get("retry-after"))

    def cut_stream(self, model: str) -> BaseException:
        return expect_error(anthropic.APIError, lambda: self._stream(model, "a b c d e f"))


class GeminiDriver:
    name = "gemini"
    stop_finish = types.FinishReason.STOP
    tool_finish = types.FinishReason.STOP  # Gemini has no tool-call finish reason
    error_kind = "RESOURCE_EXHAUSTED"
    input_excludes_cache = False  # promptTokenCount includes cached content

    def __init__(self, base_url: str) -> None:
        options = types.HttpOptions(base_url=base_url, api_version="v1beta", timeout=int(TIMEOUT * 1000))
        self.client = genai.Client(api_key=MASTER_KEY, http_options=options)
        decl = types.FunctionDeclaration(
            name=TOOL_NAME, description="Weather for a city", parameters_json_schema=TOOL_PARAMS
        )
        self.tool_config: dict[str, Any] = {
            "tools": [types.Tool(function_declarations=[decl])],
            "automatic_function_calling": types.AutomaticFunctionCallingConfig(disable=True),
        }

    def _generate(self, model: str, contents: Any, **config: Any) -> Any:
        cfg = types.GenerateContentConfig(**config)
        return self.client.models.generate_content(model=model, contents=contents, config=cfg)

    def _stream(self, model: str, contents: Any, **config: Any) -> list[Any]:
        cfg = types.GenerateContentConfig(**config)
        return list(self.client.models.generate_content_stream(model=model, contents=contents, config=cfg))

    @staticmethod
    def _finish(reply: Any) -> Any:
        return reply.candidates[0].finish_reason if reply.candidates else None

    def text(self, model: str, system: str, user: str) -> str:
        reply = self._generate(model, user, system_instruction=system)
        assert self._finish(reply) == self.stop_finish
        return str(reply.text)

    def stream(self, model: str, user: str) -> Streamed:
        chunks = self._stream(model, user)
        text = "".join(c.text or "" for c in chunks)
        return Streamed(text, self._finish(chunks[-1]), chunks, text)

    @staticmethod
    def _user(text: str) -> Any:
        return types.Content(role="user", parts=[types.Part(text=text)])

    def tools_call(self, model: str, user: str, **config: Any) -> ToolTurn:
        reply = self._generate(model, user, **self.tool_config, **config)
        calls = [ToolCall(c.id, str(c.name), c.args) for c in reply.function_calls or []]
        parts = reply.candidates[0].content.parts or []
        thoughts = "".join(p.text or "" for p in parts if p.thought) or None
        return ToolTurn(calls, self._finish(reply), reply.candidates[0].content, thoughts)

    def stream_tools(self, model: str, user: str) -> ToolTurn:
        chunks = self._stream(model, user, **self.tool_config)
        calls = [ToolCall(c.id, str(c.name), c.args) for ch in chunks for c in ch.function_calls or []]
        parts = [p for ch in chunks for p in (ch.candidates[0].content.parts or []) if ch.candidates]
        return ToolTurn(
            calls, self._finish(chunks[-1]), types.Content(role="model", parts=parts), None, chunks
        )

    def _history(self, user: str, turn: ToolTurn, result: str) -> Any:
        responses = [
            types.Part(
                function_response=types.FunctionResponse(id=c.id, name=c.name, response={"result": result})
            )
            for c in turn.calls
        ]
        return [self._user(user), turn.replay, types.Content(role="user", parts=responses)]

    def tool_result(self, model: str, user: str, turn: ToolTurn, result: str) -> str:
        return str(self._generate(model, self._history(user, turn, result), **self.tool_config).text)

    def image(self, model: str, text: str) -> str:
        parts = [types.Part(text=text), types.Part.from_bytes(data=PNG_BYTES, mime_type="image/png")]
        return str(self._generate(model, [types.Content(role="user", parts=parts)]).text)

    def json_schema(self, model: str, user: str) -> str:
        reply = self._generate(
            model, user, response_mime_type="application/json", response_json_schema=SCHEMA
        )
        return str(reply.text)

    THINKING = types.ThinkingConfig(thinking_budget=1024, include_thoughts=True)

    def thinking(self, model: str, user: str) -> Thought:
        reply = self._generate(model, user, thinking_config=self.THINKING)
        parts = reply.candidates[0].content.parts or []
        thoughts = "".join(p.text or "" for p in parts if p.thought)
        return Thought(thoughts or None, str(reply.text))

    def thinking_tools(self, model: str, user: str, result: str) -> tuple[ToolTurn, str]:
        first = self.tools_call(model, user, thinking_config=self.THINKING)
        second = self._generate(
            model, self._history(user, first, result), **self.tool_config, thinking_config=self.THINKING
        )
        return first, str(second.text)

    def usage(self, model: str, user: str) -> UsageView:
        reply = self._generate(model, user)
        return self._usage(reply.usage_metadata, reply.sdk_http_response.headers)

    def stream_usage(self, model: str, user: str) -> UsageView:
        chunks = self._stream(model, user)
        return self._usage(chunks[-1].usage_metadata, chunks[0].sdk_http_response.headers)

    @staticmethod
    def _usage(meta: Any, headers: Any) -> UsageView:
        prompt, cached = meta.prompt_token_count or 0, meta.cached_content_token_count or 0
        output = (meta.candidates_token_count or 0) + (meta.thoughts_token_count or 0)
        return UsageView(prompt, prompt, cached, output, str(httpx.Headers(headers).get("x-request-id")))

    def error(self, model: str) -> ErrorView:
        err = expect_error(genai_errors.ClientError, lambda: self._generate(model, "x"))
        details = (err.details or {}).get("error", {}).get("details") or []
        delay = next(
            (d.get("retryDelay") for d in details if str(d.get("@type")).endswith("RetryInfo")), None
        )
        headers = httpx.Headers(dict(err.response.headers) if err.response is not None else {})
        return ErrorView(err.code, err.status, headers.get("retry-after"), delay)

    def cut_stream(self, model: str) -> BaseException:
        return expect_error(
            (genai_errors.APIError, httpx.HTTPError), lambda: self._stream(model, "a b c d e f")
        )


class ResponsesDriver:
    name = "responses"
    stop_finish = "completed"
    tool_finish = "completed"  # a response whose output ends with function_call items
    error_kind = "rate_limit_exceeded"
    input_excludes_cache = False

    def __init__(self, base_url: str) -> None:
        self.client = openai.OpenAI(
            base_url=base_url + "/v1", api_key=MASTER_KEY, max_retries=0, timeout=TIMEOUT
        )
        function = {"name": TOOL_NAME, "description": "Weather for a city", "parameters": TOOL_PARAMS}
        self.tools: Any = [{"type": "function", **function}]

    def _create(self, model: str, input: Any, **kw: Any) -> Any:
        return self.client.responses.create(model=model, input=input, **kw)

    def text(self, model: str, system: str, user: str) -> str:
        done = self._create(model, user, instructions=system)
        assert done.status == self.stop_finish
        return done.output_text

    def _stream(self, model: str, user: str, **kw: Any) -> tuple[Any, list[Any]]:
        with self.client.responses.stream(model=model, input=user, **kw) as stream:
            events = list(stream)
            return stream.get_final_response(), events

    def stream(self, model: str, user: str) -> Streamed:
        final, events = self._stream(model, user)
        text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
        return Streamed(text, final.status, events, final.output_text)

    @staticmethod
    def _turn(done: Any, events: list[Any] | None = None) -> ToolTurn:
        calls = [
            ToolCall(i.call_id, i.name, json.loads(i.arguments))
            for i in done.output
            if i.type == "function_call"
        ]
        assert done.output and done.output[-1].type == "function_call"
        replay = [item.model_dump(exclude_none=True) for item in done.output]
        summary = "".join(s.text for i in done.output if i.type == "reasoning" for s in i.summary)
        return ToolTurn(calls, done.status, replay, summary or None, events)

    def tools_call(self, model: str, user: str) -> ToolTurn:
        return self._turn(self._create(model, user, tools=self.tools))

    def stream_tools(self, model: str, user: str) -> ToolTurn:
        return self._turn(*self._stream(model, user, tools=self.tools))

    def tool_result(self, model: str, user: str, turn: ToolTurn, result: str, **kw: Any) -> str:
        outputs = [{"type": "function_call_output", "call_id": c.id, "output": result} for c in turn.calls]
        items = [{"role": "user", "content": user}, *turn.replay, *outputs]
        return str(self._create(model, items, tools=self.tools, **kw).output_text)

    def image(self, model: str, text: str) -> str:
        content = [
            {"type": "input_text", "text": text},
            {"type": "input_image", "image_url": f"data:image/png;base64,{PNG_1PX}", "detail": "auto"},
        ]
        return str(self._create(model, [{"role": "user", "content": content}]).output_text)

    def json_schema(self, model: str, user: str) -> str:
        fmt = {"format": {"type": "json_schema", "name": "city", "schema": SCHEMA, "strict": True}}
        return str(self._create(model, user, text=fmt).output_text)

    def thinking(self, model: str, user: str) -> Thought:
        done = self._create(model, user, reasoning={"effort": "low", "summary": "auto"})
        items = [i for i in done.output if i.type == "reasoning"]
        summary = "".join(s.text for i in items for s in i.summary)
        return Thought(summary or None, done.output_text)

    def thinking_tools(self, model: str, user: str, result: str) -> tuple[ToolTurn, str]:
        """Reasoning items are replayed by value; `encrypted_content` carries what the upstream needs."""
        kw: Any = {"reasoning": {"effort": "low", "summary": "auto"}}
        first = self._turn(self._create(model, user, tools=self.tools, **kw))
        return first, self.tool_result(model, user, first, result, **kw)

    def usage(self, model: str, user: str) -> UsageView:
        raw = self.client.responses.with_raw_response.create(model=model, input=user)
        return self._usage(raw.parse().usage, raw.headers["x-request-id"])

    def stream_usage(self, model: str, user: str) -> UsageView:
        raw = self.client.responses.with_raw_response.create(model=model, input=user, stream=True)
        events = list(raw.parse())
        assert events[-1].type == "response.completed"
        return self._usage(events[-1].response.usage, raw.headers["x-request-id"])

    @staticmethod
    def _usage(usage: Any, request_id: str) -> UsageView:
        cached = usage.input_tokens_details.cached_tokens if usage.input_tokens_details else 0
        return UsageView(usage.input_tokens, usage.input_tokens, cached, usage.output_tokens, request_id)

    def error(self, model: str) -> ErrorView:
        err = expect_error(openai.RateLimitError, lambda: self._create(model, "x"))
        return ErrorView(err.status_code, err.code, err.response.headers.get("retry-after"))

    def cut_stream(self, model: str) -> BaseException:
        """The Responses stream reports the failure in-band (`error`, `response.failed`); the SDK's
        accumulator then refuses to hand out a final response."""
        kinds: list[str] = []

        def run() -> None:
            with self.client.responses.stream(model=model, input="a b c d e f") as stream:
                kinds.extend(e.type for e in stream)
                stream.get_final_response()

        err = expect_error((RuntimeError, openai.APIError), run)
        if isinstance(err, RuntimeError):
            assert "response.failed" in kinds and "response.completed" not in kinds, kinds
        return err


DRIVERS: dict[str, Callable[[str], Any]] = {
    "openai-chat": OpenAIChatDriver,
    "anthropic": AnthropicDriver,
    "gemini": GeminiDriver,
    "responses": ResponsesDriver,
}
