"""The Gemini upstream: (a) the fake is faithful (driven by the official ``google-genai`` SDK), and
(b) ``GeminiAdapter`` translates canonical requests, answers, streams and errors against it."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any, Literal

import httpx
import pytest
import pytest_asyncio
from google import genai
from google.genai import errors as genai_errors
from google.genai import types
from pydantic import BaseModel, ConfigDict

from omnirelay.canonical.assemble import assemble
from omnirelay.canonical.messages import (
    ImagePart,
    Message,
    TextPart,
    ThinkingPart,
    ToolCallPart,
    ToolResultPart,
)
from omnirelay.canonical.request import ChatRequest, EmbeddingRequest, ResponseFormat, Tool, ToolChoice
from omnirelay.canonical.response import ChatResponse
from omnirelay.errors import BadRequest, UpstreamError
from omnirelay.transport.http import AiohttpClient, Timeouts
from omnirelay.upstream.base import Target
from omnirelay.upstream.gemini import GeminiAdapter
from omnirelay.upstream.gemini.request import build_request
from omnirelay.upstream.gemini.schema import clean_schema
from tests.fakes.gemini_upstream import FakeGeminiState, create_app
from tests.fakes.server import ServerThread

KEY = "gem-key"
MODEL = "gemini-2.5-flash"
PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\0" * 16).decode()
WEATHER = Tool(
    "get_weather",
    "Weather for a city.",
    {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
)
TIME = Tool("get_time", "Local time.", {"type": "object", "properties": {"zone": {"type": "string"}}})
pytestmark = pytest.mark.timeout(30)


@dataclass
class Upstream:
    server: ServerThread
    state: FakeGeminiState

    @property
    def url(self) -> str:
        return self.server.base_url


@pytest.fixture(scope="module")
def _running() -> Iterator[Upstream]:
    state = FakeGeminiState()
    with ServerThread(create_app(state)) as server:
        yield Upstream(server, state)


@pytest.fixture
def fake(_running: Upstream) -> Iterator[Upstream]:
    _running.state.reset()
    yield _running
    _running.state.reset()


@pytest.fixture
def sdk(fake: Upstream) -> genai.Client:
    options = types.HttpOptions(
        base_url=fake.url,
        api_version="v1beta",
        timeout=10_000,
        retry_options=types.HttpRetryOptions(attempts=1),
    )
    return genai.Client(api_key=KEY, http_options=options)


@pytest_asyncio.fixture(loop_scope="function")
async def gem(fake: Upstream) -> AsyncIterator[GeminiAdapter]:
    client = AiohttpClient(Timeouts(connect=2, first_byte=5, idle=5))
    yield GeminiAdapter(Target(name="gem", base_url=fake.url, client=client, secrets=(KEY,)))
    await client.close()


def user(text: str, model: str = MODEL, **kw: Any) -> ChatRequest:
    return ChatRequest(model=model, messages=[Message("user", [TextPart(text)])], **kw)


def sent(fake: Upstream) -> dict[str, Any]:
    body = fake.state.last_request["json"]
    assert isinstance(body, dict)
    return body


async def collect(gem: GeminiAdapter, req: ChatRequest) -> ChatResponse:
    return assemble([event async for event in gem.stream(req, KEY)])


def calls(resp: ChatResponse, choice: int = 0) -> list[ToolCallPart]:
    return [p for p in resp.choices[choice].message.parts if isinstance(p, ToolCallPart)]


# --- (a) the fake, driven by the official SDK ---------------------------------------------------------


def test_sdk_generate_content(sdk: genai.Client, fake: Upstream) -> None:
    config = types.GenerateContentConfig(system_instruction="be brief", candidate_count=2)
    resp = sdk.models.generate_content(model=MODEL, contents="hello brave world", config=config)
    assert resp.text == "echo: hello brave world"
    assert resp.candidates is not None and [c.index for c in resp.candidates] == [0, 1]
    assert resp.candidates[0].finish_reason == types.FinishReason.STOP
    usage = resp.usage_metadata
    assert usage is not None and usage.prompt_token_count == 5 and usage.candidates_token_count == 8
    record = fake.state.last_request
    assert record["path"] == f"/v1beta/models/{MODEL}:generateContent"
    assert record["headers"]["x-goog-api-key"] == KEY


def test_sdk_stream_matches_generate(sdk: genai.Client) -> None:
    chunks = list(sdk.models.generate_content_stream(model=MODEL, contents="one two three four"))
    assert len(chunks) > 2
    assert "".join(c.text or "" for c in chunks) == "echo: one two three four"
    last = chunks[-1]
    assert last.candidates and last.candidates[0].finish_reason == types.FinishReason.STOP
    assert last.usage_metadata is not None and last.usage_metadata.total_token_count == 4 + 5


def test_sdk_function_calling_with_thought_signatures(sdk: genai.Client, fake: Upstream) -> None:
    decl = types.FunctionDeclaration(
        name="get_weather",
        description="Weather for a city.",
        parameters=types.Schema(
            type=types.Type.OBJECT,
            properties={"city": types.Schema(type=types.Type.STRING)},
            required=["city"],
        ),
    )
    config = types.GenerateContentConfig(
        tools=[types.Tool(function_declarations=[decl])],
        thinking_config=types.ThinkingConfig(include_thoughts=True, thinking_budget=1024),
        automatic_function_calling=types.AutomaticFunctionCallingConfig(disable=True),
    )
    history: list[Any] = [types.Content(role="user", parts=[types.Part(text="weather in Paris")])]
    resp = sdk.models.generate_content(model=MODEL, contents=history, config=config)
    assert resp.candidates and resp.candidates[0].content and resp.candidates[0].content.parts
    parts = resp.candidates[0].content.parts
    assert parts[0].thought is True
    assert resp.function_calls and resp.function_calls[0].name == "get_weather"
    assert resp.function_calls[0].args == {"city": "weather in Paris"}
    assert parts[1].thought_signature  # on the functionCall part itself
    reply = types.Part.from_function_response(name="get_weather", response={"sky": "clear"})
    history += [resp.candidates[0].content, types.Content(role="user", parts=[reply])]
    final = sdk.models.generate_content(model=MODEL, contents=history, config=config)
    assert final.text == 'tool said: {"sky":"clear"}'
    # Replaying the call without its signature is refused, like the real API does.
    parts[1].thought_signature = None
    with pytest.raises(genai_errors.ClientError) as info:
        sdk.models.generate_content(model=MODEL, contents=history, config=config)
    assert info.value.code == 400 and "thought_signature" in str(info.value.message)


def test_sdk_embed_count_and_models(sdk: genai.Client, fake: Upstream) -> None:
    config = types.EmbedContentConfig(output_dimensionality=8)
    out = sdk.models.embed_content(model="gemini-embedding-001", contents=["a b", "c"], config=config)
    assert out.embeddings and [len(e.values or []) for e in out.embeddings] == [8, 8]
    assert fake.state.last_request["path"].endswith(":batchEmbedContents")
    assert sdk.models.count_tokens(model=MODEL, contents="one two three").total_tokens == 3
    assert [m.name for m in sdk.models.list()] == [f"models/{m}" for m in fake.state.models]
    blocked = sdk.models.generate_content(model="blocked", contents="bad")
    assert blocked.prompt_feedback and blocked.prompt_feedback.block_reason == types.BlockedReason.SAFETY
    assert not blocked.candidates


@pytest.mark.parametrize(
    ("model", "kind", "code", "status"),
    [
        ("fail-429", genai_errors.ClientError, 429, "RESOURCE_EXHAUSTED"),
        ("fail-400", genai_errors.ClientError, 400, "INVALID_ARGUMENT"),
        ("not-found", genai_errors.ClientError, 404, "NOT_FOUND"),
        ("fail-500", genai_errors.ServerError, 500, "INTERNAL"),
        ("fail-503", genai_errors.ServerError, 503, "UNAVAILABLE"),
    ],
)
def test_sdk_errors(sdk: genai.Client, model: str, kind: type[Exception], code: int, status: str) -> None:
    with pytest.raises(kind) as info:
        sdk.models.generate_content(model=model, contents="x")
    assert isinstance(info.value, genai_errors.APIError)
    assert info.value.code == code and info.value.status == status


def test_sdk_bad_key(sdk: genai.Client, fake: Upstream) -> None:
    fake.state.valid_keys.add("another-key")
    with pytest.raises(genai_errors.ClientError) as info:
        sdk.models.generate_content(model=MODEL, contents="x")
    assert info.value.code == 400 and "API key not valid" in str(info.value.message)


@pytest.mark.parametrize("key", ["additionalProperties", "$schema", "default", "const", "$defs"])
def test_fake_rejects_schema_keys_gemini_rejects(fake: Upstream, key: str) -> None:
    params = {"type": "object", "properties": {"a": {"type": "string"}}, key: {}}
    body = {
        "contents": [{"role": "user", "parts": [{"text": "hi"}]}],
        "tools": [{"functionDeclarations": [{"name": "f", "parameters": params}]}],
    }
    # The colon may arrive URL-encoded, and the key as a query parameter.
    url = f"{fake.url}/v1beta/models/{MODEL}%3AgenerateContent?key={KEY}"
    resp = httpx.post(url, json=body, timeout=5)
    assert resp.status_code == 400
    err = resp.json()["error"]
    assert err["status"] == "INVALID_ARGUMENT" and f'Unknown name "{key}"' in err["message"]


def test_fake_embed_content_and_json_array_stream(fake: Upstream) -> None:
    headers = {"x-goog-api-key": KEY}
    base = f"{fake.url}/v1beta/models"
    one = httpx.post(
        f"{base}/gemini-embedding-001:embedContent",
        headers=headers,
        timeout=5,
        json={"content": {"parts": [{"text": "hello"}]}, "outputDimensionality": 4},
    )
    assert len(one.json()["embedding"]["values"]) == 4
    body = {"contents": [{"parts": [{"text": "a b c"}]}]}
    array = httpx.post(f"{base}/{MODEL}:streamGenerateContent", headers=headers, json=body, timeout=5)
    chunks = array.json()
    assert isinstance(chunks, list) and chunks[-1]["candidates"][0]["finishReason"] == "STOP"
    missing = httpx.post(f"{base}/{MODEL}:generateContent", json=body, timeout=5)
    assert missing.status_code == 403 and missing.json()["error"]["status"] == "PERMISSION_DENIED"


# --- (b) the adapter against the fake -------------------------------------------------------------


async def test_text_system_and_multi_turn(gem: GeminiAdapter, fake: Upstream) -> None:
    req = ChatRequest(
        model=MODEL,
        messages=[
            Message("system", [TextPart("be brief")]),
            Message("user", [TextPart("first question")]),
            Message("assistant", [TextPart("first answer")]),
            Message("user", [TextPart("second")]),
            Message("user", [TextPart("question")]),
        ],
        max_tokens=50,
        temperature=0.2,
        top_p=0.9,
        top_k=20,
        stop=["zzz"],
        seed=7,
        n=1,
    )
    resp = await gem.complete(req, KEY)
    assert resp.choices[0].message.text() == "echo: second question"
    assert resp.choices[0].finish_reason == "stop" and resp.model == MODEL and resp.id
    body = sent(fake)
    assert body["systemInstruction"] == {"parts": [{"text": "be brief"}]}
    assert [c["role"] for c in body["contents"]] == ["user", "model", "user"]
    assert body["contents"][2]["parts"] == [{"text": "second"}, {"text": "question"}]  # merged turn
    assert body["generationConfig"] == {
        "maxOutputTokens": 50,
        "temperature": 0.2,
        "topP": 0.9,
        "topK": 20,
        "seed": 7,
        "stopSequences": ["zzz"],
    }
    assert fake.state.last_request["headers"]["x-goog-api-key"] == KEY
    assert resp.usage is not None and resp.usage.output_tokens == 3


async def test_images(gem: GeminiAdapter, fake: Upstream) -> None:
    req = ChatRequest(model=MODEL, messages=[Message("user", [TextPart("look"), ImagePart(data=PNG)])])
    assert (await gem.complete(req, KEY)).choices[0].message.text() == "echo: look [images: 1]"
    assert sent(fake)["contents"][0]["parts"][1] == {"inlineData": {"mimeType": "image/png", "data": PNG}}
    req.messages[0].parts[1] = ImagePart(url="gs://bucket/cat.jpg")
    await gem.complete(req, KEY)
    assert sent(fake)["contents"][0]["parts"][1] == {
        "fileData": {"fileUri": "gs://bucket/cat.jpg", "mimeType": "image/jpeg"}
    }
    req.messages[0].parts[1] = ImagePart(url="https://example.com/cat.png")
    with pytest.raises(BadRequest, match="inline"):
        await gem.complete(req, KEY)

    async def fetch(url: str) -> tuple[bytes, str]:
        return b"GIF89a-bytes", "image/gif"

    gem.fetch_image = fetch
    await gem.complete(req, KEY)
    inline = sent(fake)["contents"][0]["parts"][1]["inlineData"]
    assert inline["mimeType"] == "image/gif" and base64.b64decode(inline["data"]) == b"GIF89a-bytes"


@pytest.mark.parametrize(
    ("choice", "config", "names"),
    [
        (None, None, ["get_weather", "get_time"]),
        (ToolChoice("auto"), {"mode": "AUTO"}, ["get_weather", "get_time"]),
        (ToolChoice("none"), {"mode": "NONE"}, []),
        (ToolChoice("required"), {"mode": "ANY"}, ["get_weather", "get_time"]),
        (ToolChoice("tool", "get_time"), {"mode": "ANY", "allowedFunctionNames": ["get_time"]}, ["get_time"]),
    ],
)
async def test_tools_and_tool_choice(
    gem: GeminiAdapter, fake: Upstream, choice: ToolChoice | None, config: Any, names: list[str]
) -> None:
    resp = await gem.complete(user("weather in Paris", tools=[WEATHER, TIME], tool_choice=choice), KEY)
    body = sent(fake)
    assert [d["name"] for d in body["tools"][0]["functionDeclarations"]] == ["get_weather", "get_time"]
    assert body.get("toolConfig") == (None if config is None else {"functionCallingConfig": config})
    found = calls(resp)
    assert [c.name for c in found] == names
    assert resp.choices[0].finish_reason == ("tool_calls" if names else "stop")
    ids = [c.id for c in found]
    assert len(set(ids)) == len(ids) and all(i.startswith("call_") and len(i) > 10 for i in ids)


async def test_tool_result_round_trip(gem: GeminiAdapter, fake: Upstream) -> None:
    req = user("weather in Paris", tools=[WEATHER, TIME])
    first = await gem.complete(req, KEY)
    weather, clock = calls(first)
    assert json.loads(weather.arguments) == {"city": "weather in Paris"}
    req.messages += [
        first.choices[0].message,
        Message("tool", [ToolResultPart(weather.id, [TextPart('{"sky": "clear"}')])]),
        Message("tool", [ToolResultPart(clock.id, [TextPart("noon")])]),
    ]
    final = await gem.complete(req, KEY)
    assert final.choices[0].message.text() == 'tool said: {"sky":"clear"} {"result":"noon"}'
    turn = sent(fake)["contents"][-1]
    assert turn["role"] == "user"
    assert [p["functionResponse"]["name"] for p in turn["parts"]] == ["get_weather", "get_time"]
    assert all("id" not in p["functionResponse"] for p in turn["parts"])  # Gemini issued none


async def test_thought_signature_round_trip(gem: GeminiAdapter, fake: Upstream) -> None:
    req = user("weather in Paris", tools=[WEATHER], reasoning_effort="low")
    streamed = await collect(gem, req)
    assert sent(fake)["generationConfig"]["thinkingConfig"] == {
        "thinkingBudget": 1024,
        "includeThoughts": True,
    }
    thinking, call = streamed.choices[0].message.parts
    assert isinstance(thinking, ThinkingPart) and thinking.text == "Thinking about: weather in Paris"
    assert isinstance(call, ToolCallPart) and call.provider_details
    signature = call.provider_details["gemini"]["thoughtSignature"]
    assert signature in fake.state.issued_signatures
    req.messages += [
        streamed.choices[0].message,
        Message("tool", [ToolResultPart(call.id, [TextPart("sun")])]),
    ]
    final = await gem.complete(req, KEY)
    assert final.choices[0].message.text() == 'tool said: {"result":"sun"}'
    model_turn = sent(fake)["contents"][1]
    assert model_turn["parts"][0] == {"text": thinking.text, "thought": True}
    assert model_turn["parts"][1]["thoughtSignature"] == signature  # on the functionCall part itself
    call.provider_details = None  # a client that lost the signature: the upstream refuses the replay
    with pytest.raises(UpstreamError) as info:
        await gem.complete(req, KEY)
    assert info.value.status == 400 and not info.value.retryable


async def test_gemini_ids_signatures_and_finish_reasons(gem: GeminiAdapter, fake: Upstream) -> None:
    def cand(index: int, reason: str, *parts: dict[str, Any]) -> dict[str, Any]:
        return {"index": index, "finishReason": reason, "content": {"role": "model", "parts": list(parts)}}

    parts: list[dict[str, Any]] = [
        {"text": "plan ", "thought": True},
        {"text": "more", "thought": True, "thoughtSignature": "c2lnLXQ="},
        {"text": "ok", "thoughtSignature": "dGV4dA=="},  # no canonical home: dropped
        {"functionCall": {"id": "fc-1", "name": "get_time", "args": {}}, "thoughtSignature": "c2ln"},
    ]
    usage = {"promptTokenCount": 10, "candidatesTokenCount": 2, "toolUsePromptTokenCount": 3}
    answer: dict[str, Any] = {"usageMetadata": usage}
    answer["candidates"] = [cand(0, "STOP", *parts), cand(1, "SAFETY"), cand(2, "MALFORMED_FUNCTION_CALL")]
    fake.state.next_responses.append((200, {}, json.dumps(answer).encode()))
    resp = await gem.complete(user("t", tools=[TIME]), KEY)
    assert [c.finish_reason for c in resp.choices] == ["tool_calls", "content_filter", "error"]
    first, second, text, call = resp.choices[0].message.parts
    assert isinstance(first, ThinkingPart) and first.provider_details == {"gemini": {}}
    assert isinstance(second, ThinkingPart) and second.text == "more"
    assert text == TextPart("ok")
    assert isinstance(call, ToolCallPart) and call.id == "fc-1"
    assert call.provider_details == {"gemini": {"id": "fc-1", "thoughtSignature": "c2ln"}}
    assert resp.usage is not None and resp.usage.input_tokens == 13
    replay = user("t", tools=[TIME])
    replay.messages += [
        resp.choices[0].message,
        Message("tool", [ToolResultPart("fc-1", [TextPart("1")], True)]),
    ]
    model_turn, results = (await build_request(replay))["contents"][1:]
    assert model_turn["parts"][1] == {"text": "more", "thought": True, "thoughtSignature": "c2lnLXQ="}
    assert model_turn["parts"][3] == {
        "functionCall": {"name": "get_time", "args": {}, "id": "fc-1"},
        "thoughtSignature": "c2ln",
    }
    assert results["parts"] == [
        {"functionResponse": {"name": "get_time", "response": {"error": "1"}, "id": "fc-1"}}
    ]


class Address(BaseModel):
    street: str
    city: str = "Paris"


class Order(BaseModel):
    model_config = ConfigDict(extra="forbid")
    item: Literal["book"]
    quantity: int = 1
    address: Address
    note: str | None = None
    tags: dict[str, str] = {}


async def test_schema_cleaning(gem: GeminiAdapter, fake: Upstream) -> None:
    schema = {"$schema": "https://json-schema.org/draft/2020-12/schema", **Order.model_json_schema()}
    resp = await gem.complete(user("order", tools=[Tool("place_order", "Order.", schema, strict=True)]), KEY)
    args = json.loads(calls(resp)[0].arguments)
    assert args["item"] == "book" and args["address"] == {"street": "order", "city": "order"}
    params = sent(fake)["tools"][0]["functionDeclarations"][0]["parameters"]
    text = json.dumps(params)
    for key in ("additionalProperties", "$schema", "$defs", "$ref", "default", "const"):
        assert key not in text
    assert params["properties"]["item"]["enum"] == ["book"]
    assert params["properties"]["note"] == {"title": "Note", "type": "string", "nullable": True}
    assert clean_schema({"type": ["integer", "null"], "enum": [1, 2]}) == {
        "type": "integer",
        "nullable": True,
        "description": "one of: 1, 2",
    }
    loop = {
        "$defs": {"N": {"type": "object", "properties": {"next": {"$ref": "#/$defs/N"}}}},
        "$ref": "#/$defs/N",
    }
    assert clean_schema(loop) == {"type": "object", "properties": {"next": {"type": "object"}}}


async def test_json_schema_output(gem: GeminiAdapter, fake: Upstream) -> None:
    schema = {"type": "object", "properties": {"answer": {"type": "string"}}, "additionalProperties": False}
    fmt = ResponseFormat("json_schema", "out", schema, strict=True)
    resp = await gem.complete(user("hi", response_format=fmt), KEY)
    assert json.loads(resp.choices[0].message.text()) == {"answer": "hi"}
    config = sent(fake)["generationConfig"]
    assert config == {"responseMimeType": "application/json", "responseJsonSchema": schema}
    # A model that predates responseJsonSchema is asked again with a cleaned responseSchema.
    resp = await gem.complete(user("hi", model="legacy-schema", response_format=fmt), KEY)
    assert json.loads(resp.choices[0].message.text()) == {"answer": "hi"}
    assert sent(fake)["generationConfig"]["responseSchema"] == {
        "type": "object",
        "properties": {"answer": {"type": "string"}},
    }
    resp = await gem.complete(user("hi", response_format=ResponseFormat("json_object")), KEY)
    assert json.loads(resp.choices[0].message.text()) == {"echo": "hi"}


async def test_stream_equals_complete(gem: GeminiAdapter) -> None:
    for req in (user("one two three four five", n=2), user("weather", tools=[WEATHER, TIME])):
        whole, streamed = await gem.complete(req, KEY), await collect(gem, req)
        assert streamed.usage == whole.usage and streamed.id
        assert len(streamed.choices) == len(whole.choices) == req.n
        for a, b in zip(whole.choices, streamed.choices, strict=True):
            assert a.finish_reason == b.finish_reason
            assert a.message.text() == b.message.text()
            assert [(c.name, c.arguments) for c in calls(whole, a.index)] == [
                (c.name, c.arguments) for c in calls(streamed, b.index)
            ]


async def test_stream_events_shape(gem: GeminiAdapter) -> None:
    events = [e async for e in gem.stream(user("a b c", tools=[WEATHER, TIME], reasoning_budget=512), KEY)]
    kinds = [(type(e).__name__, getattr(e, "index", None)) for e in events]
    assert kinds[0] == ("StreamStart", None) and kinds[-1] == ("UsageEvent", None)
    starts = [e for e in events if type(e).__name__ == "BlockStart"]
    assert [s.index for s in starts] == [0, 1, 2]  # contiguous: thinking, call, call
    assert [s.kind for s in starts] == ["thinking", "tool_call", "tool_call"]


@pytest.mark.parametrize("stream", [False, True])
async def test_finish_reasons_and_usage(gem: GeminiAdapter, stream: bool) -> None:
    async def run(req: ChatRequest) -> ChatResponse:
        return await (collect(gem, req) if stream else gem.complete(req, KEY))

    cut = await run(user("one two three four", model="max-tokens"))
    assert cut.choices[0].finish_reason == "length" and cut.choices[0].message.text() == "echo: one"
    blocked = await run(user("bad", model="blocked"))
    assert [(c.index, c.finish_reason, c.message.parts) for c in blocked.choices] == [
        (0, "content_filter", [])
    ]
    cached = await run(user("hi", model="cache-hit"))
    assert cached.usage is not None
    assert (cached.usage.input_tokens, cached.usage.cached_input_tokens) == (1000, 900)
    thought = await run(user("hi there", reasoning_effort="high"))
    assert thought.usage is not None and thought.usage.reasoning_tokens == 5
    assert thought.usage.output_tokens == 3 + 5  # candidates + thoughts


@pytest.mark.parametrize(
    ("effort", "budget", "expected"),
    [
        ("none", None, {"thinkingBudget": 0}),
        ("minimal", None, {"thinkingBudget": 1024, "includeThoughts": True}),
        ("medium", None, {"thinkingBudget": 8192, "includeThoughts": True}),
        ("xhigh", None, {"thinkingBudget": 32768, "includeThoughts": True}),
        ("low", 2000, {"thinkingBudget": 2000, "includeThoughts": True}),
        (None, None, None),
    ],
)
async def test_thinking_config(effort: str | None, budget: int | None, expected: Any) -> None:
    body = await build_request(user("x", reasoning_effort=effort, reasoning_budget=budget))
    assert body.get("generationConfig", {}).get("thinkingConfig") == expected


async def test_embeddings(gem: GeminiAdapter, fake: Upstream) -> None:
    one = await gem.embed(EmbeddingRequest("gemini-embedding-001", ["hello world"], dimensions=8), KEY)
    assert len(one.vectors) == 1 and len(one.vectors[0]) == 8
    assert one.usage.input_tokens == 2 and one.usage.estimated
    record = fake.state.last_request
    assert record["path"].endswith("gemini-embedding-001:embedContent")
    assert record["json"]["outputDimensionality"] == 8
    many = await gem.embed(EmbeddingRequest("embedding-with-usage", ["a", "b c", "d"]), KEY)
    assert [len(v) for v in many.vectors] == [768] * 3
    assert many.usage.input_tokens == 4 and not many.usage.estimated
    items = fake.state.last_request["json"]["requests"]
    assert [i["model"] for i in items] == ["models/embedding-with-usage"] * 3
    again = await gem.embed(EmbeddingRequest("gemini-embedding-001", ["b c"]), KEY)
    assert again.vectors[0] == many.vectors[1]  # deterministic, batch and single alike


@pytest.mark.parametrize(
    ("model", "status", "retryable", "headers"),
    [
        ("fail-429", 429, True, {"retry-after": "7"}),
        ("fail-500", 502, True, {}),
        ("fail-503", 503, True, {}),
        ("fail-400", 400, False, {}),
        ("not-found", 404, False, {}),
    ],
)
@pytest.mark.parametrize("stream", [False, True])
async def test_error_mapping(
    gem: GeminiAdapter, model: str, status: int, retryable: bool, headers: dict[str, str], stream: bool
) -> None:
    with pytest.raises(UpstreamError) as info:
        await (collect(gem, user("x", model=model)) if stream else gem.complete(user("x", model=model), KEY))
    err = info.value
    assert (err.status, err.retryable, err.headers, err.provider) == (status, retryable, headers, "gem")


async def test_credentials_and_scrubbing(gem: GeminiAdapter, fake: Upstream) -> None:
    fake.state.valid_keys.add("other")
    with pytest.raises(UpstreamError, match="refused the gateway's credentials") as info:
        await gem.complete(user("x"), KEY)
    assert info.value.status == 401 and info.value.upstream_status == 400
    with pytest.raises(UpstreamError) as info:
        await gem.complete(user("x"), None)
    assert info.value.status == 403
    fake.state.valid_keys.clear()
    leak = {"error": {"code": 400, "message": f"bad key {KEY}", "status": "INVALID_ARGUMENT"}}
    fake.state.next_responses.append((400, {}, json.dumps(leak).encode()))
    with pytest.raises(UpstreamError) as info:
        await gem.complete(user("x"), KEY)
    assert KEY not in info.value.message and "***" in info.value.message
    mid = (
        b'data: {"candidates":[{"content":{"parts":[{"text":"hi"}]},"index":0}]}\r\n\r\n'
        + json.dumps({"error": {"code": 503, "message": "overloaded", "status": "UNAVAILABLE"}}).encode()
    )
    fake.state.next_responses.append((200, {"content-type": "text/event-stream"}, mid))
    with pytest.raises(UpstreamError) as info:
        await collect(gem, user("x"))
    assert info.value.status == 503


async def test_cut_stream_raises(gem: GeminiAdapter) -> None:
    seen: list[Any] = []
    with pytest.raises(UpstreamError) as info:
        async for event in gem.stream(user("one two three four", model="cut-stream"), KEY):
            seen.append(event)
    assert any(type(e).__name__ == "BlockDelta" for e in seen)
    assert info.value.provider == "gem"


async def test_connection_refused_is_retryable() -> None:
    client = AiohttpClient(Timeouts(connect=2, first_byte=2, idle=2))
    adapter = GeminiAdapter(Target(name="down", base_url="http://127.0.0.1:9", client=client))
    try:
        with pytest.raises(UpstreamError) as info:
            await adapter.complete(user("x"), KEY)
    finally:
        await client.close()
    assert info.value.retryable and info.value.status == 502
