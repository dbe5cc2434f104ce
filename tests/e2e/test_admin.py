"""The operator's view of routing: /admin/deployments, enable, on-demand probes, `omnirelay status`."""

from __future__ import annotations

import time

import httpx
import openai
import pytest

from omnirelay.cli import main
from tests.conftest import MASTER_KEY, UPSTREAM_KEYS, Gateway
from tests.fakes import FakeState

AUTH = {"Authorization": f"Bearer {MASTER_KEY}"}


def deployments(gateway: Gateway) -> dict[str, dict[str, object]]:
    resp = httpx.get(gateway.base_url + "/admin/deployments", headers=AUTH, timeout=10)
    assert resp.status_code == 200, resp.text
    return {d["id"]: d for d in resp.json()["data"]}


def test_lists_every_deployment_without_secrets(gateway: Gateway) -> None:
    resp = httpx.get(gateway.base_url + "/admin/deployments", headers=AUTH, timeout=10)
    deps = {d["id"]: d for d in resp.json()["data"]}
    assert {"oai/0/gpt-4o-mini", "oai/1/gpt-4o-mini", "mock/0/mock"} <= set(deps)
    assert deps["oai/0/gpt-4o-mini"]["breaker"]["state"] == "closed"
    assert all(key not in resp.text for key in UPSTREAM_KEYS)
    assert httpx.get(gateway.base_url + "/admin/deployments", timeout=10).status_code == 401


def test_invalid_key_shows_then_enable_brings_it_back(gateway: Gateway, fake: FakeState) -> None:
    client = openai.OpenAI(base_url=gateway.base_url + "/v1", api_key=MASTER_KEY, max_retries=0, timeout=10)
    refused = b'{"error": {"message": "Incorrect API key provided", "type": "invalid_request_error"}}'
    fake.next_responses.append((401, {"content-type": "application/json"}, refused))
    reply = client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "adm"}])
    assert reply.choices[0].message.content == "echo: adm"  # the other key served it
    invalid = [d for d in deployments(gateway).values() if d["invalid"]]
    assert len(invalid) == 1 and invalid[0]["last_error"]["kind"] == "auth"  # type: ignore[index]
    dep_id = invalid[0]["id"]
    enabled = httpx.post(f"{gateway.base_url}/admin/deployments/{dep_id}/enable", headers=AUTH, timeout=10)
    assert enabled.status_code == 200 and enabled.json()["invalid"] is None


def test_probe_on_demand(gateway: Gateway) -> None:
    one = httpx.post(f"{gateway.base_url}/admin/deployments/oai/1/gpt-4o-mini/test", headers=AUTH, timeout=10)
    assert one.status_code == 200 and one.json()["status"] == "healthy"
    down = httpx.post(f"{gateway.base_url}/admin/providers/down/test", headers=AUTH, timeout=10)
    assert down.status_code == 200
    assert {r["status"] for r in down.json()["results"].values()} == {"error"}
    assert httpx.post(f"{gateway.base_url}/admin/providers/nope/test", headers=AUTH).status_code == 404


def test_status_command(gateway: Gateway, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["status", "--url", gateway.base_url, "--key", MASTER_KEY]) == 0
    out = capsys.readouterr().out
    assert "DEPLOYMENT" in out and "oai/0/gpt-4o-mini" in out and "closed" in out


def test_ceilings_announced_on_ordinary_answers_are_learned(gateway: Gateway, fake: FakeState) -> None:
    client = openai.OpenAI(base_url=gateway.base_url + "/v1", api_key=MASTER_KEY, max_retries=0, timeout=10)
    ok = (
        b'{"id": "c", "object": "chat.completion", "created": 1, "model": "gpt-4o-mini", "choices": '
        b'[{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}]}'
    )
    headers = {
        "content-type": "application/json",
        "x-ratelimit-limit-requests": "7",
        "x-ratelimit-remaining-requests": "6",
        "x-ratelimit-reset-requests": "8.6s",
    }
    fake.next_responses.append((200, headers, ok))
    client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "learn"}])
    deps = deployments(gateway)
    # The public names gpt-4o-mini and fast share their deployments' state: same key, same upstream model.
    learned = [deps[f"oai/{i}/gpt-4o-mini"]["learned_limits"]["rpm"] for i in (0, 1)]
    assert 7 in learned, [(k, d["model"], d["learned_limits"]) for k, d in deps.items()][:6]


def test_background_probes_bring_back_a_pool_whose_keys_were_all_taken_out(
    fake: FakeState, tmp_path_factory: pytest.TempPathFactory
) -> None:
    from omnirelay.app import create_app
    from omnirelay.config import Config
    from tests.fakes import ServerThread

    config = Config.model_validate(
        {
            "master_key": MASTER_KEY,
            "routing": {"health": {"interval_seconds": 0.2, "jitter": 0.1}},
            "providers": [
                {
                    "name": "probed",
                    "type": "openai-compatible",
                    "base_url": fake.base_url + "/v1",  # type: ignore[attr-defined]
                    "api_keys": ["sk-probe-1", "sk-probe-2"],
                    "models": ["gpt-4o-mini"],
                    "health_check": True,
                }
            ],
        }
    )
    app = create_app(config, tmp_path_factory.mktemp("probe-data"))
    with ServerThread(app, lifespan="on") as server:
        client = openai.OpenAI(
            base_url=server.base_url + "/v1", api_key=MASTER_KEY, max_retries=0, timeout=10
        )
        # Both keys refused once: each leaves rotation, and the pool is empty.
        refused = b'{"error": {"message": "Incorrect API key provided", "type": "invalid_request_error"}}'
        fake.next_responses.extend([(401, {"content-type": "application/json"}, refused)] * 2)
        with pytest.raises(openai.AuthenticationError):
            client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}])
        probe_gateway = Gateway(server, tmp_path_factory.mktemp("unused"))
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            deps = deployments(probe_gateway)
            if all(
                d["invalid"] is None and (d["health"] or {}).get("status") == "healthy" for d in deps.values()
            ):
                break
            time.sleep(0.1)
        else:
            raise AssertionError(f"the probes did not bring the pool back: {deployments(probe_gateway)}")
        assert (
            client.chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": "back"}]
            )
            .choices[0]
            .message.content
            == "echo: back"
        )
