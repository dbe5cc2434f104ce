"""Errors reach the client in OpenAI's shape, with the right status, whatever failed."""

from __future__ import annotations

import time

import httpx
import openai
import pytest

from tests.conftest import MASTER_KEY, UPSTREAM_KEYS, Gateway
from tests.fakes import FakeState

USER = [{"role": "user", "content": "hi"}]


@pytest.fixture
def client(gateway: Gateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.base_url + "/v1", api_key=MASTER_KEY, max_retries=0, timeout=10)


def post(gateway: Gateway, body: bytes | dict[str, object], key: str | None = MASTER_KEY) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    if isinstance(body, dict):
        return httpx.post(gateway.base_url + "/v1/chat/completions", json=body, headers=headers, timeout=10)
    return httpx.post(gateway.base_url + "/v1/chat/completions", content=body, headers=headers, timeout=10)


def assert_openai_error(resp: httpx.Response, status: int) -> dict[str, object]:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"] == "application/json"
    assert resp.headers["x-request-id"].startswith("req_")
    error = resp.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    return error  # type: ignore[no-any-return]


def test_missing_and_wrong_key(gateway: Gateway) -> None:
    assert_openai_error(post(gateway, {"model": "gpt-4o-mini", "messages": USER}, key=None), 401)
    error = assert_openai_error(
        post(gateway, {"model": "gpt-4o-mini", "messages": USER}, key="sk-wrong"), 401
    )
    assert error["code"] == "invalid_api_key"
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=gateway.base_url + "/v1", api_key="sk-nope", max_retries=0).models.list()


def test_malformed_json_names_the_position(gateway: Gateway) -> None:
    error = assert_openai_error(post(gateway, b'{"model": "gpt-4o-mini", "messages": [}'), 400)
    assert "line 1 column" in str(error["message"])
    assert error["code"] == "invalid_json"


def test_invalid_shape(gateway: Gateway) -> None:
    error = assert_openai_error(post(gateway, {"model": "gpt-4o-mini"}), 400)
    assert error["param"] == "messages"
    assert_openai_error(post(gateway, b"[1, 2]"), 400)


def test_unknown_model_names_the_models(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        client.chat.completions.create(model="gpt-99", messages=USER)  # type: ignore[arg-type]
    assert "gpt-99" in info.value.message and "gpt-4o-mini" in info.value.message
    assert info.value.code == "model_not_found"


def test_body_over_limit(gateway: Gateway) -> None:
    big = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x" * 1_200_000}]}
    error = assert_openai_error(post(gateway, big), 413)
    assert "1000000" in str(error["message"])


def test_upstream_429_keeps_retry_after(client: openai.OpenAI) -> None:
    with pytest.raises(openai.RateLimitError) as info:
        client.chat.completions.create(model="fail-429", messages=USER)  # type: ignore[arg-type]
    assert info.value.response.headers["retry-after"] == "2"
    assert "Rate limit reached" in info.value.message
    assert info.value.response.headers["x-omnirelay-provider"] == "oai/fail-429"


def test_upstream_500_becomes_502_with_message(client: openai.OpenAI) -> None:
    with pytest.raises(openai.InternalServerError) as info:
        client.chat.completions.create(model="fail-500", messages=USER)  # type: ignore[arg-type]
    assert info.value.status_code == 502
    assert "HTTP 500" in info.value.message and "error while processing" in info.value.message


def test_upstream_503_stays_503(client: openai.OpenAI) -> None:
    with pytest.raises(openai.InternalServerError) as info:
        client.chat.completions.create(model="fail-503", messages=USER)  # type: ignore[arg-type]
    assert info.value.status_code == 503


def test_upstream_400_reaches_client_as_400(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="fail-400", messages=USER)  # type: ignore[arg-type]
    assert info.value.param == "messages" and info.value.code == "invalid_value"


def test_upstream_key_never_leaks(client: openai.OpenAI, fake: FakeState) -> None:
    leaked = f'{{"error": {{"message": "Incorrect API key provided: {UPSTREAM_KEYS[0]}", "type": "x"}}}}'
    # Both keys are refused (the first refusal takes its key out of rotation and tries the other).
    fake.next_responses.extend([(401, {"content-type": "application/json"}, leaked.encode())] * 2)
    with pytest.raises(openai.AuthenticationError) as info:
        client.chat.completions.create(model="gpt-4o-mini", messages=USER)  # type: ignore[arg-type]
    assert UPSTREAM_KEYS[0] not in info.value.response.text
    assert "refused the gateway's credentials" in info.value.message


def test_malformed_upstream_json_is_502(client: openai.OpenAI) -> None:
    with pytest.raises(openai.InternalServerError) as info:
        client.chat.completions.create(model="bad-json", messages=USER)  # type: ignore[arg-type]
    assert info.value.status_code == 502 and "malformed JSON" in info.value.message


def test_stream_cut_midway_ends_with_error_event(client: openai.OpenAI, gateway: Gateway) -> None:
    received = []
    with pytest.raises(openai.APIError) as info:
        for chunk in client.chat.completions.create(model="cut-stream", messages=USER, stream=True):  # type: ignore[arg-type]
            received.extend(c.delta.content or "" for c in chunk.choices)
    assert received, "the client got the content sent before the cut"
    assert "before it was complete" in info.value.message or "broke" in info.value.message


def test_slow_first_byte_times_out_as_504(client: openai.OpenAI) -> None:
    started = time.monotonic()
    with pytest.raises(openai.APIStatusError) as info:
        client.chat.completions.create(model="slow-first-byte", messages=USER)  # type: ignore[arg-type]
    assert info.value.status_code == 504
    assert time.monotonic() - started < 2.5


def test_unknown_path_is_openai_404(gateway: Gateway) -> None:
    resp = httpx.get(gateway.base_url + "/v1/nothing-here", timeout=5)
    assert_openai_error(resp, 404)


def test_client_disconnect_cancels_the_upstream_stream(gateway: Gateway, fake: FakeState) -> None:
    before = fake.disconnects
    body = {
        "model": "slow-stream",
        "stream": True,
        "messages": [{"role": "user", "content": "a b c d e f g h"}],
    }
    with httpx.stream(
        "POST",
        gateway.base_url + "/v1/chat/completions",
        json=body,
        timeout=10,
        headers={"Authorization": f"Bearer {MASTER_KEY}"},
    ) as resp:
        request_id = resp.headers["x-request-id"]
        next(resp.iter_raw())  # first event arrived; now walk away
    deadline = time.monotonic() + 3
    while fake.disconnects == before and time.monotonic() < deadline:
        time.sleep(0.02)
    assert fake.disconnects == before + 1, "the upstream stream was not cancelled"
    record = gateway.usage(request_id)[0]
    assert record["status"] == 499 and record["error"] == "client disconnected"


def test_connection_failure_falls_to_the_next_provider(client: openai.OpenAI, fake: FakeState) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model="failover-model", messages=[{"role": "user", "content": "still there?"}]
    )
    assert raw.parse().choices[0].message.content == "echo: still there?"
    assert raw.headers["x-omnirelay-provider"] == "backup/gpt-4o-mini"
    assert raw.headers["x-omnirelay-attempts"] == "2"
    assert fake.last_request["key"] == "sk-upstream-backup"


def test_cors_preflight_and_headers(gateway: Gateway) -> None:
    pre = httpx.options(
        gateway.base_url + "/v1/chat/completions",
        headers={
            "Origin": "http://localhost:3000",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type",
        },
    )
    assert pre.status_code == 200 and pre.headers["access-control-allow-origin"] == "*"
    resp = httpx.get(
        gateway.base_url + "/v1/models",
        headers={"Origin": "http://localhost:3000", "Authorization": f"Bearer {MASTER_KEY}"},
    )
    assert resp.headers["access-control-allow-origin"] == "*"
    assert "x-request-id" in resp.headers["access-control-expose-headers"]
