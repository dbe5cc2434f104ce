"""Prove the fake OpenAI upstream is faithful by driving it with the official ``openai`` SDK.

Clients use ``_strict_response_validation=True`` so every response body is validated
against the SDK's pydantic types, not merely duck-typed.
"""

from __future__ import annotations

import base64
import json
import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import openai
import pytest
from openai import AsyncOpenAI, OpenAI
from openai.types.chat import ChatCompletionMessageParam
from pydantic import BaseModel

try:  # works whether or not tests/ is a package
    from tests.fakes import FakeState, ServerThread, create_app
except ImportError:  # pragma: no cover - depends on how pytest sets sys.path
    from fakes import FakeState, ServerThread, create_app  # type: ignore[no-redef,unused-ignore]

API_KEY = "sk-test-fake-upstream"
TIMEOUT = 5.0
USER: list[ChatCompletionMessageParam] = [{"role": "user", "content": "hello brave new world"}]


@dataclass
class Upstream:
    server: ServerThread
    state: FakeState

    @property
    def api_base(self) -> str:
        return f"{self.server.base_url}/v1"


@pytest.fixture(scope="module")
def _running() -> Iterator[Upstream]:
    state = FakeState()
    with ServerThread(create_app(state)) as server:
        yield Upstream(server, state)


@pytest.fixture
def upstream(_running: Upstream) -> Iterator[Upstream]:
    state = _running.state
    state.reset()
    state.valid_keys.clear()
    yield _running
    fresh = FakeState()
    state.reset()
    state.valid_keys.clear()
    state.slow_seconds, state.chunk_delay = fresh.slow_seconds, fresh.chunk_delay


def _client(upstream: Upstream, *, strict: bool = True, timeout: float = TIMEOUT) -> OpenAI:
    return OpenAI(
        base_url=upstream.api_base,
        api_key=API_KEY,
        max_retries=0,
        timeout=timeout,
        _strict_response_validation=strict,
    )


def _async_client(upstream: Upstream, *, strict: bool = True) -> AsyncOpenAI:
    return AsyncOpenAI(
        base_url=upstream.api_base,
        api_key=API_KEY,
        max_retries=0,
        timeout=TIMEOUT,
        _strict_response_validation=strict,
    )


@pytest.fixture
def client(upstream: Upstream) -> Iterator[OpenAI]:
    with _client(upstream) as c:
        yield c


@pytest.fixture
def lenient_client(upstream: Upstream) -> Iterator[OpenAI]:
    """For wire shapes the SDK's own types reject under strict validation even from the real API:
    base64 embeddings (decoded after validation) and legacy completion stream chunks
    (``finish_reason: null`` vs. a non-optional Literal)."""
    with _client(upstream, strict=False) as c:
        yield c


TOOLS: list[Any] = [
    {
        "type": "function",
        "function": {
            "name": "search_web",
            "description": "Search the web",
            "parameters": {
                "type": "object",
                "properties": {"query": {"type": "string"}},
                "required": ["query"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "search_docs",
            "parameters": {"type": "object", "properties": {"query": {"type": "string"}}},
        },
    },
]


# ---------------------------------------------------------------------------------- chat


def test_chat_non_stream(client: OpenAI, upstream: Upstream) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini",
        messages=[{"role": "system", "content": "be terse"}, *USER],
    )
    assert raw.headers["x-request-id"].startswith("req_")
    assert raw.headers["content-type"] == "application/json"
    completion = raw.parse()
    assert completion.object == "chat.completion"
    assert completion.id.startswith("chatcmpl-")
    assert completion.model == "gpt-4o-mini"
    assert completion.system_fingerprint
    [choice] = completion.choices
    assert choice.index == 0
    assert choice.finish_reason == "stop"
    assert choice.message.role == "assistant"
    assert choice.message.content == "echo: hello brave new world"
    assert choice.message.tool_calls is None
    usage = completion.usage
    assert usage is not None
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (6, 5, 11)
    assert usage.prompt_tokens_details is not None and usage.prompt_tokens_details.cached_tokens == 0
    assert usage.completion_tokens_details is not None
    assert usage.completion_tokens_details.reasoning_tokens == 0

    recorded = upstream.state.last_request
    assert recorded["method"] == "POST"
    assert recorded["path"] == "/v1/chat/completions"
    assert recorded["key"] == API_KEY
    assert recorded["headers"]["authorization"] == f"Bearer {API_KEY}"
    assert recorded["json"]["messages"][1] == USER[0]
    assert json.loads(recorded["raw"]) == recorded["json"]


def test_chat_stream_with_usage(client: OpenAI) -> None:
    stream = client.chat.completions.create(
        model="gpt-4o-mini", messages=USER, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    assert len({c.id for c in chunks}) == 1
    assert len({c.created for c in chunks}) == 1
    assert all(c.object == "chat.completion.chunk" and c.model == "gpt-4o-mini" for c in chunks)

    first = chunks[0].choices[0].delta
    assert first.role == "assistant" and first.content == ""
    content_chunks = [c for c in chunks[1:] if c.choices and c.choices[0].delta.content]
    assert len(content_chunks) >= 3
    assert (
        "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        == "echo: hello brave new world"
    )

    finish = chunks[-2]
    assert finish.choices[0].finish_reason == "stop"
    assert finish.choices[0].delta.content is None and finish.choices[0].delta.role is None
    assert all(c.usage is None for c in chunks[:-1])
    last = chunks[-1]
    assert last.choices == []
    assert last.usage is not None and last.usage.total_tokens == last.usage.prompt_tokens + 5


def test_chat_stream_wire_format(upstream: Upstream) -> None:
    body = {"model": "m", "messages": USER, "stream": True, "stream_options": {"include_usage": True}}
    response = httpx.post(
        upstream.api_base + "/chat/completions",
        json=body,
        headers={"Authorization": f"Bearer {API_KEY}"},
        timeout=TIMEOUT,
    )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.text.endswith("data: [DONE]\n\n")
    events = response.text.split("\n\n")
    assert events[-1] == ""
    for event in events[:-1]:
        assert event.startswith("data: ") and "\n" not in event
    payloads = [json.loads(e[len("data: ") :]) for e in events[:-2]]
    assert all("usage" in p for p in payloads)
    assert all(p["usage"] is None for p in payloads[:-1])


def test_chat_stream_helper_accumulates(client: OpenAI) -> None:
    with client.chat.completions.stream(model="gpt-4o-mini", messages=USER) as stream:
        final = stream.get_final_completion()
    assert final.choices[0].message.content == "echo: hello brave new world"
    assert final.choices[0].finish_reason == "stop"


@pytest.mark.asyncio
async def test_stream_parallel_tool_calls_async(upstream: Upstream) -> None:
    async with _async_client(upstream) as client:
        stream = await client.chat.completions.create(model="gpt-4o", messages=USER, tools=TOOLS, stream=True)
        calls: dict[int, dict[str, str]] = {}
        finish_reasons = []
        first_seen: dict[int, Any] = {}
        async for chunk in stream:
            for choice in chunk.choices:
                if choice.finish_reason:
                    finish_reasons.append(choice.finish_reason)
                for tc in choice.delta.tool_calls or []:
                    if tc.index not in first_seen:
                        first_seen[tc.index] = tc
                    entry = calls.setdefault(tc.index, {"id": "", "name": "", "arguments": ""})
                    entry["id"] += tc.id or ""
                    if tc.function is not None:
                        entry["name"] += tc.function.name or ""
                        entry["arguments"] += tc.function.arguments or ""
    assert finish_reasons == ["tool_calls"]
    assert sorted(calls) == [0, 1]
    for index, tc in first_seen.items():
        assert tc.id and tc.id.startswith("call_") and tc.type == "function"
        assert tc.function is not None and tc.function.arguments == ""
        assert tc.function.name == TOOLS[index]["function"]["name"]
    assert [c["name"] for c in calls.values()] == ["search_web", "search_docs"]
    for call in calls.values():
        assert json.loads(call["arguments"]) == {"query": "hello brave new world"}


def test_tool_calls_non_stream_variants(client: OpenAI) -> None:
    one = client.chat.completions.create(
        model="m", messages=USER, tools=TOOLS, parallel_tool_calls=False
    ).choices[0]
    assert one.finish_reason == "tool_calls" and one.message.content is None
    assert [tc.function.name for tc in one.message.tool_calls or [] if tc.type == "function"] == [
        "search_web"
    ]

    named = client.chat.completions.create(
        model="m",
        messages=USER,
        tools=TOOLS,
        tool_choice={"type": "function", "function": {"name": "search_docs"}},
    ).choices[0]
    assert [tc.function.name for tc in named.message.tool_calls or [] if tc.type == "function"] == [
        "search_docs"
    ]

    none = client.chat.completions.create(model="m", messages=USER, tools=TOOLS, tool_choice="none")
    assert none.choices[0].message.content == "echo: hello brave new world"

    reply = client.chat.completions.create(
        model="m",
        tools=TOOLS,
        messages=[
            *USER,
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "search_web", "arguments": "{}"},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": "42 results"},
        ],
    )
    assert reply.choices[0].message.content == "tool said: 42 results"
    assert reply.choices[0].finish_reason == "stop"


def test_multimodal_n_logprobs_reasoning(client: OpenAI) -> None:
    completion = client.chat.completions.create(
        model="o4-mini",
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "describe"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
                    {"type": "text", "text": "this"},
                    {"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}},
                ],
            }
        ],
        n=2,
        logprobs=True,
        top_logprobs=2,
        reasoning_effort="low",
    )
    assert [c.index for c in completion.choices] == [0, 1]
    for choice in completion.choices:
        assert choice.message.content == "echo: describe this [images: 1] [audio: 1]"
        assert choice.logprobs is not None and choice.logprobs.content is not None
        tokens = choice.logprobs.content
        assert "".join(t.token for t in tokens) == choice.message.content
        assert all(len(t.top_logprobs) == 2 and t.bytes == list(t.token.encode()) for t in tokens)
    usage = completion.usage
    assert usage is not None and usage.completion_tokens_details is not None
    assert usage.completion_tokens_details.reasoning_tokens == 7
    assert usage.completion_tokens == 2 * 7 + 7


class Person(BaseModel):
    name: str
    age: int
    height: float
    admin: bool
    tags: list[str]


class Team(BaseModel):
    lead: Person
    label: str | None


def test_structured_outputs(client: OpenAI) -> None:
    parsed = client.chat.completions.parse(model="gpt-4o", messages=USER, response_format=Team)
    team = parsed.choices[0].message.parsed
    assert team == Team(
        lead=Person(name="x", age=1, height=1.5, admin=True, tags=[]),
        label="x",
    )

    as_object = client.chat.completions.create(
        model="gpt-4o", messages=USER, response_format={"type": "json_object"}
    )
    assert json.loads(as_object.choices[0].message.content or "") == {"echo": "hello brave new world"}


def test_unknown_fields_are_recorded(client: OpenAI, upstream: Upstream) -> None:
    client.chat.completions.create(
        model="gpt-4o-mini",
        messages=USER,
        extra_body={"x_gateway_probe": {"nested": [1, 2]}},
        extra_headers={"X-Custom-Header": "abc"},
    )
    recorded = upstream.state.last_request
    assert recorded["json"]["x_gateway_probe"] == {"nested": [1, 2]}
    assert recorded["headers"]["x-custom-header"] == "abc"


# ---------------------------------------------------------------------------- embeddings


def test_embeddings_default_base64_and_float(
    client: OpenAI, lenient_client: OpenAI, upstream: Upstream
) -> None:
    default = lenient_client.embeddings.create(model="text-embedding-3-small", input=["alpha", "beta gamma"])
    assert upstream.state.last_request["json"]["encoding_format"] == "base64"
    assert [d.index for d in default.data] == [0, 1]
    assert all(len(d.embedding) == 8 and isinstance(d.embedding[0], float) for d in default.data)
    wire = httpx.post(
        upstream.api_base + "/embeddings",
        json={"model": "m", "input": "alpha", "encoding_format": "base64"},
        headers={"Authorization": f"Bearer {API_KEY}"},
        timeout=TIMEOUT,
    ).json()
    assert base64.b64decode(wire["data"][0]["embedding"]) == struct.pack("<8f", *default.data[0].embedding)
    assert default.usage.prompt_tokens == 3 == default.usage.total_tokens

    floats = client.embeddings.create(
        model="text-embedding-3-small", input=["alpha", "beta gamma"], encoding_format="float"
    )
    assert [d.embedding for d in floats.data] == [d.embedding for d in default.data]
    assert floats.data[0].embedding != floats.data[1].embedding

    sized = lenient_client.embeddings.create(model="text-embedding-3-small", input=[[1, 2, 3]], dimensions=4)
    assert len(sized.data) == 1 and len(sized.data[0].embedding) == 4
    assert sized.usage.prompt_tokens == 3
    single = client.embeddings.create(model="m", input="alpha", encoding_format="float")
    assert single.data[0].embedding == default.data[0].embedding


# ---------------------------------------------------------------------- legacy completions


def test_legacy_completions(client: OpenAI, lenient_client: OpenAI) -> None:
    completion = client.completions.create(model="gpt-3.5-turbo-instruct", prompt="say this")
    assert completion.object == "text_completion"
    assert completion.choices[0].text == "echo: say this"
    assert completion.choices[0].finish_reason == "stop"

    chunks = list(
        lenient_client.completions.create(
            model="gpt-3.5-turbo-instruct",
            prompt="say this",
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert len({c.id for c in chunks}) == 1
    assert "".join(c.choices[0].text for c in chunks if c.choices) == "echo: say this"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert all(c.usage is None for c in chunks[:-1])


# -------------------------------------------------------------- moderations, images, audio


def test_moderations(client: OpenAI) -> None:
    result = client.moderations.create(model="omni-moderation-latest", input=["fine", "also fine"])
    assert result.model == "omni-moderation-latest"
    assert len(result.results) == 2
    first = result.results[0]
    assert first.flagged is False
    assert first.categories.self_harm_intent is False
    assert first.category_applied_input_types.violence == ["text"]


def test_images(client: OpenAI) -> None:
    b64 = client.images.generate(model="dall-e-3", prompt="a cat", response_format="b64_json")
    assert b64.created > 0 and b64.data is not None and b64.data[0].b64_json
    urls = client.images.generate(model="dall-e-3", prompt="a cat", n=2)
    assert urls.data is not None and len(urls.data) == 2 and all(d.url for d in urls.data)


def test_speech(client: OpenAI, upstream: Upstream) -> None:
    response = client.audio.speech.create(model="tts-1", voice="alloy", input="hi there")
    assert response.content == b"ID3FAKEAUDIO:hi there"
    assert response.response.headers["content-type"] == "audio/mpeg"
    assert upstream.state.last_request["json"]["voice"] == "alloy"


def test_transcription(client: OpenAI, upstream: Upstream) -> None:
    audio = b"RIFF" + b"\x00" * 60
    result = client.audio.transcriptions.create(model="whisper-1", file=("clip.wav", audio, "audio/wav"))
    assert result.text == "transcribed 64 bytes"
    recorded = upstream.state.last_request
    assert recorded["form"]["file"] == audio
    assert recorded["form"]["model"] == "whisper-1"
    assert recorded["files"]["file"]["filename"] == "clip.wav"

    text = client.audio.transcriptions.create(
        model="whisper-1", file=("clip.wav", audio, "audio/wav"), response_format="text"
    )
    assert text == "transcribed 64 bytes"


def test_models(client: OpenAI, upstream: Upstream) -> None:
    ids = [m.id for m in client.models.list()]
    assert ids == upstream.state.models
    model = client.models.retrieve("gpt-4o-mini")
    assert model.id == "gpt-4o-mini" and model.object == "model"
    with pytest.raises(openai.NotFoundError) as excinfo:
        client.models.retrieve("no-such-model")
    assert excinfo.value.code == "model_not_found"


# ------------------------------------------------------------------------- failure modes


def test_fail_429(client: OpenAI) -> None:
    with pytest.raises(openai.RateLimitError) as excinfo:
        client.chat.completions.create(model="fail-429", messages=USER)
    err = excinfo.value
    assert err.status_code == 429
    assert err.response.headers["retry-after"] == "2"
    assert err.response.headers["x-ratelimit-remaining-requests"] == "0"
    assert err.code == "rate_limit_exceeded" and err.type == "requests"
    assert err.body == {
        "message": "Rate limit reached for requests",
        "type": "requests",
        "param": None,
        "code": "rate_limit_exceeded",
    }


@pytest.mark.parametrize("model,status", [("fail-500", 500), ("fail-503", 503)])
def test_fail_5xx(client: OpenAI, model: str, status: int) -> None:
    with pytest.raises(openai.InternalServerError) as excinfo:
        client.chat.completions.create(model=model, messages=USER)
    assert excinfo.value.status_code == status
    assert excinfo.value.type == "server_error"


def test_fail_400_and_401(client: OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as bad:
        client.chat.completions.create(model="fail-400", messages=USER)
    assert (bad.value.param, bad.value.code, bad.value.type) == (
        "messages",
        "invalid_value",
        "invalid_request_error",
    )
    with pytest.raises(openai.AuthenticationError) as auth:
        client.embeddings.create(model="fail-401", input="x")
    assert auth.value.code == "invalid_api_key"


def test_valid_keys_and_missing_auth(client: OpenAI, upstream: Upstream) -> None:
    upstream.state.valid_keys.add("sk-other")
    with pytest.raises(openai.AuthenticationError) as excinfo:
        client.chat.completions.create(model="m", messages=USER)
    assert excinfo.value.code == "invalid_api_key"
    upstream.state.valid_keys.add(API_KEY)
    assert client.chat.completions.create(model="m", messages=USER).choices[0].message.content

    response = httpx.post(
        upstream.api_base + "/chat/completions", json={"model": "m", "messages": USER}, timeout=TIMEOUT
    )
    assert response.status_code == 401
    assert set(response.json()["error"]) == {"message", "type", "param", "code"}
    assert upstream.state.last_request["key"] is None


def test_bad_json(client: OpenAI) -> None:
    # The SDK surfaces a truncated JSON body as a decode error (it is not an HTTP error).
    with pytest.raises(json.JSONDecodeError):
        client.chat.completions.create(model="bad-json", messages=USER)


def test_cut_stream_sync(client: OpenAI) -> None:
    received: list[str] = []
    with pytest.raises(openai.APIConnectionError):
        for chunk in client.chat.completions.create(model="cut-stream", messages=USER, stream=True):
            received.append(chunk.choices[0].delta.content or "")
    assert len(received) == 3 and received[0] == ""
    # Non-stream requests with this model answer normally.
    normal = client.chat.completions.create(model="cut-stream", messages=USER)
    assert normal.choices[0].message.content == "echo: hello brave new world"


@pytest.mark.asyncio
async def test_cut_stream_async(upstream: Upstream) -> None:
    async with _async_client(upstream, strict=False) as client:
        stream = await client.completions.create(model="cut-stream", prompt="one two three", stream=True)
        count = 0
        with pytest.raises(openai.APIConnectionError):
            async for _ in stream:
                count += 1
        assert count == 3


def test_slow_first_byte(upstream: Upstream) -> None:
    upstream.state.slow_seconds = 0.6
    with _client(upstream, timeout=0.2) as impatient, pytest.raises(openai.APITimeoutError):
        impatient.chat.completions.create(model="slow-first-byte", messages=USER)
    upstream.state.slow_seconds = 0.2
    with _client(upstream) as patient:
        started = time.monotonic()
        reply = patient.chat.completions.create(model="slow-first-byte", messages=USER)
        assert time.monotonic() - started >= 0.2
    assert reply.choices[0].message.content == "echo: hello brave new world"


def test_slow_stream(client: OpenAI, upstream: Upstream) -> None:
    upstream.state.chunk_delay = 0.05
    started = time.monotonic()
    stamps = []
    for chunk in client.chat.completions.create(model="slow-stream", messages=USER, stream=True):
        stamps.append(time.monotonic() - started)
        assert chunk.id
    assert len(stamps) >= 5
    assert stamps[-1] - stamps[0] >= 0.05 * (len(stamps) - 1) * 0.8


def test_next_responses_hook(client: OpenAI, upstream: Upstream) -> None:
    upstream.state.next_responses.append(
        (
            418,
            {"x-teapot": "yes"},
            b'{"error":{"message":"short and stout","type":"teapot","param":null,"code":null}}',
        )
    )
    with pytest.raises(openai.APIStatusError) as excinfo:
        client.embeddings.create(model="m", input="x")
    assert excinfo.value.status_code == 418
    assert excinfo.value.response.headers["x-teapot"] == "yes"
    assert excinfo.value.message.endswith("short and stout")
    # Queue is consumed: the next request is normal again.
    assert client.embeddings.create(model="m", input="x", encoding_format="float").data
    assert [r["path"] for r in upstream.state.requests] == ["/v1/embeddings", "/v1/embeddings"]
