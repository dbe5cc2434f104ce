"""Provider variants: Azure OpenAI deployment URLs, and upstreams that reject stream_options."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from omnirelay.app import create_app
from omnirelay.config import Config
from tests.conftest import MASTER_KEY
from tests.fakes import FakeState, ServerThread

AZURE_SEEN: list[dict[str, Any]] = []


async def azure_chat(request: Request) -> JSONResponse:
    body = await request.json()
    AZURE_SEEN.append(
        {
            "path": request.url.path,
            "query": dict(request.query_params),
            "api_key": request.headers.get("api-key"),
            "auth": request.headers.get("authorization"),
            "body": body,
        }
    )
    return JSONResponse(
        {
            "id": "chatcmpl-az",
            "object": "chat.completion",
            "created": 1,
            "model": "gpt-4o-2024-08-06",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "from azure"},
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5},
        }
    )


@pytest.fixture(scope="module")
def variant_gateway(fake: FakeState, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    azure = Starlette(
        routes=[Route("/openai/deployments/{deployment}/chat/completions", azure_chat, methods=["POST"])]
    )
    with ServerThread(azure) as az:
        config = Config.model_validate(
            {
                "master_key": MASTER_KEY,
                "providers": [
                    {
                        "name": "az",
                        "type": "azure",
                        "base_url": az.base_url,
                        "api_keys": ["azure-key-1"],
                        "api_version": "2024-10-21",
                        "models": [{"name": "gpt-4o", "upstream": "my-gpt4o-deployment"}],
                    },
                    {
                        "name": "plain",
                        "type": "openai-compatible",
                        "base_url": fake.base_url + "/v1",  # type: ignore[attr-defined]
                        "api_keys": ["sk-plain"],
                        "stream_usage": False,
                        "models": [{"name": "plain-model", "upstream": "gpt-4o-mini"}],
                    },
                ],
            }
        )
        app = create_app(config, Path(tmp_path_factory.mktemp("variant-data")))
        with ServerThread(app, lifespan="on") as server:
            yield server.base_url


def test_azure_deployment_url_and_api_key(variant_gateway: str) -> None:
    client = openai.OpenAI(base_url=variant_gateway + "/v1", api_key=MASTER_KEY, max_retries=0, timeout=10)
    reply = client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    assert reply.choices[0].message.content == "from azure"
    seen = AZURE_SEEN[-1]
    assert seen["path"] == "/openai/deployments/my-gpt4o-deployment/chat/completions"
    assert seen["query"] == {"api-version": "2024-10-21"}
    assert seen["api_key"] == "azure-key-1" and seen["auth"] is None


def test_stream_usage_off_sends_no_stream_options(variant_gateway: str, fake: FakeState) -> None:
    client = openai.OpenAI(base_url=variant_gateway + "/v1", api_key=MASTER_KEY, max_retries=0, timeout=10)
    chunks = list(
        client.chat.completions.create(
            model="plain-model", messages=[{"role": "user", "content": "no options"}], stream=True
        )
    )
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "echo: no options"
    assert "stream_options" not in fake.last_request["json"]
