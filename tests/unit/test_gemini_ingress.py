"""The Gemini ingress codec, checked against the google-genai SDK itself.

Request bodies are produced by the SDK (its own converters, or captured from a real client call on a
mock HTTP transport), and every answer the codec writes is parsed back by the SDK.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import orjson
import pytest
from google import genai
from google.genai import _common, chats, errors, models
from google.genai import types as gt
from google.genai._api_client import BaseApiClient

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
from omnirelay.canonical.request import ChatRequest, ResponseFormat, ToolChoice
from omnirelay.canonical.response import ChatResponse, Choice, EmbeddingResponse
from omnirelay.canonical.stream import (
    BlockDelta,
    BlockStart,
    BlockStop,
    Finish,
    StreamError,
    StreamEvent,
    StreamStart,
    UsageEvent,
)
from omnirelay.canonical.usage import Usage
from omnirelay.errors import (
    AuthenticationFailed,
    BadRequest,
    GatewayError,
    NotFound,
    PayloadTooLarge,
    PermissionDenied,
    UpstreamError,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from omnirelay.ingress.base import Ingress
from omnirelay.ingress.gemini import GeminiIngress, decode_batch_embed, decode_embed, json_schema

GEMINI = GeminiIngress()
_PROTOCOL_CHECK: Ingress = GEMINI  # mypy: the codec satisfies the Ingress protocol
MODEL = "gemini-2.5-flash"


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


SIG1, SIG2, SIG3, SIG4 = (b64(f"signature-{i}".encode()) for i in range(1, 5))
PNG = b64(b"\x89PNG\r\n\x1a\n")


def gemini(sig: str) -> dict[str, Any]:
    return {"gemini": {"thoughtSignature": sig}}


def sdk_body(contents: Any, config: gt.GenerateContentConfig | None = None) -> dict[str, Any]:
    """The JSON body the SDK sends for generate_content, built with its own converters."""
    client = BaseApiClient(api_key="test")
    params = gt._GenerateContentParameters(model=MODEL, contents=contents, config=config)
    body = models._GenerateContentParameters_to_mldev(client, params)
    body = _common.encode_unserializable_types(_common.convert_to_dict(body))
    body.pop("_url", None)
    assert isinstance(body, dict)
    return orjson.loads(orjson.dumps(body))  # type: ignore[no-any-return]


def decode(body: dict[str, Any]) -> ChatRequest:
    return GEMINI.decode({**body, "model": MODEL})


def only(messages: list[Message], role: str) -> list[Message]:
    return [m for m in messages if m.role == role]


# --- decoding -----------------------------------------------------------------------------------


def test_decode_every_part_kind_from_sdk_body() -> None:
    contents = [
        gt.Content(
            role="user",
            parts=[
                gt.Part(text="Look at these."),
                gt.Part.from_bytes(data=b"\x89PNG\r\n\x1a\n", mime_type="image/png"),
                gt.Part.from_bytes(data=b"RIFF", mime_type="audio/wav"),
                gt.Part.from_bytes(data=b"MP3", mime_type="audio/mpeg"),
                gt.Part.from_bytes(data=b"%PDF", mime_type="application/pdf"),
                gt.Part.from_uri(file_uri="https://example.test/files/cat", mime_type="image/jpeg"),
                gt.Part.from_uri(file_uri="https://example.test/files/doc", mime_type="application/pdf"),
            ],
        ),
        gt.Content(
            role="model",
            parts=[
                gt.Part(text="Thinking it over", thought=True, thought_signature=b"signature-1"),
                gt.Part(text="I will check.", thought_signature=b"signature-3"),
                gt.Part(
                    function_call=gt.FunctionCall(name="lookup", args={"q": "cat"}),
                    thought_signature=b"signature-2",
                ),
            ],
        ),
        gt.Content(
            role="user",
            parts=[
                gt.Part.from_function_response(name="lookup", response={"output": "a cat"}),
                gt.Part(text="And now?"),
            ],
        ),
    ]
    req = decode(sdk_body(contents, gt.GenerateContentConfig(system_instruction="Be brief.")))
    assert req.model == MODEL and req.include_usage and not req.stream
    system, user, assistant, tool, user2 = req.messages
    assert system == Message("system", [TextPart("Be brief.")])
    assert user.role == "user"
    assert user.parts == [
        TextPart("Look at these."),
        ImagePart(data=PNG, media_type="image/png"),
        AudioPart(data=b64(b"RIFF"), format="wav"),
        AudioPart(data=b64(b"MP3"), format="mp3"),
        FilePart(data=b64(b"%PDF"), media_type="application/pdf"),
        ImagePart(url="https://example.test/files/cat", media_type="image/jpeg"),
        FilePart(media_type="application/pdf", file_id="https://example.test/files/doc"),
    ]
    assert assistant.role == "assistant"
    thinking, sig_holder, text, call = assistant.parts
    assert thinking == ThinkingPart("Thinking it over", provider_details=gemini(SIG1))
    assert sig_holder == ThinkingPart("", redacted=True, provider_details=gemini(SIG3))
    assert text == TextPart("I will check.")
    assert isinstance(call, ToolCallPart) and call.name == "lookup"
    assert orjson.loads(call.arguments) == {"q": "cat"} and call.provider_details == gemini(SIG2)
    assert call.id.startswith("call_") and len(call.id) == 29
    assert tool.role == "tool"
    (result,) = tool.parts
    assert isinstance(result, ToolResultPart) and result.tool_call_id == call.id and not result.is_error
    assert [orjson.loads(p.text) for p in result.content if isinstance(p, TextPart)] == [{"output": "a cat"}]
    assert user2 == Message("user", [TextPart("And now?")])


def test_decode_accepts_camel_case_by_hand() -> None:
    body = {
        "systemInstruction": {"parts": [{"text": "One."}, {"text": "Two."}]},
        "contents": [
            {"parts": [{"inlineData": {"mimeType": "image/webp", "data": PNG}}]},
            {"role": "model", "parts": [{"functionCall": {"name": "f", "args": {}, "id": "fc-1"}}]},
            {
                "role": "user",
                "parts": [{"functionResponse": {"name": "f", "id": "fc-1", "response": {"error": "boom"}}}],
            },
        ],
        "safetySettings": [{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_NONE"}],
        "cachedContent": "cachedContents/abc",
        "labels": {"team": "x"},
    }
    req = decode(body)
    assert req.messages[0] == Message("system", [TextPart("One."), TextPart("Two.")])
    assert req.messages[1].parts == [ImagePart(data=PNG, media_type="image/webp")]
    call = req.messages[2].parts[0]
    assert isinstance(call, ToolCallPart) and call.id == "fc-1" and call.arguments == "{}"
    result = req.messages[3].parts[0]
    assert isinstance(result, ToolResultPart) and result.tool_call_id == "fc-1" and result.is_error
    assert req.extra == {"labels": {"team": "x"}}  # safetySettings and cachedContent are ignored


def _calls(msg: Message) -> list[ToolCallPart]:
    return [p for p in msg.parts if isinstance(p, ToolCallPart)]


def _results(messages: list[Message]) -> list[ToolResultPart]:
    return [p for m in messages for p in m.parts if isinstance(p, ToolResultPart)]


def test_ids_without_ids_match_by_name_in_call_order() -> None:
    call = gt.Part.from_function_call
    answer = gt.Part.from_function_response
    contents = [
        gt.Content(role="user", parts=[gt.Part(text="weather in Paris and Rome, and the time")]),
        gt.Content(
            role="model",
            parts=[
                call(name="weather", args={"city": "Paris"}),
                call(name="weather", args={"city": "Rome"}),
                call(name="clock", args={}),
            ],
        ),
        gt.Content(
            role="user",
            parts=[
                answer(name="clock", response={"output": "noon"}),
                answer(name="weather", response={"output": "sunny"}),
                answer(name="weather", response={"output": "rain"}),
            ],
        ),
        gt.Content(role="model", parts=[call(name="weather", args={"city": "Oslo"})]),
        gt.Content(role="user", parts=[answer(name="weather", response={"output": "snow"})]),
    ]
    req = decode(sdk_body(contents))
    assistants = only(req.messages, "assistant")
    paris, rome, clock = _calls(assistants[0])
    (oslo,) = _calls(assistants[1])
    ids = [paris.id, rome.id, clock.id, oslo.id]
    assert len(set(ids)) == 4 and all(i.startswith("call_") for i in ids)
    results = _results(req.messages)
    assert [r.tool_call_id for r in results] == [clock.id, paris.id, rome.id, oslo.id]
    assert results[2].content == [TextPart('{"output":"rain"}')]


def test_ids_given_match_by_id_and_unknown_ones_are_kept() -> None:
    body = {
        "contents": [
            {"role": "user", "parts": [{"text": "go"}]},
            {
                "role": "model",
                "parts": [
                    {"functionCall": {"id": "a", "name": "f", "args": {"n": 1}}},
                    {"functionCall": {"id": "b", "name": "f", "args": {"n": 2}}},
                    {"functionCall": {"name": "g", "args": {}}},
                ],
            },
            {
                "role": "user",
                "parts": [
                    {"functionResponse": {"id": "b", "name": "f", "response": {"output": 2}}},
                    {"functionResponse": {"id": "a", "name": "f", "response": {"output": 1}}},
                    # The client never saw an id for g's call: matched by name despite its own id.
                    {"functionResponse": {"id": "client-made", "name": "g", "response": {}}},
                    {"functionResponse": {"id": "stray", "name": "h", "response": {}}},
                    {"functionResponse": {"name": "h", "response": {}}},
                ],
            },
        ]
    }
    req = decode(body)
    a, b, g = _calls(only(req.messages, "assistant")[0])
    assert (a.id, b.id) == ("a", "b")
    results = [r.tool_call_id for r in _results(req.messages)]
    assert results[:4] == ["b", "a", g.id, "stray"]
    assert results[4].startswith("call_") and results[4] not in (a.id, b.id, g.id)


def test_encode_emits_the_ids_a_client_echoes_back() -> None:
    body = {
        "contents": [
            {"role": "user", "parts": [{"text": "go"}]},
            {"role": "model", "parts": [{"functionCall": {"name": "f", "args": {}}}]},
        ]
    }
    req = decode(body)
    (call,) = _calls(req.messages[1])
    resp = ChatResponse("r", MODEL, 0, [Choice(0, req.messages[1], "tool_calls")])
    out = orjson.loads(GEMINI.encode_response(resp, req))
    echoed = out["candidates"][0]["content"]["parts"][0]["functionCall"]
    assert echoed["id"] == call.id
    replayed = {"role": "model", "parts": out["candidates"][0]["content"]["parts"]}
    follow_up = {
        "contents": [
            body["contents"][0],
            replayed,
            {
                "role": "user",
                "parts": [{"functionResponse": {"id": echoed["id"], "name": "f", "response": {}}}],
            },
        ]
    }
    again = decode(follow_up)
    assert _calls(again.messages[1])[0].id == _results(again.messages)[0].tool_call_id == echoed["id"]


def test_signatures_round_trip_through_provider_details() -> None:
    model_turn = {
        "role": "model",
        "parts": [
            {"text": "pondering", "thought": True, "thoughtSignature": SIG1},
            {"text": "Here goes.", "thoughtSignature": SIG3},
            {"functionCall": {"id": "c1", "name": "f", "args": {"x": [1, 2]}}, "thoughtSignature": SIG2},
            {"functionCall": {"id": "c2", "name": "f", "args": {"x": []}}},
            {"text": "", "thoughtSignature": SIG4},
        ],
    }
    req = decode({"contents": [{"role": "user", "parts": [{"text": "hi"}]}, model_turn]})
    assistant = req.messages[1]
    assert [p.provider_details for p in assistant.parts if not isinstance(p, TextPart)] == [
        gemini(SIG1),
        gemini(SIG3),
        gemini(SIG2),
        None,
        gemini(SIG4),
    ]
    req.include_reasoning = True
    resp = ChatResponse("r", MODEL, 0, [Choice(0, assistant, "tool_calls")])
    out = orjson.loads(GEMINI.encode_response(resp, req))
    assert out["candidates"][0]["content"]["parts"] == model_turn["parts"]
    parsed = gt.GenerateContentResponse.model_validate(out)
    sdk_parts = parsed.candidates[0].content.parts  # type: ignore[index, union-attr]
    assert [p.thought_signature for p in sdk_parts] == [  # type: ignore[union-attr]
        b"signature-1",
        b"signature-3",
        b"signature-2",
        None,
        b"signature-4",
    ]


@pytest.mark.parametrize(
    ("config", "choice", "tool_names"),
    [
        ({"mode": "AUTO"}, ToolChoice("auto"), ["a", "b", "c"]),
        ({"mode": "NONE"}, ToolChoice("none"), ["a", "b", "c"]),
        ({"mode": "ANY"}, ToolChoice("required"), ["a", "b", "c"]),
        ({"mode": "ANY", "allowedFunctionNames": ["b"]}, ToolChoice("tool", "b"), ["b"]),
        ({"mode": "ANY", "allowed_function_names": ["a", "c"]}, ToolChoice("required"), ["a", "c"]),
        ({"mode": "VALIDATED"}, ToolChoice("auto"), ["a", "b", "c"]),
        ({"mode": "MODE_UNSPECIFIED"}, None, ["a", "b", "c"]),
    ],
)
def test_tool_config_modes(config: dict[str, Any], choice: ToolChoice | None, tool_names: list[str]) -> None:
    decls = [{"name": n, "parameters": {"type": "OBJECT"}} for n in "abc"]
    body = {
        "contents": [{"parts": [{"text": "x"}]}],
        "tools": [{"functionDeclarations": decls}],
        "toolConfig": {"functionCallingConfig": config},
    }
    req = decode(body)
    assert req.tool_choice == choice
    assert [t.name for t in req.tools] == tool_names


def test_tools_from_sdk_with_schema_conversion() -> None:
    def get_weather(city: str, days: int = 1) -> str:
        """Weather for a city."""
        return ""

    schema = gt.Schema(
        type=gt.Type.OBJECT,
        properties={
            "q": gt.Schema(type=gt.Type.STRING, nullable=True, description="query"),
            "tags": gt.Schema(type=gt.Type.ARRAY, items=gt.Schema(type=gt.Type.STRING), max_items=3),
        },
        required=["q"],
        property_ordering=["q", "tags"],
    )
    config = gt.GenerateContentConfig(
        tools=[
            get_weather,
            gt.Tool(function_declarations=[gt.FunctionDeclaration(name="search", parameters=schema)]),
        ],
        automatic_function_calling=gt.AutomaticFunctionCallingConfig(disable=True),
        tool_config=gt.ToolConfig(
            function_calling_config=gt.FunctionCallingConfig(mode=gt.FunctionCallingConfigMode.ANY)
        ),
    )
    req = decode(sdk_body("hi", config))
    weather, search = req.tools
    assert weather.name == "get_weather" and weather.description == "Weather for a city."
    assert weather.parameters is not None and weather.parameters["properties"]["city"] == {"type": "string"}
    assert search.parameters == {
        "type": "object",
        "properties": {
            "q": {"type": ["string", "null"], "description": "query"},
            "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 3},
        },
        "required": ["q"],
    }
    assert req.tool_choice == ToolChoice("required")


@pytest.mark.parametrize(
    "tool",
    [
        {"googleSearch": {}},
        {"codeExecution": {}},
        {"url_context": {}},
        {"functionDeclarations": [{"name": "f"}], "googleMaps": {}},
    ],
)
def test_unsupported_tools_are_rejected(tool: dict[str, Any]) -> None:
    with pytest.raises(BadRequest, match="can only be used with a Gemini model") as info:
        decode({"contents": [{"parts": [{"text": "x"}]}], "tools": [tool]})
    assert info.value.status == 400


def test_sdk_built_in_tools_are_rejected() -> None:
    config = gt.GenerateContentConfig(tools=[gt.Tool(google_search=gt.GoogleSearch())])
    with pytest.raises(BadRequest, match="googleSearch"):
        decode(sdk_body("hi", config))


def test_generation_config_mapping_from_sdk() -> None:
    config = gt.GenerateContentConfig(
        max_output_tokens=256,
        temperature=0.3,
        top_p=0.9,
        top_k=40,
        stop_sequences=["END"],
        candidate_count=2,
        seed=7,
        presence_penalty=0.5,
        frequency_penalty=-0.5,
        response_logprobs=True,
        logprobs=3,
        response_mime_type="application/json",
        response_json_schema={"type": "object", "additionalProperties": False},
        thinking_config=gt.ThinkingConfig(thinking_budget=2048, include_thoughts=True),
        media_resolution=gt.MediaResolution.MEDIA_RESOLUTION_LOW,
    )
    req = decode(sdk_body("hi", config))
    assert (req.max_tokens, req.temperature, req.top_p, req.top_k) == (256, 0.3, 0.9, 40)
    assert (req.stop, req.n, req.seed) == (["END"], 2, 7)
    assert (req.presence_penalty, req.frequency_penalty) == (0.5, -0.5)
    assert req.logprobs and req.top_logprobs == 3
    assert req.response_format == ResponseFormat(
        "json_schema", "response", {"type": "object", "additionalProperties": False}
    )
    assert (req.reasoning_budget, req.reasoning_effort, req.include_reasoning) == (2048, None, True)
    assert req.extra == {"generationConfig": {"mediaResolution": "MEDIA_RESOLUTION_LOW"}}


@pytest.mark.parametrize(
    ("thinking", "expected"),
    [
        ({"thinkingBudget": 0}, ("none", None, False)),
        ({"thinkingBudget": -1, "includeThoughts": True}, (None, None, True)),
        ({"thinking_level": "LOW"}, ("low", None, False)),
        ({"thinkingLevel": "high", "includeThoughts": False}, ("high", None, False)),
        ({}, (None, None, False)),
    ],
)
def test_thinking_config(thinking: dict[str, Any], expected: tuple[Any, ...]) -> None:
    req = decode({"contents": [{"parts": [{"text": "x"}]}], "generationConfig": {"thinkingConfig": thinking}})
    assert (req.reasoning_effort, req.reasoning_budget, req.include_reasoning) == expected


def test_response_formats() -> None:
    def fmt(config: dict[str, Any]) -> ResponseFormat | None:
        return decode({"contents": [{"parts": [{"text": "x"}]}], "generationConfig": config}).response_format

    assert fmt({"responseMimeType": "application/json"}) == ResponseFormat("json_object")
    assert fmt({"responseMimeType": "text/plain"}) is None
    schema = {"type": "OBJECT", "properties": {"a": {"type": "INTEGER"}}, "propertyOrdering": ["a"]}
    assert fmt({"responseMimeType": "application/json", "responseSchema": schema}) == ResponseFormat(
        "json_schema", "response", {"type": "object", "properties": {"a": {"type": "integer"}}}
    )


def test_json_schema_conversion_details() -> None:
    assert json_schema(
        {"any_of": [{"type": "STRING"}, {"type": "NUMBER"}], "nullable": True, "example": 1, "min_length": 2}
    ) == {
        "anyOf": [{"type": "string"}, {"type": "number"}, {"type": "null"}],
        "examples": [1],
        "minLength": 2,
    }


@pytest.mark.parametrize(
    ("body", "match"),
    [
        ({}, "contents"),
        ({"contents": []}, "contents"),
        ({"contents": [{"role": "user", "parts": []}]}, "parts"),
        ({"contents": [{"role": "system", "parts": [{"text": "x"}]}]}, "role"),
        ({"contents": [{"parts": [{"functionCall": {"name": "f"}}]}]}, "model"),
        ({"contents": [{"parts": [{"executableCode": {"code": "1"}}]}]}, "Gemini model"),
        (
            {"contents": [{"parts": [{"text": "x"}]}], "generationConfig": {"maxOutputTokens": "many"}},
            "integer",
        ),
    ],
)
def test_invalid_requests(body: dict[str, Any], match: str) -> None:
    with pytest.raises(BadRequest, match=match):
        decode(body)


def test_model_and_stream_come_from_the_gateway() -> None:
    body = {"contents": [{"parts": [{"text": "x"}]}]}
    with pytest.raises(BadRequest, match="model"):
        GEMINI.decode(body)
    req = GEMINI.decode({**body, "model": "models/gemini-pro", "stream": True})
    assert req.model == "gemini-pro" and req.stream and "model" not in req.extra
    assert GEMINI.decode_for("gemini-pro", body, stream=True).stream


# --- encoding a complete answer -----------------------------------------------------------------

USAGE = Usage(input_tokens=100, output_tokens=70, cached_input_tokens=40, reasoning_tokens=50)


def answer() -> ChatResponse:
    parts: list[Part] = [
        ThinkingPart("Let me think.", provider_details=gemini(SIG1)),
        TextPart("Checking both cities."),
        ToolCallPart("call_a", "get_weather", '{"city": "Paris"}', gemini(SIG2)),
        ToolCallPart("call_b", "get_weather", '{"city": "Rome"}'),
        ToolCallPart("call_c", "broken", "{not json"),
    ]
    return ChatResponse(
        "resp-1", "upstream-model", 0, [Choice(0, Message("assistant", parts), "tool_calls")], USAGE
    )


def request(include_thoughts: bool = True) -> ChatRequest:
    return ChatRequest(
        model=MODEL, messages=[Message("user", [TextPart("hi")])], include_reasoning=include_thoughts
    )


def test_encode_response_validates_with_sdk() -> None:
    raw = orjson.loads(GEMINI.encode_response(answer(), request()))
    resp = gt.GenerateContentResponse.model_validate(raw)  # strict: unknown fields are rejected
    assert resp.text == "Checking both cities."
    calls = resp.function_calls or []
    assert [(c.id, c.name, c.args) for c in calls] == [
        ("call_a", "get_weather", {"city": "Paris"}),
        ("call_b", "get_weather", {"city": "Rome"}),
        ("call_c", "broken", {"_raw": "{not json"}),
    ]
    candidate = (resp.candidates or [])[0]
    assert candidate.finish_reason == gt.FinishReason.STOP and candidate.index == 0
    parts = candidate.content.parts or []  # type: ignore[union-attr]
    assert (
        parts[0].thought and parts[0].text == "Let me think." and parts[0].thought_signature == b"signature-1"
    )
    assert parts[2].thought_signature == b"signature-2" and parts[3].thought_signature is None
    usage = resp.usage_metadata
    assert usage is not None
    assert (usage.prompt_token_count, usage.candidates_token_count, usage.thoughts_token_count) == (
        100,
        20,
        50,
    )
    assert (usage.cached_content_token_count, usage.total_token_count) == (40, 170)
    assert resp.model_version == MODEL and resp.response_id == "resp-1"


def test_encode_response_hides_thoughts_unless_asked() -> None:
    raw = orjson.loads(GEMINI.encode_response(answer(), request(include_thoughts=False)))
    parts = raw["candidates"][0]["content"]["parts"]
    assert not any(p.get("thought") for p in parts) and parts[0] == {"text": "Checking both cities."}


@pytest.mark.parametrize(
    ("reason", "expected"),
    [("stop", "STOP"), ("tool_calls", "STOP"), ("length", "MAX_TOKENS"), ("content_filter", "SAFETY")],
)
def test_finish_reasons(reason: Any, expected: str) -> None:
    resp = ChatResponse(
        "r", MODEL, 0, [Choice(0, Message("assistant", [TextPart("x")]), reason)], Usage(1, 1)
    )
    raw = orjson.loads(GEMINI.encode_response(resp, request()))
    assert raw["candidates"][0]["finishReason"] == expected
    assert (
        "thoughtsTokenCount" not in raw["usageMetadata"]
        and "cachedContentTokenCount" not in raw["usageMetadata"]
    )


# --- streaming ----------------------------------------------------------------------------------


def stream_events() -> list[StreamEvent]:
    return [
        StreamStart("resp-7", "upstream-model", 0),
        BlockStart(0, "thinking", provider_details=gemini(SIG1)),
        BlockDelta(0, "Let "),
        BlockDelta(0, "me think."),
        BlockStop(0),
        BlockStart(1, "text"),
        BlockDelta(1, "Hel"),
        BlockDelta(1, "lo"),
        BlockStop(1),
        BlockStart(
            2, "tool_call", tool_call_id="call_a", tool_name="get_weather", provider_details=gemini(SIG2)
        ),
        BlockDelta(2, '{"city"'),
        BlockDelta(2, ': "Paris"}'),
        BlockStop(2),
        BlockStart(3, "tool_call", tool_call_id="call_b", tool_name="get_weather"),
        BlockDelta(3, '{"city": "Rome"}'),
        BlockStop(3),
        Finish("tool_calls"),
        UsageEvent(USAGE),
    ]


def encode_stream(events: list[StreamEvent], req: ChatRequest, sse: bool = True, end: bool = True) -> bytes:
    encoder = GEMINI.stream_encoder(req, sse=sse)
    out = b"".join(encoder.encode(e) for e in events)
    return out + encoder.close() if end else out


def sse_chunks(raw: bytes) -> list[dict[str, Any]]:
    events = raw.split(b"\r\n\r\n")
    assert events[-1] == b""
    assert all(e.startswith(b"data: ") and b"\n" not in e for e in events[:-1])
    return [orjson.loads(e[6:]) for e in events[:-1]]


def test_stream_sse_chunks_validate_and_concatenate() -> None:
    chunks = sse_chunks(encode_stream(stream_events(), request()))
    parsed = [gt.GenerateContentResponse.model_validate(c) for c in chunks]
    assert all(chats._validate_response(p) for p in parsed)  # the SDK chat keeps the turn
    assert "".join(p.text or "" for p in parsed) == "Hello"
    thoughts = [part for p in parsed for part in p.candidates[0].content.parts if part.thought]  # type: ignore[index, union-attr]
    assert "".join(t.text or "" for t in thoughts) == "Let me think."
    assert thoughts[0].thought_signature == b"signature-1"
    calls = [c for p in parsed for c in p.function_calls or []]
    assert [(c.id, c.args) for c in calls] == [("call_a", {"city": "Paris"}), ("call_b", {"city": "Rome"})]
    call_parts = [c["candidates"][0]["content"]["parts"][0] for c in chunks if "functionCall" in str(c)]
    assert call_parts[0]["thoughtSignature"] == SIG2 and "thoughtSignature" not in call_parts[1]
    last = parsed[-1]
    assert last.candidates[0].finish_reason == gt.FinishReason.STOP  # type: ignore[index]
    assert last.usage_metadata is not None and last.usage_metadata.candidates_token_count == 20
    assert all("finishReason" not in c["candidates"][0] for c in chunks[:-1])
    assert {p.response_id for p in parsed} == {"resp-7"} and {p.model_version for p in parsed} == {MODEL}


def test_stream_without_thoughts_and_with_unclosed_call() -> None:
    events = stream_events()[:11]  # cut inside the first tool call, before its BlockStop
    chunks = sse_chunks(encode_stream(events, request(include_thoughts=False)))
    texts = [p for c in chunks for p in c["candidates"][0]["content"]["parts"]]
    assert not any(p.get("thought") for p in texts)
    assert texts[-2]["functionCall"] == {"name": "get_weather", "args": {"_raw": '{"city"'}, "id": "call_a"}
    assert chunks[-1]["candidates"][0]["finishReason"] == "STOP" and "usageMetadata" not in chunks[-1]


def test_stream_several_candidates() -> None:
    events: list[StreamEvent] = [
        BlockStart(0, "text", choice=0),
        BlockStart(0, "text", choice=1),
        BlockDelta(0, "A", choice=0),
        BlockDelta(0, "B", choice=1),
        BlockStop(0, choice=1),
        BlockStart(1, "tool_call", choice=1, tool_call_id="c", tool_name="f"),
        BlockStop(1, choice=1),
        Finish("length", choice=1),
        Finish("stop", choice=0),
    ]
    chunks = sse_chunks(encode_stream(events, request()))
    assert [(c["candidates"][0]["index"], c["candidates"][0]["content"]["parts"]) for c in chunks[:3]] == [
        (0, [{"text": "A"}]),
        (1, [{"text": "B"}]),
        (1, [{"functionCall": {"name": "f", "args": {}, "id": "c"}}]),
    ]
    finals = [(c["index"], c["finishReason"]) for c in chunks[-1]["candidates"]]
    assert finals == [(0, "STOP"), (1, "MAX_TOKENS")]


def test_stream_json_array_form() -> None:
    raw = encode_stream(stream_events(), request(), sse=False)
    assert raw.startswith(b"[{") and raw.endswith(b"}]") and b",\r\n{" in raw
    chunks = orjson.loads(raw)
    assert isinstance(chunks, list) and len(chunks) == len(
        sse_chunks(encode_stream(stream_events(), request()))
    )
    assert "".join(gt.GenerateContentResponse.model_validate(c).text or "" for c in chunks) == "Hello"
    assert orjson.loads(encode_stream([], request(), sse=False))[0]["candidates"][0]["finishReason"] == "STOP"
    # An error after the start still leaves one valid JSON array, ending with the error object.
    encoder = GeminiIngress(sse=False).stream_encoder(request())
    raw = encoder.encode(StreamStart("x", MODEL, 0)) + encoder.encode(BlockStart(0, "text"))
    raw += encoder.encode(BlockDelta(0, "par")) + encoder.error(UpstreamTimeout("idle timeout"))
    assert encoder.close() == b""
    parsed = orjson.loads(raw)
    assert parsed[-1] == {"error": {"code": 504, "message": "idle timeout", "status": "DEADLINE_EXCEEDED"}}


def test_stream_error_event_is_one_sse_event() -> None:
    encoder = GEMINI.stream_encoder(request())
    first = encoder.encode(BlockStart(0, "text")) + encoder.encode(BlockDelta(0, "a"))
    err = encoder.encode(StreamError(UpstreamUnavailable("upstream reset")))
    assert err.startswith(b'data: {"error":') and err.endswith(b"\r\n\r\n")
    assert sse_chunks(err)[0]["error"]["status"] == "UNAVAILABLE"
    assert first and encoder.close() == b""


# --- errors -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("err", "code", "status"),
    [
        (BadRequest("bad"), 400, "INVALID_ARGUMENT"),
        (AuthenticationFailed("who"), 401, "UNAUTHENTICATED"),
        (PermissionDenied("no"), 403, "PERMISSION_DENIED"),
        (NotFound("gone"), 404, "NOT_FOUND"),
        (PayloadTooLarge("big"), 413, "INVALID_ARGUMENT"),
        (UpstreamError("slow down", status=429), 429, "RESOURCE_EXHAUSTED"),
        (GatewayError("oops"), 500, "INTERNAL"),
        (UpstreamUnavailable("reset"), 502, "UNAVAILABLE"),
        (UpstreamError("busy", status=503), 503, "UNAVAILABLE"),
        (UpstreamTimeout("late"), 504, "DEADLINE_EXCEEDED"),
        (UpstreamError("overloaded", status=529), 529, "UNAVAILABLE"),
        (GatewayError("teapot", status=418), 418, "INVALID_ARGUMENT"),
    ],
)
def test_error_bodies(err: GatewayError, code: int, status: str) -> None:
    body = orjson.loads(GEMINI.error_body(err))
    assert body == {"error": {"code": code, "message": err.message, "status": status}}


def test_error_details() -> None:
    err = UpstreamError("quota", status=429, headers={"Retry-After": "37"})
    details = orjson.loads(GEMINI.error_body(err))["error"]["details"]
    assert details == [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "37s"}]
    err = UpstreamError("quota", status=429, headers={"retry-after": "1.5"})
    assert orjson.loads(GEMINI.error_body(err))["error"]["details"][0]["retryDelay"] == "1.5s"
    err = UpstreamError("quota", status=429, headers={"retry-after": "soon"})
    assert "details" not in orjson.loads(GEMINI.error_body(err))["error"]
    bad = orjson.loads(GEMINI.error_body(BadRequest("contents: required", param="contents")))["error"]
    assert bad["details"][0]["fieldViolations"] == [
        {"field": "contents", "description": "contents: required"}
    ]


# --- the real SDK client over a mock transport --------------------------------------------------

Responder = Callable[[str, ChatRequest | None, dict[str, Any]], httpx.Response]


@pytest.fixture
def sdk() -> Iterator[tuple[genai.Client, list[Responder]]]:
    """A google-genai client whose HTTP calls are answered by the codec; push a responder to use."""
    responders: list[Responder] = []

    def handler(request: httpx.Request) -> httpx.Response:
        path = request.url.path
        body = orjson.loads(request.content) if request.content else {}
        model, _, method = path.rsplit("/", 1)[-1].partition(":")
        req = None
        if method in ("generateContent", "streamGenerateContent"):
            req = GEMINI.decode_for(model, body, stream=method.startswith("stream"))
        return responders[-1](method or "list", req, body)

    transport = httpx.MockTransport(handler)
    options = gt.HttpOptions(
        httpx_client=httpx.Client(transport=transport), retry_options=gt.HttpRetryOptions(attempts=1)
    )
    yield genai.Client(api_key="test", http_options=options), responders


def test_sdk_generate_content_round_trip(sdk: tuple[genai.Client, list[Responder]]) -> None:
    client, responders = sdk
    seen: list[ChatRequest] = []

    def reply(method: str, req: ChatRequest | None, body: dict[str, Any]) -> httpx.Response:
        assert req is not None
        seen.append(req)
        resp = answer()
        resp.choices[0].message.parts.insert(0, TextPart("Sure. "))
        return httpx.Response(200, content=GEMINI.encode_response(resp, req))

    responders.append(reply)
    config = gt.GenerateContentConfig(
        thinking_config=gt.ThinkingConfig(include_thoughts=True), temperature=0.1
    )
    result = client.models.generate_content(model=MODEL, contents="Weather?", config=config)
    assert result.text == "Sure. Checking both cities."
    assert [c.args for c in result.function_calls or []][:2] == [{"city": "Paris"}, {"city": "Rome"}]
    assert seen[0].include_reasoning and seen[0].temperature == 0.1 and seen[0].model == MODEL


def test_sdk_chat_stream_keeps_history(sdk: tuple[genai.Client, list[Responder]]) -> None:
    client, responders = sdk
    seen: list[ChatRequest] = []

    def reply(method: str, req: ChatRequest | None, body: dict[str, Any]) -> httpx.Response:
        assert method == "streamGenerateContent" and req is not None and req.stream
        seen.append(req)
        return httpx.Response(
            200, content=encode_stream(stream_events(), req), headers={"content-type": "text/event-stream"}
        )

    responders.append(reply)
    chat = client.chats.create(model=MODEL)
    chunks = list(chat.send_message_stream("Weather in Paris and Rome?"))
    assert "".join(c.text or "" for c in chunks) == "Hello"
    history = chat.get_history(curated=True)
    assert history[0].role == "user" and {c.role for c in history[1:]} == {"model"} and len(history) > 2
    # The next turn replays the calls with their ids and signature, and answers them.
    answers = [
        gt.Part(function_response=gt.FunctionResponse(id=c.id, name=c.name, response={"output": "ok"}))
        for c in chunks[-3].function_calls or []
    ] + [
        gt.Part(function_response=gt.FunctionResponse(id=c.id, name=c.name, response={"output": "ok"}))
        for c in chunks[-2].function_calls or []
    ]
    list(chat.send_message_stream(answers))
    (replay,) = [m for m in seen[1].messages if m.role == "assistant"]
    calls = _calls(replay)
    assert [(c.id, c.provider_details) for c in calls] == [("call_a", gemini(SIG2)), ("call_b", None)]
    assert [r.tool_call_id for r in _results(seen[1].messages)] == ["call_a", "call_b"]


def test_sdk_mid_stream_error_raises(sdk: tuple[genai.Client, list[Responder]]) -> None:
    client, responders = sdk

    def reply(method: str, req: ChatRequest | None, body: dict[str, Any]) -> httpx.Response:
        assert req is not None
        encoder = GEMINI.stream_encoder(req)
        raw = encoder.encode(BlockStart(0, "text")) + encoder.encode(BlockDelta(0, "partial"))
        raw += encoder.error(UpstreamError("quota", status=429))
        return httpx.Response(200, content=raw, headers={"content-type": "text/event-stream"})

    responders.append(reply)
    got: list[str] = []
    with pytest.raises(errors.ClientError) as info:
        for chunk in client.models.generate_content_stream(model=MODEL, contents="x"):
            got.append(chunk.text or "")
    assert got == ["partial"] and info.value.code == 429 and info.value.status == "RESOURCE_EXHAUSTED"


def test_sdk_reads_error_bodies(sdk: tuple[genai.Client, list[Responder]]) -> None:
    client, responders = sdk
    err = UpstreamError("Quota exceeded", status=429, headers={"retry-after": "12"})
    responders.append(lambda method, req, body: httpx.Response(429, content=GEMINI.error_body(err)))
    with pytest.raises(errors.ClientError) as info:
        client.models.generate_content(model=MODEL, contents="x")
    assert (info.value.code, info.value.status, info.value.message) == (
        429,
        "RESOURCE_EXHAUSTED",
        "Quota exceeded",
    )
    assert info.value.details["error"]["details"][0]["retryDelay"] == "12s"
    responders.append(
        lambda method, req, body: httpx.Response(
            503, content=GEMINI.error_body(UpstreamError("x", status=503))
        )
    )
    with pytest.raises(errors.ServerError) as server:
        client.models.generate_content(model=MODEL, contents="x")
    assert server.value.status == "UNAVAILABLE"


def test_sdk_side_endpoints(sdk: tuple[genai.Client, list[Responder]]) -> None:
    client, responders = sdk

    def reply(method: str, req: ChatRequest | None, body: dict[str, Any]) -> httpx.Response:
        if method == "batchEmbedContents":
            emb = decode_batch_embed(MODEL, body)
            assert emb.inputs == ["alpha", "beta"] and emb.dimensions == 4 and emb.model == MODEL
            vectors = [[float(i)] * 4 for i in range(len(emb.inputs))]
            return httpx.Response(
                200, content=GEMINI.encode_batch_embed(EmbeddingResponse(MODEL, vectors, Usage()))
            )
        if method == "countTokens":
            counted = GEMINI.decode_count_tokens(MODEL, body)
            assert counted.messages[0].text() == "count me"
            return httpx.Response(200, content=GEMINI.encode_count_tokens(Usage(input_tokens=7)))
        return httpx.Response(200, content=GEMINI.encode_models(["gemini-2.5-flash", "gpt-4o"]))

    responders.append(reply)
    embedded = client.models.embed_content(
        model=MODEL,
        contents=[gt.Content(parts=[gt.Part(text="alpha")]), gt.Content(parts=[gt.Part(text="beta")])],
        config=gt.EmbedContentConfig(output_dimensionality=4),
    )
    assert [e.values for e in embedded.embeddings or []] == [[0.0] * 4, [1.0] * 4]
    assert client.models.count_tokens(model=MODEL, contents="count me").total_tokens == 7
    listed = list(client.models.list())
    assert [m.name for m in listed] == ["models/gemini-2.5-flash", "models/gpt-4o"]
    assert listed[0].supported_actions == ["generateContent", "streamGenerateContent", "countTokens"]
    assert listed[1].display_name == "gpt-4o"


def test_embed_single_and_validation() -> None:
    emb = decode_embed(
        "models/text-embedding-004",
        {
            "content": {"parts": [{"text": "a"}, {"text": "b"}]},
            "outputDimensionality": 8,
            "taskType": "RETRIEVAL_QUERY",
        },
    )
    assert (emb.model, emb.inputs, emb.dimensions) == ("text-embedding-004", ["a\nb"], 8)
    assert orjson.loads(GEMINI.encode_embed(EmbeddingResponse("m", [[0.5, 0.25]], Usage()))) == {
        "embedding": {"values": [0.5, 0.25]}
    }
    with pytest.raises(BadRequest, match="does not match"):
        decode_batch_embed(
            MODEL, {"requests": [{"model": "models/other", "content": {"parts": [{"text": "a"}]}}]}
        )
    with pytest.raises(BadRequest, match="outputDimensionality"):
        decode_batch_embed(
            MODEL,
            {
                "requests": [
                    {"content": {"parts": [{"text": "a"}]}, "outputDimensionality": 4},
                    {"content": {"parts": [{"text": "b"}]}, "outputDimensionality": 8},
                ]
            },
        )
    with pytest.raises(BadRequest, match="text"):
        decode_embed(MODEL, {"content": {"parts": [{"inlineData": {"mimeType": "image/png", "data": PNG}}]}})
    assert orjson.loads(GEMINI.encode_count_tokens(Usage(input_tokens=9, cached_input_tokens=4))) == {
        "totalTokens": 9,
        "cachedContentTokenCount": 4,
    }
    assert orjson.loads(GEMINI.encode_model("models/x"))["name"] == "models/x"
