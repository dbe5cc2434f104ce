"""The OpenAI endpoints next to chat: models, embeddings, legacy completions, moderations, images, audio."""

from __future__ import annotations

import base64
import struct

import httpx
import openai
import pytest

from tests.conftest import MASTER_KEY, Gateway
from tests.fakes import FakeState


@pytest.fixture
def client(gateway: Gateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.base_url + "/v1", api_key=MASTER_KEY, max_retries=0, timeout=10)


def test_models_list_and_retrieve(client: openai.OpenAI) -> None:
    ids = [m.id for m in client.models.list()]
    assert {"gpt-4o-mini", "fast", "mock", "slow-first-byte"} <= set(ids)
    model = client.models.retrieve("fast")
    assert model.id == "fast" and model.owned_by == "oai"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("no-such-model")


def test_embeddings_base64_default_and_float(client: openai.OpenAI, fake: FakeState) -> None:
    default = client.embeddings.create(model="text-embedding-3-small", input=["alpha", "beta"])
    assert fake.last_request["json"]["encoding_format"] == "base64"
    floats = client.embeddings.create(
        model="text-embedding-3-small", input=["alpha", "beta"], encoding_format="float"
    )
    assert [d.embedding for d in default.data] == [d.embedding for d in floats.data]
    assert len(default.data) == 2 and default.usage.prompt_tokens > 0


def test_mock_embeddings_base64_matches_float(client: openai.OpenAI) -> None:
    as_b64 = client.embeddings.create(model="mock", input="same text", dimensions=8)
    as_float = client.embeddings.create(
        model="mock", input="same text", dimensions=8, encoding_format="float"
    )
    assert as_b64.data[0].embedding == as_float.data[0].embedding
    raw = httpx.post(
        client.base_url.join("embeddings").__str__(),
        headers={"Authorization": f"Bearer {MASTER_KEY}"},
        json={"model": "mock", "input": "same text", "dimensions": 8, "encoding_format": "base64"},
    ).json()
    decoded = struct.unpack("<8f", base64.b64decode(raw["data"][0]["embedding"]))
    assert list(decoded) == as_float.data[0].embedding


def test_legacy_completions(client: openai.OpenAI) -> None:
    completion = client.completions.create(model="gpt-3.5-turbo-instruct", prompt="say this")
    assert completion.choices[0].text == "echo: say this"
    chunks = list(
        client.completions.create(model="gpt-3.5-turbo-instruct", prompt="stream this", stream=True)
    )
    assert "".join(c.choices[0].text for c in chunks if c.choices) == "echo: stream this"


def test_moderations(client: openai.OpenAI) -> None:
    result = client.moderations.create(model="omni-moderation-latest", input="hello")
    assert result.results[0].flagged is False


def test_images(client: openai.OpenAI) -> None:
    image = client.images.generate(model="dall-e-3", prompt="a cat", response_format="b64_json")
    assert image.data and image.data[0].b64_json


def test_speech_is_binary(client: openai.OpenAI) -> None:
    audio = client.audio.speech.create(model="tts-1", voice="alloy", input="hello world")
    assert audio.content == b"ID3FAKEAUDIO:hello world"


def test_transcription_multipart(client: openai.OpenAI, fake: FakeState) -> None:
    result = client.audio.transcriptions.create(
        model="whisper-1", file=("a.wav", b"RIFF" + b"\0" * 96, "audio/wav")
    )
    assert result.text == "transcribed 100 bytes"
    assert fake.last_request["form"]["model"] == "whisper-1"


def test_side_endpoint_on_mock_is_a_clear_400(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.images.generate(model="mock", prompt="x")
    assert "does not serve" in info.value.message


def test_health(gateway: Gateway) -> None:
    assert httpx.get(gateway.base_url + "/health").json() == {"status": "ok"}
    ready = httpx.get(gateway.base_url + "/health/ready").json()
    assert ready["status"] == "ready" and ready["store"] is True
