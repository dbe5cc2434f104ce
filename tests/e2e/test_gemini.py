"""The Gemini surface driven by google-genai, and Gemini as an upstream for the other SDKs."""

from __future__ import annotations

import anthropic
import httpx
import openai
import pytest
from google import genai
from google.genai import errors as genai_errors
from google.genai import types

from omnirelay.accounting.tokenizer import count_text
from tests.conftest import GEMINI_KEY, MASTER_KEY, Gateway
from tests.fakes import FakeState
from tests.fakes.gemini_upstream import FakeGeminiState

WEATHER = types.FunctionDeclaration(
    name="get_weather",
    description="Weather for a city",
    parameters_json_schema={"type": "object", "properties": {"query": {"type": "string"}}},
)


def gclient(gateway: Gateway, prefix: str = "", version: str = "v1beta") -> genai.Client:
    return genai.Client(
        api_key=MASTER_KEY,
        http_options=types.HttpOptions(
            base_url=gateway.base_url + prefix, api_version=version, timeout=10_000
        ),
    )


@pytest.fixture(params=[("", "v1beta"), ("/google", "v1beta"), ("", "v1")], ids=["v1beta", "google", "v1"])
def client(gateway: Gateway, request: pytest.FixtureRequest) -> genai.Client:
    return gclient(gateway, *request.param)


@pytest.mark.parametrize("model", ["mock", "gpt-4o-mini", "claude-sonnet-4-6", "gemini-2.5-flash"])
def test_generate_text_on_every_upstream(client: genai.Client, model: str) -> None:
    reply = client.models.generate_content(
        model=model,
        contents="hello gemini",
        config=types.GenerateContentConfig(system_instruction="be brief"),
    )
    assert reply.text == "echo: hello gemini"
    assert reply.usage_metadata is not None and (reply.usage_metadata.prompt_token_count or 0) > 0


@pytest.mark.parametrize("model", ["mock", "gpt-4o-mini", "claude-sonnet-4-6", "gemini-2.5-flash"])
def test_stream_on_every_upstream(client: genai.Client, model: str) -> None:
    chunks = list(client.models.generate_content_stream(model=model, contents="stream this please"))
    assert "".join(c.text or "" for c in chunks) == "echo: stream this please"
    assert chunks[-1].candidates and chunks[-1].candidates[0].finish_reason == types.FinishReason.STOP


@pytest.mark.parametrize("model", ["gpt-4o-mini", "claude-sonnet-4-6", "gemini-2.5-flash"])
def test_function_call_round_trip(gateway: Gateway, model: str) -> None:
    client = gclient(gateway)
    config = types.GenerateContentConfig(
        tools=[types.Tool(function_declarations=[WEATHER])],
        automatic_function_calling=types.AutomaticFunctionCallingConfig(disable=True),
    )
    first = client.models.generate_content(model=model, contents="weather in Lima", config=config)
    calls = first.function_calls or []
    assert calls and calls[0].name == "get_weather" and calls[0].args == {"query": "weather in Lima"}
    history = [
        types.Content(role="user", parts=[types.Part(text="weather in Lima")]),
        first.candidates[0].content,  # type: ignore[index]
        types.Content(
            role="user",
            parts=[
                types.Part(
                    function_response=types.FunctionResponse(
                        id=calls[0].id, name="get_weather", response={"result": "foggy"}
                    )
                )
            ],
        ),
    ]
    second = client.models.generate_content(model=model, contents=history, config=config)  # type: ignore[arg-type]
    assert second.text is not None and second.text.startswith("tool said:") and "foggy" in second.text


def test_passthrough_keeps_gemini_bytes_and_usage(gateway: Gateway, gemini_fake: FakeGeminiState) -> None:
    client = gclient(gateway)
    reply = client.models.generate_content(
        model="gem-cache-hit",
        contents="cached?",
        config=types.GenerateContentConfig(
            safety_settings=[
                types.SafetySetting(
                    category=types.HarmCategory.HARM_CATEGORY_HARASSMENT,
                    threshold=types.HarmBlockThreshold.BLOCK_NONE,
                )
            ]
        ),
    )
    assert reply.usage_metadata is not None and reply.usage_metadata.cached_content_token_count == 900
    sent = gemini_fake.requests[-1]
    assert sent["path"].endswith("/models/cache-hit:generateContent")
    assert sent["json"]["safetySettings"][0]["threshold"] == "BLOCK_NONE"
    assert sent["key"] == GEMINI_KEY


def test_json_array_stream_form(gateway: Gateway) -> None:
    url = gateway.base_url + "/v1beta/models/mock:streamGenerateContent"
    resp = httpx.post(
        url, params={"key": MASTER_KEY}, json={"contents": [{"parts": [{"text": "array form"}]}]}
    )
    assert resp.status_code == 200
    chunks = resp.json()
    assert isinstance(chunks, list) and chunks
    text = "".join(p.get("text", "") for c in chunks for p in c["candidates"][0]["content"]["parts"])
    assert text == "echo: array form"


def test_encoded_colon_and_key_query(gateway: Gateway) -> None:
    url = gateway.base_url + "/v1beta/models/mock%3AgenerateContent"
    resp = httpx.post(url, params={"key": MASTER_KEY}, json={"contents": [{"parts": [{"text": "encoded"}]}]})
    assert (
        resp.status_code == 200
        and resp.json()["candidates"][0]["content"]["parts"][0]["text"] == "echo: encoded"
    )


def test_errors_in_google_shape(client: genai.Client, gateway: Gateway) -> None:
    with pytest.raises(genai_errors.ClientError) as info:
        client.models.generate_content(model="no-such-model", contents="x")
    assert info.value.code == 404 and info.value.status == "NOT_FOUND"
    with pytest.raises(genai_errors.ClientError) as limited:
        client.models.generate_content(model="gem-fail-429", contents="x")
    assert limited.value.code == 429 and limited.value.status == "RESOURCE_EXHAUSTED"
    bad = httpx.post(
        gateway.base_url + "/v1beta/models/mock:generateContent",
        params={"key": "wrong"},
        json={"contents": []},
    )
    assert bad.status_code == 401 and bad.json()["error"]["status"] == "UNAUTHENTICATED"


@pytest.mark.parametrize("model", ["mock", "text-embedding-3-small", "gemini-embedding-001"])
def test_embeddings(client: genai.Client, model: str) -> None:
    one = client.models.embed_content(model=model, contents="alpha")
    assert one.embeddings and len(one.embeddings[0].values or []) > 0
    many = client.models.embed_content(model=model, contents=["alpha", "beta"])
    assert many.embeddings and len(many.embeddings) >= 1


def test_count_tokens_and_models(client: genai.Client) -> None:
    counted = client.models.count_tokens(model="mock", contents="a" * 400).total_tokens
    assert counted == 3 + count_text("user", "mock") + count_text("a" * 400, "mock") + 3
    names = [m.name for m in client.models.list()]
    assert "models/mock" in names and "models/gemini-2.5-flash" in names


# --- other SDKs to a Gemini upstream ----------------------------------------------------------


@pytest.fixture
def oclient(gateway: Gateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.base_url + "/v1", api_key=MASTER_KEY, max_retries=0, timeout=10)


def test_openai_client_to_gemini(oclient: openai.OpenAI, gemini_fake: FakeGeminiState) -> None:
    completion = oclient.chat.completions.create(
        model="gemini-2.5-flash",
        messages=[{"role": "system", "content": "terse"}, {"role": "user", "content": "hello gemini"}],
    )
    assert completion.choices[0].message.content == "echo: hello gemini"
    assert gemini_fake.requests[-1]["json"]["systemInstruction"]["parts"][0]["text"] == "terse"
    cached = oclient.chat.completions.create(
        model="gem-cache-hit", messages=[{"role": "user", "content": "x"}]
    )
    assert cached.usage is not None and cached.usage.prompt_tokens == 1000
    assert cached.usage.prompt_tokens_details and cached.usage.prompt_tokens_details.cached_tokens == 900


def test_openai_client_gemini_finish_reasons(oclient: openai.OpenAI) -> None:
    cut = oclient.chat.completions.create(
        model="gem-max-tokens", messages=[{"role": "user", "content": "a b c d"}]
    )
    assert cut.choices[0].finish_reason == "length"
    blocked = oclient.chat.completions.create(
        model="gem-blocked", messages=[{"role": "user", "content": "x"}]
    )
    assert blocked.choices[0].finish_reason == "content_filter"


def test_openai_client_streamed_tools_via_gemini(oclient: openai.OpenAI) -> None:
    tools = [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "parameters": {
                    "type": "object",
                    "properties": {"query": {"type": "string"}},
                    "additionalProperties": False,
                },
            },
        }
    ]
    with oclient.chat.completions.stream(
        model="gemini-2.5-flash",
        tools=tools,  # type: ignore[arg-type]
        messages=[{"role": "user", "content": "weather in Quito"}],
    ) as stream:
        final = stream.get_final_completion()
    call = (final.choices[0].message.tool_calls or [])[0]
    assert final.choices[0].finish_reason == "tool_calls" and call.function.name == "get_weather"  # type: ignore[union-attr]


def test_anthropic_client_to_gemini(gateway: Gateway) -> None:
    client = anthropic.Anthropic(base_url=gateway.base_url, api_key=MASTER_KEY, max_retries=0, timeout=10)
    message = client.messages.create(
        model="gemini-2.5-flash",
        max_tokens=64,
        messages=[{"role": "user", "content": "hello from claude sdk"}],
    )
    assert message.content[0].text == "echo: hello from claude sdk"  # type: ignore[union-attr]


def test_openai_embeddings_to_gemini(oclient: openai.OpenAI, fake: FakeState) -> None:
    result = oclient.embeddings.create(model="gemini-embedding-001", input=["a", "b"])
    assert len(result.data) == 2 and len(result.data[0].embedding) > 0
