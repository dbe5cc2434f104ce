"""The OpenAI Responses API codec, checked against the installed `openai` SDK: request bodies are
captured from `client.responses.create(...)`, answers and streams are parsed by the SDK's own models
and stream machinery (served from an in-memory transport)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import httpx2
import openai
import pytest
from openai.types.responses import Response, ResponseStreamEvent
from pydantic import TypeAdapter

from omnirelay.canonical.assemble import assemble
from omnirelay.canonical.messages import (
    FilePart,
    ImagePart,
    Message,
    RefusalPart,
    TextPart,
    ThinkingPart,
    ToolCallPart,
    ToolResultPart,
)
from omnirelay.canonical.request import ChatRequest
from omnirelay.canonical.response import ChatResponse, Choice, FinishReason
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
from omnirelay.errors import BadRequest, UpstreamError
from omnirelay.ingress.openai_responses import (
    ResponsesIngress,
    history_items,
    item_index,
    prepend_history,
    resolve_item_references,
)
from omnirelay.ingress.openai_responses.thinking import ENVELOPE_PREFIX

INGRESS = ResponsesIngress()
EVENTS: TypeAdapter[Any] = TypeAdapter(ResponseStreamEvent)
RESP_ID = "resp_" + "ab" * 24


def _client(handler: Callable[[httpx2.Request], httpx2.Response]) -> openai.OpenAI:
    transport = httpx2.MockTransport(handler)
    return openai.OpenAI(
        api_key="sk-test",
        base_url="http://gateway.test/v1",
        http_client=httpx2.Client(transport=transport),
        max_retries=0,
    )


def sent(**kwargs: Any) -> dict[str, Any]:
    """The JSON body `client.responses.create(**kwargs)` sends."""
    bodies: list[dict[str, Any]] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        bodies.append(json.loads(request.content))
        return httpx2.Response(400, json={"error": {"message": "captured", "type": "x", "code": None}})

    with pytest.raises(openai.BadRequestError):
        _client(handler).responses.create(model="gpt-test", **kwargs)
    return bodies[0]


def decode(**kwargs: Any) -> ChatRequest:
    return INGRESS.decode(sent(**kwargs))


# --- decode -------------------------------------------------------------------------------------


def test_string_input_and_instructions() -> None:
    req = decode(input="Hello", instructions="Be brief.")
    assert req.model == "gpt-test"
    assert [(m.role, m.text()) for m in req.messages] == [("system", "Be brief."), ("user", "Hello")]
    assert req.extra["instructions"] == "Be brief."
    assert req.include_usage and not req.stream


def test_message_items_and_content_parts() -> None:
    req = decode(
        input=[
            {"role": "developer", "content": "dev rules"},
            {"type": "message", "role": "system", "content": [{"type": "input_text", "text": "sys"}]},
            {
                "role": "user",
                "content": [
                    {"type": "input_text", "text": "look"},
                    {"type": "input_image", "image_url": "https://img.test/a.png", "detail": "high"},
                    {"type": "input_image", "image_url": "data:image/png;base64,iVBORw0K", "detail": "low"},
                    {
                        "type": "input_file",
                        "file_data": "data:application/pdf;base64,JVBERi0x",
                        "filename": "a.pdf",
                    },
                    {"type": "input_file", "file_id": "file-123"},
                ],
            },
        ]
    )
    system, system2, user = req.messages
    assert (system.role, system.text(), system2.role, system2.text()) == (
        "system",
        "dev rules",
        "system",
        "sys",
    )
    assert user.role == "user"
    assert user.parts == [
        TextPart("look"),
        ImagePart(url="https://img.test/a.png", detail="high"),
        ImagePart(data="iVBORw0K", media_type="image/png", detail="low"),
        FilePart(data="JVBERi0x", media_type="application/pdf", filename="a.pdf"),
        FilePart(file_id="file-123"),
    ]


def test_assistant_turn_merges_reasoning_text_and_calls() -> None:
    req = decode(
        input=[
            {"role": "user", "content": "weather in Paris and Rome?"},
            {"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": "need tools"}]},
            {
                "type": "message",
                "id": "msg_1",
                "role": "assistant",
                "status": "completed",
                "content": [
                    {"type": "output_text", "text": "Checking.", "annotations": []},
                    {"type": "refusal", "refusal": "not that"},
                ],
            },
            {
                "type": "function_call",
                "call_id": "call_a",
                "name": "weather",
                "arguments": '{"city":"Paris"}',
            },
            {"type": "function_call", "call_id": "call_b", "name": "weather", "arguments": '{"city":"Rome"}'},
            {"type": "function_call_output", "call_id": "call_a", "output": "18C"},
            {
                "type": "function_call_output",
                "call_id": "call_b",
                "output": [{"type": "input_text", "text": "21C"}],
            },
        ]
    )
    user, assistant, tool_a, tool_b = req.messages
    assert user.role == "user"
    assert assistant.role == "assistant"
    assert assistant.parts == [
        ThinkingPart("need tools", provider_details={"openai": {"id": "rs_1", "encrypted_content": None}}),
        TextPart("Checking."),
        RefusalPart("not that"),
        ToolCallPart("call_a", "weather", '{"city":"Paris"}'),
        ToolCallPart("call_b", "weather", '{"city":"Rome"}'),
    ]
    assert tool_a == Message("tool", [ToolResultPart("call_a", [TextPart("18C")])])
    assert tool_b == Message("tool", [ToolResultPart("call_b", [TextPart("21C")])])


def test_function_calls_without_assistant_text_start_an_assistant_turn() -> None:
    req = decode(
        input=[
            {"role": "user", "content": "hi"},
            {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "c1", "output": "ok"},
            {"type": "function_call", "call_id": "c2", "name": "f", "arguments": "{}"},
        ]
    )
    assert [m.role for m in req.messages] == ["user", "assistant", "tool", "assistant"]


def test_reasoning_item_with_openai_encrypted_content() -> None:
    req = decode(
        input=[
            {"role": "user", "content": "q"},
            {"type": "reasoning", "id": "rs_9", "summary": [], "encrypted_content": "gAAAA-opaque"},
        ]
    )
    assert req.messages[1].parts == [
        ThinkingPart("", provider_details={"openai": {"id": "rs_9", "encrypted_content": "gAAAA-opaque"}})
    ]


def test_item_reference_is_rejected_unless_resolved() -> None:
    body = sent(input=[{"role": "user", "content": "q"}, {"type": "item_reference", "id": "msg_1"}])
    with pytest.raises(BadRequest, match="item_reference 'msg_1'"):
        INGRESS.decode(body)
    known = item_index(
        [
            {
                "type": "message",
                "id": "msg_1",
                "role": "assistant",
                "content": [{"type": "output_text", "text": "A"}],
            }
        ]
    )
    req = INGRESS.decode(resolve_item_references(body, known))
    assert [(m.role, m.text()) for m in req.messages] == [("user", "q"), ("assistant", "A")]


def test_flat_function_tools_and_tool_choice_variants() -> None:
    tools: list[Any] = [
        {
            "type": "function",
            "name": "a",
            "description": "A",
            "parameters": {"type": "object"},
            "strict": True,
        },
        {"type": "function", "name": "b", "parameters": None, "strict": None},
    ]
    req = decode(input="x", tools=tools, tool_choice="required", parallel_tool_calls=False)
    assert [(t.name, t.description, t.parameters, t.strict) for t in req.tools] == [
        ("a", "A", {"type": "object"}, True),
        ("b", None, None, None),
    ]
    assert req.tool_choice is not None and req.tool_choice.mode == "required"
    assert req.parallel_tool_calls is False
    for choice in ("auto", "none"):
        got = decode(input="x", tools=tools, tool_choice=choice).tool_choice
        assert got is not None and got.mode == choice
    named = decode(input="x", tools=tools, tool_choice={"type": "function", "name": "b"}).tool_choice
    assert named is not None and (named.mode, named.name) == ("tool", "b")
    allowed = decode(
        input="x",
        tools=tools,
        tool_choice={
            "type": "allowed_tools",
            "mode": "required",
            "tools": [{"type": "function", "name": "b"}],
        },
    )
    assert [t.name for t in allowed.tools] == ["b"]
    assert allowed.tool_choice is not None and allowed.tool_choice.mode == "required"
    with pytest.raises(BadRequest, match="tool_choice"):
        decode(input="x", tools=tools, tool_choice={"type": "web_search_preview"})


@pytest.mark.parametrize(
    "tool",
    [
        {"type": "web_search"},
        {"type": "file_search", "vector_store_ids": ["vs_1"]},
        {"type": "computer_use_preview", "display_height": 1, "display_width": 1, "environment": "linux"},
        {"type": "code_interpreter", "container": {"type": "auto"}},
        {"type": "mcp", "server_label": "x", "server_url": "https://mcp.test"},
        {"type": "image_generation"},
    ],
)
def test_built_in_tools_are_rejected_by_name(tool: Any) -> None:
    with pytest.raises(BadRequest, match=repr(tool["type"])) as info:
        decode(input="x", tools=[tool])
    assert info.value.param == "tools[0]"


def test_text_formats() -> None:
    assert decode(input="x").response_format is None
    plain = decode(input="x", text={"format": {"type": "text"}}).response_format
    assert plain is not None and plain.type == "text"
    obj = decode(input="x", text={"format": {"type": "json_object"}}).response_format
    assert obj is not None and obj.type == "json_object"
    schema = {"type": "object", "properties": {"a": {"type": "string"}}}
    fmt = decode(
        input="x", text={"format": {"type": "json_schema", "name": "out", "schema": schema, "strict": True}}
    ).response_format
    assert fmt is not None and (fmt.type, fmt.name, fmt.schema, fmt.strict) == (
        "json_schema",
        "out",
        schema,
        True,
    )


def test_settings_reasoning_and_extra() -> None:
    req = decode(
        input="x",
        max_output_tokens=300,
        temperature=0.2,
        top_p=0.9,
        reasoning={"effort": "high", "summary": "auto"},
        stream=True,
        user="u-1",
        metadata={"k": "v"},
        store=False,
        previous_response_id="resp_prev",
        include=["reasoning.encrypted_content"],
        truncation="auto",
        service_tier="flex",
        prompt_cache_key="pck",
        safety_identifier="safe-1",
    )
    assert (req.max_tokens, req.temperature, req.top_p) == (300, 0.2, 0.9)
    assert (req.reasoning_effort, req.include_reasoning, req.stream) == ("high", True, True)
    assert (req.user, req.metadata) == ("u-1", {"k": "v"})
    for key, value in {
        "store": False,
        "previous_response_id": "resp_prev",
        "include": ["reasoning.encrypted_content"],
        "truncation": "auto",
        "service_tier": "flex",
        "prompt_cache_key": "pck",
        "safety_identifier": "safe-1",
    }.items():
        assert req.extra[key] == value
    assert "input" not in req.extra and "model" not in req.extra
    quiet = decode(input="x", reasoning={"effort": "low"}, safety_identifier="safe-2")
    assert (quiet.include_reasoning, quiet.user) == (False, "safe-2")


@pytest.mark.parametrize(
    ("body", "match"),
    [
        ({"input": "x"}, "'model'"),
        ({"model": "m"}, "'input'"),
        ({"model": "m", "input": 3}, "'input'"),
        ({"model": "m", "input": [{"type": "web_search_call", "id": "ws_1"}]}, "web_search_call"),
        ({"model": "m", "input": "x", "conversation": "conv_1"}, "conversation"),
        ({"model": "m", "input": "x", "background": True}, "background"),
        (
            {"model": "m", "input": [{"role": "user", "content": [{"type": "input_image", "file_id": "f"}]}]},
            "file_id",
        ),
        ({"model": "m", "input": [{"type": "function_call", "name": "f", "arguments": "{}"}]}, "call_id"),
        ({"model": "m", "input": [{"role": "tool", "content": "x"}]}, "role"),
    ],
)
def test_bad_requests(body: dict[str, Any], match: str) -> None:
    with pytest.raises(BadRequest, match=match):
        INGRESS.decode(body)


# --- encode -------------------------------------------------------------------------------------


def _request(**kwargs: Any) -> ChatRequest:
    return INGRESS.decode({"model": "gpt-test", "input": "hi", **kwargs})


def _answer(parts: list[Any], reason: FinishReason = "stop", usage: Usage | None = None) -> ChatResponse:
    return ChatResponse(
        id=RESP_ID,
        model="upstream-model",
        created=1_700_000_000,
        choices=[Choice(0, Message("assistant", parts), reason)],
        usage=usage or Usage(input_tokens=12, output_tokens=30, cached_input_tokens=4, reasoning_tokens=9),
    )


def _encode(resp: ChatResponse, req: ChatRequest) -> tuple[dict[str, Any], Response]:
    raw = json.loads(INGRESS.encode_response(resp, req))
    return raw, Response.model_validate(raw)


def test_encode_text_answer_and_echo() -> None:
    req = _request(
        instructions="Be brief.",
        temperature=0.5,
        max_output_tokens=100,
        metadata={"k": "v"},
        store=False,
        text={"format": {"type": "json_object"}, "verbosity": "low"},
        previous_response_id="resp_prev",
    )
    raw, resp = _encode(_answer([TextPart("Hello!")]), req)
    assert "output_text" not in raw  # an SDK convenience, not wire
    assert resp.output_text == "Hello!"
    assert (resp.id, resp.object, resp.status, resp.created_at) == (
        RESP_ID,
        "response",
        "completed",
        1_700_000_000,
    )
    assert (resp.model, resp.instructions, resp.temperature, resp.max_output_tokens) == (
        "gpt-test",
        "Be brief.",
        0.5,
        100,
    )
    assert (raw["store"], resp.previous_response_id, resp.metadata, resp.parallel_tool_calls) == (
        False,
        "resp_prev",
        {"k": "v"},
        True,
    )
    assert resp.text is not None and resp.text.format is not None and resp.text.format.type == "json_object"
    assert (resp.tool_choice, resp.tools, resp.error, resp.incomplete_details) == ("auto", [], None, None)
    message = raw["output"][0]
    assert message["id"].startswith("msg_") and message["status"] == "completed"
    assert message["content"] == [
        {"type": "output_text", "text": "Hello!", "annotations": [], "logprobs": []}
    ]
    assert resp.usage is not None
    assert (resp.usage.input_tokens, resp.usage.input_tokens_details.cached_tokens) == (12, 4)
    assert (resp.usage.output_tokens, resp.usage.output_tokens_details.reasoning_tokens) == (30, 9)
    assert resp.usage.total_tokens == 42


def test_encode_tool_calls() -> None:
    req = _request(
        tools=[{"type": "function", "name": "weather", "parameters": {"type": "object"}, "strict": True}],
        tool_choice={"type": "function", "name": "weather"},
    )
    raw, resp = _encode(
        _answer(
            [
                TextPart("Let me check."),
                ToolCallPart("call_1", "weather", '{"city":"Paris"}'),
                ToolCallPart("", "weather", '{"city":"Rome"}'),
            ],
            "tool_calls",
        ),
        req,
    )
    assert [item.type for item in resp.output] == ["message", "function_call", "function_call"]
    first, second = raw["output"][1], raw["output"][2]
    assert first["id"].startswith("fc_") and first["call_id"] == "call_1"
    assert (first["name"], first["arguments"], first["status"]) == (
        "weather",
        '{"city":"Paris"}',
        "completed",
    )
    assert second["call_id"].startswith("call_") and second["id"] != first["id"]
    assert raw["tool_choice"] == {"type": "function", "name": "weather"}
    tool = resp.tools[0]
    assert tool.type == "function" and tool.name == "weather" and tool.strict is True


def test_encode_reasoning_and_refusal() -> None:
    req = _request(reasoning={"effort": "medium", "summary": "auto"})
    raw, resp = _encode(
        _answer([ThinkingPart("think", signature="sig-1"), TextPart("A"), RefusalPart("no")]), req
    )
    reasoning, message = raw["output"]
    assert reasoning["id"].startswith("rs_")
    assert reasoning["summary"] == [{"type": "summary_text", "text": "think"}]
    assert reasoning["encrypted_content"].startswith(ENVELOPE_PREFIX)
    assert [c["type"] for c in message["content"]] == ["output_text", "refusal"]
    assert resp.reasoning is not None and (resp.reasoning.effort, resp.reasoning.summary) == (
        "medium",
        "auto",
    )
    # The signature survives a round trip through the client.
    back = INGRESS.decode({"model": "m", "input": [{"role": "user", "content": "q"}, reasoning]})
    assert back.messages[1].parts == [ThinkingPart("think", signature="sig-1")]
    # Without a summary request the text is not shown, but still rides in the envelope.
    quiet, _ = _encode(_answer([ThinkingPart("secret", signature="s")]), _request())
    assert quiet["output"][0]["summary"] == []
    again = INGRESS.decode({"model": "m", "input": [{"role": "user", "content": "q"}, quiet["output"][0]]})
    assert again.messages[1].parts == [ThinkingPart("secret", signature="s")]
    redacted = ThinkingPart("", redacted=True, provider_details={"anthropic": {"data": "opaque"}})
    out, _ = _encode(_answer([redacted]), _request())
    back = INGRESS.decode({"model": "m", "input": [{"role": "user", "content": "q"}, out["output"][0]]})
    assert back.messages[1].parts == [redacted]


def test_encode_incomplete() -> None:
    raw, resp = _encode(_answer([TextPart("cut")], "length"), _request(max_output_tokens=5))
    assert resp.status == "incomplete"
    assert resp.incomplete_details is not None and resp.incomplete_details.reason == "max_output_tokens"
    assert raw["output"][0]["status"] == "incomplete"


def test_sdk_parses_the_json_answer() -> None:
    body = INGRESS.encode_response(_answer([TextPart("Hi there")]), _request())
    client = _client(
        lambda request: httpx2.Response(200, content=body, headers={"content-type": "application/json"})
    )
    resp = client.responses.create(model="gpt-test", input="hi")
    assert resp.output_text == "Hi there" and resp.id == RESP_ID


def test_error_body_is_the_openai_error_object() -> None:
    body = json.loads(INGRESS.error_body(BadRequest("nope", param="input", code="invalid_value")))
    assert body == {
        "error": {
            "message": "nope",
            "type": "invalid_request_error",
            "param": "input",
            "code": "invalid_value",
        }
    }


# --- streaming ----------------------------------------------------------------------------------


def _stream_events() -> list[StreamEvent]:
    return [
        StreamStart(RESP_ID, "upstream-model", 1_700_000_000),
        BlockStart(0, "thinking"),
        BlockDelta(0, "Let me "),
        BlockDelta(0, "think."),
        BlockDelta(0, signature="sig-xyz"),
        BlockStop(0),
        BlockStart(1, "text"),
        BlockDelta(1, "I'll check "),
        BlockDelta(1, "both."),
        BlockStop(1),
        BlockStart(2, "tool_call", tool_call_id="call_p", tool_name="weather"),
        BlockDelta(2, '{"city":'),
        BlockDelta(2, '"Paris"}'),
        BlockStop(2),
        BlockStart(3, "tool_call", tool_call_id="call_r", tool_name="weather"),
        BlockDelta(3, '{"city":"Rome"}'),
        BlockStop(3),
        Finish("tool_calls"),
        UsageEvent(Usage(input_tokens=50, output_tokens=20, cached_input_tokens=10, reasoning_tokens=5)),
    ]


def _encode_stream(events: list[StreamEvent], req: ChatRequest) -> tuple[bytes, dict[str, Any] | None]:
    encoder = INGRESS.stream_encoder(req)
    data = b"".join(encoder.encode(e) for e in events) + encoder.close()
    return data, encoder.response


def _sse(data: bytes) -> Iterator[tuple[str, dict[str, Any]]]:
    for chunk in data.decode().split("\n\n"):
        if chunk:
            event, payload = chunk.split("\n")
            assert event.startswith("event: ") and payload.startswith("data: ")
            yield event[7:], json.loads(payload[6:])


def _serve(data: bytes) -> openai.OpenAI:
    return _client(
        lambda request: httpx2.Response(200, content=data, headers={"content-type": "text/event-stream"})
    )


# The events for reasoning + text + two tool calls (`response.` prefix left out).
STREAM_ORDER = """
    created in_progress
    output_item.added reasoning_summary_part.added
        reasoning_summary_text.delta reasoning_summary_text.delta reasoning_summary_text.done
        reasoning_summary_part.done output_item.done
    output_item.added content_part.added
        output_text.delta output_text.delta output_text.done content_part.done output_item.done
    output_item.added
        function_call_arguments.delta function_call_arguments.delta function_call_arguments.done
        output_item.done
    output_item.added function_call_arguments.delta function_call_arguments.done output_item.done
    completed
"""


def test_stream_event_sequence_validates() -> None:
    req = _request(reasoning={"effort": "low", "summary": "auto"}, stream=True)
    data, final = _encode_stream(_stream_events(), req)
    events = list(_sse(data))
    assert [n for n, _ in events] == [e["type"] for _, e in events]
    for _, payload in events:
        EVENTS.validate_python(payload)
    assert [e["sequence_number"] for _, e in events] == list(range(len(events)))
    assert [name.removeprefix("response.") for name, _ in events] == STREAM_ORDER.split()
    assert events[0][1]["response"]["status"] == "in_progress" and events[0][1]["response"]["output"] == []
    # The final object is what the JSON answer for the same canonical response would be.
    assert final == events[-1][1]["response"]
    assert final == json.loads(INGRESS.encode_response(assemble(_stream_events()), req))


def test_sdk_reads_the_stream() -> None:
    req = _request(reasoning={"effort": "low", "summary": "auto"}, stream=True)
    data, _ = _encode_stream(_stream_events(), req)
    client = _serve(data)
    raw_events = list(client.responses.create(model="gpt-test", input="hi", stream=True))
    assert [e.sequence_number for e in raw_events] == sorted({e.sequence_number for e in raw_events})
    assert raw_events[-1].type == "response.completed"
    with client.responses.stream(model="gpt-test", input="hi") as stream:
        deltas = [e.delta for e in stream if e.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert "".join(deltas) == "I'll check both."
    assert final.output_text == "I'll check both."
    calls = [item for item in final.output if item.type == "function_call"]
    assert [(c.call_id, c.name, c.arguments) for c in calls] == [
        ("call_p", "weather", '{"city":"Paris"}'),
        ("call_r", "weather", '{"city":"Rome"}'),
    ]
    reasoning = final.output[0]
    assert reasoning.type == "reasoning" and reasoning.summary[0].text == "Let me think."
    assert final.usage is not None
    assert (final.usage.input_tokens, final.usage.output_tokens, final.usage.total_tokens) == (50, 20, 70)
    assert final.usage.input_tokens_details.cached_tokens == 10
    assert final.usage.output_tokens_details.reasoning_tokens == 5


def test_stream_consecutive_text_blocks_share_a_message_and_incomplete() -> None:
    events: list[StreamEvent] = [
        StreamStart(RESP_ID, "m", 1_700_000_000),
        BlockStart(0, "text"),
        BlockDelta(0, "a"),
        BlockStop(0),
        BlockStart(1, "text"),  # an empty block: no item
        BlockStop(1),
        BlockStart(2, "text"),
        BlockDelta(2, "b"),
        BlockStop(2),
        Finish("length"),
    ]
    req = _request(stream=True)
    data, final = _encode_stream(events, req)
    names = [n for n, _ in _sse(data)]
    assert names[-1] == "response.incomplete" and names.count("response.output_item.added") == 1
    assert final is not None and final["status"] == "incomplete"
    message = final["output"][0]
    assert [c["text"] for c in message["content"]] == ["a", "b"] and message["status"] == "incomplete"
    expected = json.loads(INGRESS.encode_response(assemble(events), req))
    assert final == expected and final["usage"] is None
    for _, payload in _sse(data):
        EVENTS.validate_python(payload)


def test_stream_failure_emits_error_and_failed() -> None:
    encoder = INGRESS.stream_encoder(_request(stream=True))
    data = encoder.encode(BlockStart(0, "text")) + encoder.encode(BlockDelta(0, "partial"))
    data += encoder.encode(StreamError(UpstreamError("upstream broke", status=502)))
    assert encoder.close() == b""
    events = list(_sse(data))
    for _, payload in events:
        EVENTS.validate_python(payload)
    assert [n for n, _ in events][-2:] == ["error", "response.failed"]
    failed = events[-1][1]["response"]
    assert failed["status"] == "failed" and failed["error"] == {
        "code": "server_error",
        "message": "upstream broke",
    }
    assert [e["sequence_number"] for _, e in events] == list(range(len(events)))
    late = INGRESS.stream_encoder(_request(stream=True))
    tail = late.error(UpstreamError("rate limited", status=429))
    names = [n for n, _ in _sse(tail)]
    assert names == ["response.created", "response.in_progress", "error", "response.failed"]
    assert late.response is not None and late.response["error"]["code"] == "rate_limit_exceeded"


# --- history --------------------------------------------------------------------------------------


def test_history_items_feed_the_next_request() -> None:
    first_body = {"model": "gpt-test", "input": "What is 2+2?", "instructions": "terse"}
    first_req = INGRESS.decode(first_body)
    first_resp = INGRESS.encode_response(
        _answer([ThinkingPart("add", signature="s1"), TextPart("4"), ToolCallPart("call_1", "log", "{}")]),
        first_req,
    )
    history = history_items(first_body, first_resp)
    assert [item.get("type") for item in history] == ["message", "reasoning", "message", "function_call"]
    second = prepend_history(
        {
            "model": "gpt-test",
            "input": [{"type": "function_call_output", "call_id": "call_1", "output": "ok"}],
            "previous_response_id": RESP_ID,
        },
        history,
    )
    req = INGRESS.decode(second)
    assert [m.role for m in req.messages] == ["user", "assistant", "tool"]  # instructions are not carried
    assert req.messages[1].parts == [
        ThinkingPart("add", signature="s1"),
        TextPart("4"),
        ToolCallPart("call_1", "log", "{}"),
    ]
    assert req.extra["previous_response_id"] == RESP_ID
    failed = {"status": "failed", "output": [{"type": "message"}]}
    assert history_items({"input": "x"}, failed) == [{"type": "message", "role": "user", "content": "x"}]
