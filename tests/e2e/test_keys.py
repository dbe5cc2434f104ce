"""Gateway keys: created through /admin/api/keys, usable at once, refused with a message that says why."""

from __future__ import annotations

from typing import Any

import anthropic
import httpx
import openai
import pytest

from tests.conftest import MASTER_KEY, Gateway
from tests.e2e.routing_support import clear_of_window_edge

ADMIN = {"Authorization": f"Bearer {MASTER_KEY}"}
HELLO = [{"role": "user", "content": "hello"}]


def create(gateway: Gateway, **fields: Any) -> dict[str, Any]:
    resp = httpx.post(gateway.base_url + "/admin/api/keys", json=fields, headers=ADMIN, timeout=10)
    assert resp.status_code == 201, resp.text
    return resp.json()  # type: ignore[no-any-return]


def client(gateway: Gateway, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.base_url + "/v1", api_key=key, max_retries=0, timeout=10)


def test_created_key_works_at_once_and_is_stored_hashed(gateway: Gateway) -> None:
    made = create(gateway, name="ci", metadata={"team": "a"})
    assert (
        made["key"].startswith("sk-or-")
        and made["prefix"].startswith("sk-or-")
        and made["status"] == "active"
    )
    reply = client(gateway, made["key"]).chat.completions.create(model="mock", messages=HELLO)  # type: ignore[arg-type]
    assert reply.choices[0].message.content == "echo: hello"
    assert made["key"].encode() not in (gateway.data_dir / "omnirelay.db").read_bytes()
    listed = httpx.get(gateway.base_url + "/admin/api/keys", headers=ADMIN).json()["data"]
    assert any(k["id"] == made["id"] and "key" not in k for k in listed)
    assert httpx.get(f"{gateway.base_url}/admin/api/keys/{made['id']}", headers=ADMIN).json()["name"] == "ci"


def test_unknown_disabled_and_expired_keys_are_401_saying_which(gateway: Gateway) -> None:
    with pytest.raises(openai.AuthenticationError, match="Incorrect API key"):
        client(gateway, "sk-or-not-a-real-key").models.list()
    made = create(gateway)
    revoked = httpx.delete(f"{gateway.base_url}/admin/api/keys/{made['id']}", headers=ADMIN)
    assert revoked.status_code == 200 and revoked.json()["status"] == "disabled"
    with pytest.raises(openai.AuthenticationError, match="disabled"):
        client(gateway, made["key"]).chat.completions.create(model="mock", messages=HELLO)  # type: ignore[arg-type]
    expired = create(gateway, expires_at="2020-01-01T00:00:00Z")
    with pytest.raises(openai.AuthenticationError, match=r"expired at 2020-01-01T00:00:00Z"):
        client(gateway, expired["key"]).chat.completions.create(model="mock", messages=HELLO)  # type: ignore[arg-type]
    # The same refusal in the Anthropic protocol's shape.
    api = anthropic.Anthropic(base_url=gateway.base_url, api_key=made["key"], max_retries=0)
    with pytest.raises(anthropic.AuthenticationError) as info:
        api.messages.create(model="mock", max_tokens=5, messages=[{"role": "user", "content": "x"}])
    assert info.value.body["error"]["type"] == "authentication_error"  # type: ignore[index]


def test_client_ip_allow_list(gateway: Gateway) -> None:
    outside = create(gateway, allowed_ips=["10.0.0.0/8"])
    with pytest.raises(openai.PermissionDeniedError, match=r"127\.0\.0\.1"):
        client(gateway, outside["key"]).chat.completions.create(model="mock", messages=HELLO)  # type: ignore[arg-type]
    inside = create(gateway, allowed_ips=["127.0.0.1/32", "::1"])
    client(gateway, inside["key"]).chat.completions.create(model="mock", messages=HELLO)  # type: ignore[arg-type]


def test_model_allow_list(gateway: Gateway) -> None:
    made = create(gateway, allowed_models=["mock"])
    api = client(gateway, made["key"])
    with pytest.raises(openai.PermissionDeniedError, match="gpt-4o-mini"):
        api.chat.completions.create(model="gpt-4o-mini", messages=HELLO)  # type: ignore[arg-type]
    assert [m.id for m in api.models.list()] == ["mock"]
    assert api.chat.completions.create(model="mock", messages=HELLO).choices  # type: ignore[arg-type]


def test_rpm_limit_is_429_with_retry_after(gateway: Gateway) -> None:
    made = create(gateway, rpm=2)
    api = client(gateway, made["key"])
    clear_of_window_edge(60.0)  # the three requests land in one minute window
    for _ in range(2):
        api.chat.completions.create(model="mock", messages=HELLO)  # type: ignore[arg-type]
    with pytest.raises(openai.RateLimitError, match="rpm") as info:
        api.chat.completions.create(model="mock", messages=HELLO)  # type: ignore[arg-type]
    assert 1 <= int(info.value.response.headers["retry-after"]) <= 60


def test_validation_and_admin_only(gateway: Gateway) -> None:
    for body, param in [
        ({"allowed_ips": ["not-an-ip"]}, "allowed_ips"),
        ({"rpm": 0}, "rpm"),
        ({"expires_at": "tomorrow"}, "expires_at"),
        ({"colour": "red"}, "colour"),
    ]:
        resp = httpx.post(gateway.base_url + "/admin/api/keys", json=body, headers=ADMIN)
        assert resp.status_code == 400, (body, resp.text)
        assert resp.json()["error"]["param"].startswith(param)
    made = create(gateway)
    as_user = httpx.post(
        gateway.base_url + "/admin/api/keys", json={}, headers={"Authorization": f"Bearer {made['key']}"}
    )
    assert as_user.status_code == 403
    assert httpx.get(f"{gateway.base_url}/admin/api/keys/key_missing", headers=ADMIN).status_code == 404
    patched = httpx.patch(
        f"{gateway.base_url}/admin/api/keys/{made['id']}",
        json={"rpm": 7, "status": "disabled"},
        headers=ADMIN,
    )
    assert patched.json()["rpm"] == 7 and patched.json()["status"] == "disabled"


def test_keys_command(gateway: Gateway, capsys: pytest.CaptureFixture[str]) -> None:
    from omnirelay.cli import main

    base = ["--url", gateway.base_url, "--key", MASTER_KEY]
    assert main(["keys", "create", *base, "--name", "from-cli", "--models", "mock", "--rpm", "5"]) == 0
    key_id, secret = capsys.readouterr().out.split()
    assert client(gateway, secret).chat.completions.create(model="mock", messages=HELLO).choices  # type: ignore[arg-type]
    assert main(["keys", "list", *base]) == 0
    assert key_id in capsys.readouterr().out
    assert main(["keys", "revoke", *base, key_id]) == 0
    assert "disabled" in capsys.readouterr().out
