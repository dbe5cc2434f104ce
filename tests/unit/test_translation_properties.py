"""Property tests: a canonical request keeps its meaning through each vendor's request builder.

For each vendor V the round trip is `canonical → V's upstream request body (the adapter's builder) →
the gateway's ingress codec for V's protocol → canonical'`, and canonical' must mean what canonical
meant for every field both protocols have. Fields and shapes a protocol cannot express are not
compared for that vendor; each such exception names the documented mapping decision it follows
(module docstrings of `upstream/openai_chat.py`, `upstream/anthropic/request.py`,
`upstream/gemini/request.py` and `ingress/gemini/__init__.py`).

The generated requests stay inside what all three vendors can express: a system prompt, alternating
user/assistant turns with non-blank text, user images (inline PNG), assistant tool calls with JSON-object
arguments and ids matching `[A-Za-z0-9_-]+`, a result for every call, function tools with simple JSON
schemas, tool_choice, max_tokens, temperature, top_p, stop sequences, response_format and reasoning.
Response-side and streaming properties are in `test_translation_response_properties.py`.
"""

from __future__ import annotations

import asyncio
import base64
import re
from collections.abc import Callable
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from omnirelay.canonical.messages import ImagePart, Message, Part, TextPart, ToolCallPart, ToolResultPart
from omnirelay.canonical.request import ChatRequest, ResponseFormat, Tool, ToolChoice
from omnirelay.ingress import anthropic as anthropic_ingress
from omnirelay.ingress import openai_chat as openai_ingress
from omnirelay.ingress.gemini import decode_for
from omnirelay.upstream.anthropic import request as anthropic_request
from omnirelay.upstream.base import Target
from omnirelay.upstream.gemini import request as gemini_request
from omnirelay.upstream.openai_chat import build_body as openai_build_body

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

# --- strategies ---------------------------------------------------------------------------------

# Non-blank text: every vendor drops empty text parts, and Anthropic drops whitespace-only ones.
TEXT = st.text(st.characters(codec="utf-8"), min_size=1, max_size=24).filter(lambda s: s.strip() != "")
IDS = st.from_regex(r"[A-Za-z0-9_-]{1,24}", fullmatch=True)
NAMES = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,15}", fullmatch=True)
JSON_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-(2**53), 2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8)
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8,
)
JSON_OBJECTS = st.dictionaries(st.text(max_size=8), JSON_VALUES, max_size=4)
# Keys that mean something in Gemini's functionResponse convention are drawn on purpose.
RESULT_OBJECTS = st.dictionaries(
    st.sampled_from(["error", "output", "result", "city", "temp", "items"]), JSON_VALUES, max_size=3
)
RESULT_TEXT = TEXT | RESULT_OBJECTS.map(lambda d: orjson.dumps(d).decode())
PROPERTY_TYPES: st.SearchStrategy[dict[str, Any]] = st.sampled_from(
    [
        {"type": "string"},
        {"type": "integer"},
        {"type": "boolean"},
        {"type": "array", "items": {"type": "string"}},
    ]
)


@st.composite
def schemas(draw: st.DrawFn) -> dict[str, Any]:
    """An object schema with string/integer/boolean/array-of-string properties."""
    names = draw(st.lists(st.text(min_size=1, max_size=8), unique=True, max_size=4))
    props: dict[str, Any] = {}
    for name in names:
        prop = dict(draw(PROPERTY_TYPES))
        if draw(st.booleans()):
            prop["description"] = draw(TEXT)
        props[name] = prop
    schema: dict[str, Any] = {"type": "object", "properties": props}
    required: list[str] = draw(st.lists(st.sampled_from(names), unique=True)) if names else []
    empty_required = draw(st.booleans())
    if required or empty_required:
        schema["required"] = required
    if draw(st.booleans()):
        schema["additionalProperties"] = False
    return schema


@st.composite
def tool_lists(draw: st.DrawFn) -> list[Tool]:
    names = draw(st.lists(NAMES, unique=True, max_size=3))
    return [Tool(name, draw(st.none() | TEXT), draw(schemas())) for name in names]


@st.composite
def images(draw: st.DrawFn) -> ImagePart:
    raw = PNG_MAGIC + draw(st.binary(max_size=24))
    return ImagePart(data=base64.b64encode(raw).decode(), media_type="image/png")


@st.composite
def user_parts(draw: st.DrawFn) -> list[Part]:
    parts: list[Part] = [TextPart(t) for t in draw(st.lists(TEXT, min_size=1, max_size=2))]
    for _ in range(draw(st.integers(0, 1))):
        parts.insert(draw(st.integers(0, len(parts))), draw(images()))
    return parts


@st.composite
def chat_requests(draw: st.DrawFn, ids: st.SearchStrategy[str] = IDS) -> ChatRequest:
    tools = draw(tool_lists())
    call_names = st.sampled_from([t.name for t in tools]) if tools else NAMES
    messages: list[Message] = []
    if draw(st.booleans()):
        messages.append(
            Message("system", [TextPart(t) for t in draw(st.lists(TEXT, min_size=1, max_size=2))])
        )
    used_ids: set[str] = set()
    after_results = False
    for _ in range(draw(st.integers(1, 3))):
        if not after_results or draw(st.booleans()):
            messages.append(Message("user", draw(user_parts())))
        texts = draw(st.lists(TEXT, max_size=2))
        with_calls = draw(st.booleans())
        if not texts and not with_calls:
            texts = [draw(TEXT)]
        calls: list[Part] = []
        for _ in range(draw(st.integers(1, 3)) if with_calls else 0):
            call_id = draw(ids.filter(lambda i: i not in used_ids))
            used_ids.add(call_id)
            args = orjson.dumps(draw(JSON_OBJECTS)).decode()
            calls.append(ToolCallPart(id=call_id, name=draw(call_names), arguments=args))
        messages.append(Message("assistant", [*(TextPart(t) for t in texts), *calls]))
        after_results = bool(calls)
        if calls:
            # Results answer every call, in any order; as `tool` messages or inside one user message.
            results: list[Part] = [
                ToolResultPart(c.id, [TextPart(draw(RESULT_TEXT))], is_error=draw(st.booleans()))
                for c in draw(st.permutations(calls))
                if isinstance(c, ToolCallPart)
            ]
            if draw(st.booleans()):
                messages.extend(Message("tool", [r]) for r in results)
            else:
                follow: list[Part] = [TextPart(t) for t in draw(st.lists(TEXT, max_size=1))]
                messages.append(Message("user", results + follow))
    if messages[-1].role == "assistant":
        messages.append(Message("user", draw(user_parts())))

    choice = None
    if tools:
        choice = draw(
            st.none()
            | st.sampled_from([ToolChoice("auto"), ToolChoice("none"), ToolChoice("required")])
            | st.sampled_from([t.name for t in tools]).map(lambda n: ToolChoice("tool", n))
        )
    fmt = draw(
        st.none()
        | st.just(ResponseFormat("json_object"))
        | st.builds(ResponseFormat, st.just("json_schema"), st.none() | NAMES, schemas())
    )
    budget, effort = draw(
        st.just((None, None))
        | st.tuples(st.integers(0, 40_000), st.none())
        | st.tuples(st.none(), st.sampled_from(["none", "low", "medium", "high"]))
    )
    return ChatRequest(
        model="model-x",
        messages=messages,
        tools=tools,
        tool_choice=choice,
        response_format=fmt,
        max_tokens=draw(st.none() | st.integers(1, 100_000)),
        temperature=draw(st.none() | st.floats(0, 1)),
        top_p=draw(st.none() | st.floats(0, 1)),
        stop=draw(st.just([]) | st.lists(st.text(min_size=1, max_size=6), min_size=1, max_size=4)),
        reasoning_budget=budget,
        reasoning_effort=effort,
    )


# --- meaning of a conversation ------------------------------------------------------------------

Item = tuple[Any, ...]
Turns = list[tuple[str, list[Item]]]


def _texts(parts: list[Part]) -> list[str]:
    return [p.text for p in parts if isinstance(p, TextPart)]


def _content_item(part: Part, json_results: bool) -> Item:
    if isinstance(part, TextPart):
        if json_results:
            return ("json", orjson.loads(part.text))
        return ("text", part.text)
    if isinstance(part, ImagePart):
        assert part.data is not None, "an inline image came back without its data"
        return ("image", part.media_type, base64.b64decode(part.data))
    raise AssertionError(f"unexpected part {part!r}")


def _item(part: Part, json_results: bool) -> Item:
    if isinstance(part, ToolCallPart):
        return ("call", part.id, part.name, orjson.loads(part.arguments or "{}"))
    if isinstance(part, ToolResultPart):
        content = tuple(_content_item(p, json_results) for p in part.content)
        return ("result", part.tool_call_id, content, part.is_error)
    return _content_item(part, False)


def view(
    messages: list[Message], *, rename_ids: bool = False, json_results: bool = False
) -> tuple[str, Turns]:
    """(system text, turns): system parts joined by a blank line; `tool` messages are user-side; turns
    of one role are merged; tool-call arguments parsed; images as bytes. With `rename_ids`, call ids
    become `#n` in order of appearance (and results refer to those), for protocols that carry no ids."""
    system = "\n\n".join(t for m in messages if m.role == "system" for t in _texts(m.parts))
    turns: Turns = []
    for message in messages:
        if message.role == "system":
            continue
        role = "assistant" if message.role == "assistant" else "user"
        items = [_item(p, json_results) for p in message.parts]
        if turns and turns[-1][0] == role:
            turns[-1][1].extend(items)
        else:
            turns.append((role, items))
    if rename_ids:
        names: dict[str, str] = {}
        for _, items in turns:
            for i, item in enumerate(items):
                if item[0] == "call":
                    names[item[1]] = f"#{len(names)}"
                    items[i] = ("call", names[item[1]], *item[2:])
                elif item[0] == "result":
                    items[i] = ("result", names.get(item[1], "?" + item[1]), *item[2:])
    return system, turns


def assert_results_follow_calls(messages: list[Message]) -> None:
    """Every tool result answers a call of the assistant turn right before it, each call once."""
    _, turns = view(messages)
    for n, (role, items) in enumerate(turns):
        results = [item[1] for item in items if item[0] == "result"]
        if not results:
            continue
        assert role == "user" and n > 0, f"tool results outside a user turn: {turns}"
        calls = [item[1] for item in turns[n - 1][1] if item[0] == "call"]
        assert sorted(results) == sorted(calls), f"results {results} do not answer calls {calls}"


def _split(message: Message) -> tuple[list[ToolResultPart], list[Part]]:
    results = [p for p in message.parts if isinstance(p, ToolResultPart)]
    return results, [p for p in message.parts if not isinstance(p, ToolResultPart)]


def _reasoning_requested(req: ChatRequest) -> bool:
    if req.reasoning_budget is not None:
        return req.reasoning_budget > 0
    return req.reasoning_effort is not None and req.reasoning_effort != "none"


def _schema_meaning(schema: dict[str, Any] | None, *, gemini: bool = False) -> dict[str, Any]:
    """An absent schema means "no parameters"; an empty `required` list means none required."""
    out = dict(schema) if schema else {"type": "object", "properties": {}}
    out.setdefault("properties", {})
    if not out.get("required"):
        out.pop("required", None)
    if gemini:
        # Documented in upstream/gemini/schema.py: Gemini's Schema has no `additionalProperties`
        # (the API answers 400 for it), so the cleaned schema drops it.
        out.pop("additionalProperties", None)
    return out


def _tools(tools: list[Tool], *, gemini: bool = False) -> list[tuple[Any, ...]]:
    return [(t.name, t.description, _schema_meaning(t.parameters, gemini=gemini)) for t in tools]


def _choice(choice: ToolChoice | None) -> tuple[str, str | None] | None:
    return None if choice is None else (choice.mode, choice.name if choice.mode == "tool" else None)


def _format(fmt: ResponseFormat | None) -> tuple[str, Any] | None:
    if fmt is None or fmt.type == "text":
        return None
    return (fmt.type, fmt.schema if fmt.type == "json_schema" else None)


def settings_view(req: ChatRequest, *, gemini: bool = False) -> dict[str, Any]:
    return {
        "tools": _tools(req.tools, gemini=gemini),
        "tool_choice": _choice(req.tool_choice),
        "max_tokens": req.max_tokens,
        "temperature": req.temperature,
        "top_p": req.top_p,
        "stop": list(req.stop),
        "response_format": _format(req.response_format),
    }


def assert_same(expected: Any, actual: Any, what: str) -> None:
    assert expected == actual, f"{what} changed:\n expected {expected!r}\n actual   {actual!r}"


# --- OpenAI Chat --------------------------------------------------------------------------------

OPENAI_TARGETS = st.sampled_from(
    [
        # api.openai.com gets `max_completion_tokens`, other OpenAI-compatible vendors `max_tokens`.
        Target(name="openai", base_url="https://api.openai.com/v1", client=None),
        Target(name="vllm", base_url="http://vllm.internal:8000/v1", client=None),
    ]
)


def openai_expected(req: ChatRequest) -> list[Message]:
    """The conversation as Chat Completions can say it (upstream/openai_chat.py, `encode_messages`):
    - a user turn of text only is one string, its parts joined by a blank line (`_user_content`);
    - an assistant turn's text is one `content` string, parts joined with nothing, before its calls;
    - every tool result is a `tool` message whose content is its text; Chat has no error flag, so an
      error result is its text prefixed with "Error: " and decodes as a normal result."""
    out: list[Message] = []
    for message in req.messages:
        if message.role in ("system",):
            out.append(message)
        elif message.role == "assistant":
            text = "".join(_texts(message.parts))
            calls = [p for p in message.parts if isinstance(p, ToolCallPart)]
            out.append(Message("assistant", [*([TextPart(text)] if text else []), *calls]))
        else:
            results, rest = _split(message)
            for r in results:
                text = "\n".join(_texts(r.content))
                out.append(
                    Message(
                        "tool", [ToolResultPart(r.tool_call_id, [TextPart("Error: " * r.is_error + text)])]
                    )
                )
            if rest and all(isinstance(p, TextPart) for p in rest):
                rest = [TextPart("\n\n".join(_texts(rest)))]
            if rest:
                out.append(Message("user", rest))
    return out


def openai_effort(req: ChatRequest) -> str | None:
    """Documented: effort as given; a budget maps to low (<=1024), medium (<=8192), high; <=0 → nothing."""
    if req.reasoning_effort:
        return str(req.reasoning_effort)
    budget = req.reasoning_budget
    if budget is None or budget <= 0:
        return None
    return "low" if budget <= 1024 else "medium" if budget <= 8192 else "high"


@SETTINGS
@given(req=chat_requests(), target=OPENAI_TARGETS)
def test_openai_chat_request_round_trip(req: ChatRequest, target: Target) -> None:
    body = openai_build_body(req, target, stream=False)
    back = openai_ingress.decode_request(orjson.loads(orjson.dumps(body)))

    assert_same(view(openai_expected(req)), view(back.messages), "conversation")
    assert_results_follow_calls(back.messages)
    assert_same(settings_view(req), settings_view(back), "settings")
    assert_same(openai_effort(req), back.reasoning_effort, "reasoning_effort")
    assert_same(_reasoning_requested(req), back.reasoning_effort not in (None, "none"), "reasoning on/off")


# --- Anthropic Messages -------------------------------------------------------------------------


def anthropic_thinking(req: ChatRequest) -> int | None:
    """The budget Anthropic gets (upstream/anthropic/request.py): `reasoning_budget` wins (0 → off,
    below 1024 → 1024), else `EFFORT_BUDGETS[effort]`; and thinking is switched off when a tool is
    forced, or when the last assistant turn holds tool calls without signed thinking to replay (the
    generated histories never carry signed thinking)."""
    if req.reasoning_budget is not None:
        budget = (
            max(req.reasoning_budget, anthropic_request.MIN_THINKING_BUDGET)
            if req.reasoning_budget > 0
            else None
        )
    elif req.reasoning_effort in (None, "none"):
        budget = None
    else:
        budget = anthropic_request.EFFORT_BUDGETS[req.reasoning_effort]
    forced = bool(req.tools) and req.tool_choice is not None and req.tool_choice.mode in ("required", "tool")
    last_assistant = next(m for m in reversed(req.messages) if m.role == "assistant")
    if forced or any(isinstance(p, ToolCallPart) for p in last_assistant.parts):
        return None
    return budget


def anthropic_expected(req: ChatRequest) -> list[Message]:
    """System texts stay (joined by a blank line when there are several); `response_format`
    json_object has no Messages field and becomes an instruction appended to the system prompt; tool
    ids go through `tool_id` (ids matching `[a-zA-Z0-9_-]+` are kept as they are)."""
    out: list[Message] = []
    for message in req.messages:
        parts: list[Part] = []
        for part in message.parts:
            if isinstance(part, ToolCallPart):
                part = ToolCallPart(anthropic_request.tool_id(part.id), part.name, part.arguments)
            elif isinstance(part, ToolResultPart):
                part = ToolResultPart(
                    anthropic_request.tool_id(part.tool_call_id), part.content, part.is_error
                )
            parts.append(part)
        out.append(Message(message.role, parts))
    fmt = req.response_format
    if fmt is not None and fmt.type == "json_object":
        out.append(Message("system", [TextPart(anthropic_request.JSON_OBJECT_INSTRUCTION)]))
    return out


def anthropic_settings(req: ChatRequest, budget: int | None) -> dict[str, Any]:
    expected = settings_view(req)
    thinking = budget is not None
    # Documented: max_tokens defaults to 4096 and, when not above the thinking budget, grows by it.
    max_tokens = req.max_tokens or anthropic_request.DEFAULT_MAX_TOKENS
    if thinking and budget is not None and max_tokens <= budget:
        max_tokens += budget
    expected["max_tokens"] = max_tokens
    # Documented: with thinking on, temperature is dropped and top_p below 0.95 is dropped; top_p is
    # never sent together with temperature (newer models reject the pair).
    temperature = None if thinking else req.temperature
    expected["temperature"] = temperature
    keep_top_p = req.top_p is not None and temperature is None and (not thinking or req.top_p >= 0.95)
    expected["top_p"] = req.top_p if keep_top_p else None
    # Documented: blank stop sequences are dropped.
    expected["stop"] = [s for s in req.stop if s.strip()]
    fmt = req.response_format
    if fmt is not None and fmt.type == "json_object":
        expected["response_format"] = None  # an instruction in the system prompt instead (compared there)
    return expected


@SETTINGS
@given(req=chat_requests())
def test_anthropic_request_round_trip(req: ChatRequest) -> None:
    body = anthropic_request.build_body(req)
    back = anthropic_ingress.decode(orjson.loads(orjson.dumps(body)))

    assert_same(view(anthropic_expected(req)), view(back.messages), "conversation")
    assert_results_follow_calls(back.messages)
    budget = anthropic_thinking(req)
    assert_same(anthropic_settings(req, budget), settings_view(back), "settings")
    assert_same(budget, back.reasoning_budget, "thinking budget")
    on = back.reasoning_budget is not None or back.reasoning_effort not in (None, "none")
    assert_same(budget is not None, on, "reasoning on/off")


@SETTINGS
@given(req=chat_requests(ids=st.text(min_size=1, max_size=12)))
def test_anthropic_request_round_trip_foreign_tool_ids(req: ChatRequest) -> None:
    """Ids from other vendors (any text): `tool_id` rewrites those Anthropic rejects, the same way for
    a call and for the result that answers it (documented in upstream/anthropic/request.py)."""
    body = anthropic_request.build_body(req)
    back = anthropic_ingress.decode(orjson.loads(orjson.dumps(body)))
    assert_same(view(anthropic_expected(req)), view(back.messages), "conversation")
    assert_results_follow_calls(back.messages)
    for message in back.messages:
        for part in message.parts:
            call_id = part.id if isinstance(part, ToolCallPart) else getattr(part, "tool_call_id", None)
            assert call_id is None or re.fullmatch(r"[a-zA-Z0-9_-]+", call_id), call_id


# --- Gemini -------------------------------------------------------------------------------------


def _gemini_response(result: ToolResultPart) -> tuple[Any, bool]:
    """The `functionResponse.response` the builder writes and the error flag the decoder reads back
    (upstream/gemini/request.py, ingress/gemini/decode.py): an object result is sent as itself, other
    text as `{"result": text}`, an error result as `{"error": payload}`; a response with an `error`
    key and no `output` key is an error result (Gemini's convention)."""
    text = "".join(_texts(result.content))
    value: Any = None
    if text.strip().startswith("{"):
        try:
            value = orjson.loads(text)
        except orjson.JSONDecodeError:
            value = None
    payload: Any = value if isinstance(value, dict) else text
    if result.is_error:
        response = {"error": payload}
    else:
        response = payload if isinstance(payload, dict) else {"result": payload}
    return response, "error" in response and "output" not in response


def gemini_expected(req: ChatRequest) -> list[Message]:
    """Gemini gets no ids for calls it did not issue (documented in upstream/gemini/request.py), so
    the decoder pairs a functionResponse with the first unanswered call of the same name in the
    latest model turn (ingress/gemini/__init__.py). Results are rewritten to the call they will be
    paired with that way; ids are compared by position (`view(rename_ids=True)`)."""
    out: list[Message] = []
    calls: list[ToolCallPart] = []
    pending: list[ToolCallPart] = []
    for message in req.messages:
        if message.role == "assistant":
            calls = [p for p in message.parts if isinstance(p, ToolCallPart)]
            pending = list(calls)
            out.append(message)
            continue
        parts: list[Part] = []
        for part in message.parts:
            if isinstance(part, ToolResultPart):
                name = next(c.name for c in calls if c.id == part.tool_call_id)
                call = next(c for c in pending if c.name == name)
                pending.remove(call)
                response, is_error = _gemini_response(part)
                part = ToolResultPart(call.id, [TextPart(orjson.dumps(response).decode())], is_error)
            parts.append(part)
        out.append(Message(message.role, parts))
    return out


def gemini_settings(req: ChatRequest) -> dict[str, Any]:
    expected = settings_view(req, gemini=True)
    choice = req.tool_choice
    if choice is not None and choice.mode == "tool":
        # A named tool is mode ANY with one allowed name; the decoder offers only allowed tools.
        expected["tools"] = [t for t in expected["tools"] if t[0] == choice.name]
    return expected


def gemini_reasoning(req: ChatRequest) -> tuple[str | None, int | None]:
    """(effort, budget) after the trip: `thinkingBudget` is the budget or `EFFORT_BUDGETS[effort]`;
    the decoder reads 0 as effort "none" and a positive budget as itself."""
    budget = req.reasoning_budget
    if budget is None and req.reasoning_effort:
        budget = gemini_request.EFFORT_BUDGETS[req.reasoning_effort]
    if budget is None:
        return None, None
    return ("none", None) if budget == 0 else (None, budget)


def _run(make: Callable[[], Any]) -> Any:
    return asyncio.run(make())


@SETTINGS
@given(req=chat_requests())
def test_gemini_request_round_trip(req: ChatRequest) -> None:
    body = _run(lambda: gemini_request.build_request(req))
    back = decode_for("models/" + req.model, orjson.loads(orjson.dumps(body)))

    expected = view(gemini_expected(req), rename_ids=True, json_results=True)
    actual = view(back.messages, rename_ids=True, json_results=True)
    assert_same(expected, actual, "conversation")
    assert_results_follow_calls(back.messages)
    assert_same(gemini_settings(req), settings_view(back, gemini=True), "settings")
    assert_same(gemini_reasoning(req), (back.reasoning_effort, back.reasoning_budget), "reasoning")
    on = (back.reasoning_budget or 0) > 0 or back.reasoning_effort not in (None, "none")
    assert_same(_reasoning_requested(req), on, "reasoning on/off")
