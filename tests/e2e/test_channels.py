"""Provider channels through the admin API: encrypted at rest, served at once, masked everywhere,
surviving a restart and a key rotation; price overrides and groups through the API.

Every gateway here is started on a data directory of its own; upstreams are the loopback fakes."""

from __future__ import annotations

import os
import sqlite3
import stat
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from omnirelay import channels as channels_module
from omnirelay.app import create_app
from omnirelay.cli import main as cli_main
from omnirelay.config import Config
from omnirelay.providers.catalog import Provider
from tests.conftest import MASTER_KEY, Gateway
from tests.fakes import FakeState, ServerThread
from tests.fakes.anthropic_upstream import FakeAnthropicState

ADMIN = {"Authorization": f"Bearer {MASTER_KEY}"}
CHANNEL_KEYS = ["sk-upstream-channel-key-one-1111", "sk-upstream-channel-key-two-2222"]
HEADER_SECRET = "sk-upstream-header-secret-3333"
ANTHROPIC_CHANNEL_KEY = "sk-ant-upstream-channel-key-4444"
SECRETS = [*CHANNEL_KEYS, HEADER_SECRET, ANTHROPIC_CHANNEL_KEY]


def config(**extra: Any) -> Config:
    return Config.model_validate(
        {
            "master_key": MASTER_KEY,
            "usage": {"flush_interval_seconds": 0.05},
            "providers": [{"name": "m", "type": "mock", "models": ["priced", "mock"]}],
            **extra,
        }
    )


@contextmanager
def gateway(data_dir: Path, cfg: Config | None = None) -> Iterator[Gateway]:
    with ServerThread(create_app(cfg or config(), data_dir), lifespan="on") as server:
        yield Gateway(server, data_dir)


def api(gw: Gateway, method: str, path: str, body: Any = None) -> httpx.Response:
    resp = httpx.request(method, gw.base_url + path, json=body, headers=ADMIN, timeout=10)
    for secret in SECRETS:
        assert secret not in resp.text, f"{method} {path} shows a provider secret"
    return resp


def chat(gw: Gateway, model: str) -> openai.types.chat.ChatCompletion:
    client = openai.OpenAI(base_url=gw.base_url + "/v1", api_key=MASTER_KEY, max_retries=0, timeout=10)
    return client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "one two three four"}]
    )


def database_bytes(data_dir: Path) -> bytes:
    """The whole SQLite database as it lies on disk: the main file, the WAL and the shared memory."""
    return b"".join(p.read_bytes() for p in sorted(data_dir.iterdir()) if p.name.startswith("omnirelay.db"))


def stored_tokens(data_dir: Path) -> list[str]:
    conn = sqlite3.connect(data_dir / "omnirelay.db")
    try:
        rows = conn.execute("SELECT secrets FROM provider_channels ORDER BY name").fetchall()
    finally:
        conn.close()
    import json

    tokens: list[str] = []
    for (raw,) in rows:
        secrets = json.loads(raw)
        tokens += secrets["api_keys"] + list(secrets["headers"].values())
    return tokens


def new_channel(fake_url: str, name: str = "chan") -> dict[str, Any]:
    return {
        "name": name,
        "type": "openai",
        "base_url": fake_url + "/v1",
        "api_keys": CHANNEL_KEYS,
        "headers": {"x-extra-auth": HEADER_SECRET},
        "models": ["gpt-4o-mini", {"name": "chan-fast", "upstream": "gpt-4o-mini"}],
    }


def test_a_channel_lives_encrypted_through_restart_and_key_rotation(
    fake: FakeState, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OMNIRELAY_ENCRYPTION_KEY", raising=False)
    fake_url = fake.base_url  # type: ignore[attr-defined]
    with gateway(tmp_path) as gw:
        made = api(gw, "POST", "/admin/api/providers", new_channel(fake_url))
        assert made.status_code == 201, made.text
        shown = made.json()
        assert shown["source"] == "api" and shown["enabled"] is True and shown["read_only"] is False
        assert shown["api_keys"] == ["sk-u…1111", "sk-u…2222"]
        assert shown["headers"] == {"x-extra-auth": "sk-u…3333"}

        # It serves at once, with its own (decrypted) keys and header.
        before = len(fake.requests)
        reply = chat(gw, "chan-fast")
        assert reply.choices[0].message.content
        sent = fake.requests[before:]
        assert {r["key"] for r in sent} <= set(CHANNEL_KEYS) and sent
        assert sent[-1]["headers"].get("x-extra-auth") == HEADER_SECRET

        # Masked in every response that shows it.
        listed = api(gw, "GET", "/admin/api/providers").json()["data"]
        by_name = {p["name"]: p for p in listed}
        assert by_name["m"]["source"] == "config" and by_name["m"]["read_only"] is True
        assert by_name["chan"]["api_keys"] == ["sk-u…1111", "sk-u…2222"]
        assert api(gw, "GET", "/admin/api/providers/chan").status_code == 200
        assert api(gw, "GET", "/admin/deployments").status_code == 200
        probe = api(gw, "POST", "/admin/api/providers/chan/test")
        assert probe.status_code == 200, probe.text
        assert {r["status"] for r in probe.json()["results"].values()} == {"healthy"}

        # Name clashes and the read-only config providers.
        clash = api(gw, "POST", "/admin/api/providers", {**new_channel(fake_url), "name": "m"})
        assert clash.status_code == 400 and clash.json()["error"]["code"] == "duplicate_name"
        again = api(gw, "POST", "/admin/api/providers", new_channel(fake_url))
        assert again.status_code == 400 and again.json()["error"]["code"] == "duplicate_name"
        assert api(gw, "DELETE", "/admin/api/providers/m").json()["error"]["code"] == "read_only"
        assert api(gw, "PATCH", "/admin/api/providers/m", {"weight": 2}).status_code == 400
        bad_url = {**new_channel(fake_url, "bad"), "base_url": "http://user:pw@127.0.0.1:9/v1"}
        assert api(gw, "POST", "/admin/api/providers", bad_url).status_code == 400

        time.sleep(0.2)
        on_disk = database_bytes(tmp_path)
        assert b"provider_channels" in on_disk
        for secret in SECRETS:
            assert secret.encode() not in on_disk, "a provider secret is readable in the SQLite files"
    tokens = stored_tokens(tmp_path)
    assert len(tokens) == 3 and all(t.startswith("v1:") for t in tokens)
    key_file = tmp_path / "encryption.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    old_key = key_file.read_bytes()

    # A restart on the same data directory: the channel still serves.
    with gateway(tmp_path) as gw:
        assert chat(gw, "chan/gpt-4o-mini").choices[0].message.content

    # Rotate the encryption key (gateway stopped): every row re-encrypted, the old ciphertext gone.
    assert cli_main(["rotate-encryption-key", "--data-dir", str(tmp_path)]) == 0
    assert key_file.read_bytes() != old_key
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert not (tmp_path / "encryption.key.new").exists()
    rotated = stored_tokens(tmp_path)
    assert len(rotated) == 3 and not set(rotated) & set(tokens)
    assert {t.split(":")[1] for t in rotated} != {t.split(":")[1] for t in tokens}

    with gateway(tmp_path) as gw:
        time.sleep(0.2)
        on_disk = database_bytes(tmp_path)
        for token in tokens:
            assert token.encode() not in on_disk, "old ciphertext survived the rotation"
        assert chat(gw, "chan-fast").choices[0].message.content

        # Disable: the model is gone at once; enable: back, with its deployments in rotation.
        assert api(gw, "POST", "/admin/api/providers/chan/disable").json()["enabled"] is False
        with pytest.raises(openai.NotFoundError):
            chat(gw, "chan-fast")
        enabled = api(gw, "POST", "/admin/api/providers/chan/enable")
        assert enabled.status_code == 200 and enabled.json()["enabled"] is True
        assert chat(gw, "chan-fast").choices[0].message.content

        # A change of keys serves the new keys at once.
        patched = api(gw, "PATCH", "/admin/api/providers/chan", {"api_keys": [CHANNEL_KEYS[1]]})
        assert patched.status_code == 200 and patched.json()["api_keys"] == ["sk-u…2222"]
        before = len(fake.requests)
        chat(gw, "chan-fast")
        chat(gw, "chan-fast")
        assert {r["key"] for r in fake.requests[before:]} == {CHANNEL_KEYS[1]}

        gone = api(gw, "DELETE", "/admin/api/providers/chan")
        assert gone.status_code == 200 and gone.json()["deleted"] is True
        with pytest.raises(openai.NotFoundError):
            chat(gw, "chan-fast")
        assert api(gw, "GET", "/admin/api/providers/chan").status_code == 404
    assert stored_tokens(tmp_path) == []


def test_an_anthropic_channel_serves_openai_clients(
    anthropic_fake: FakeAnthropicState, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = "0123456789abcdef" * 4
    monkeypatch.setenv("OMNIRELAY_ENCRYPTION_KEY", key)
    with gateway(tmp_path) as gw:
        made = api(
            gw,
            "POST",
            "/admin/api/providers",
            {
                "name": "claude",
                "type": "anthropic",
                "base_url": anthropic_fake.base_url,  # type: ignore[attr-defined]
                "api_keys": [ANTHROPIC_CHANNEL_KEY],
                "models": ["claude-sonnet-4-6"],
            },
        )
        assert made.status_code == 201, made.text
        assert chat(gw, "claude-sonnet-4-6").choices[0].message.content
    assert not (tmp_path / "encryption.key").exists()  # the key came from the environment
    # Rotation with the key in the environment needs the new key there too.
    assert cli_main(["rotate-encryption-key", "--data-dir", str(tmp_path)]) == 1
    new_key = "fedcba9876543210" * 4
    monkeypatch.setenv("OMNIRELAY_NEW_ENCRYPTION_KEY", new_key)
    assert cli_main(["rotate-encryption-key", "--data-dir", str(tmp_path)]) == 0
    # Before the operator switches the variables over, the gateway still reads both keys …
    with gateway(tmp_path) as gw:
        assert chat(gw, "claude-sonnet-4-6").choices[0].message.content
    # … and after it, only the new one.
    monkeypatch.setenv("OMNIRELAY_ENCRYPTION_KEY", new_key)
    monkeypatch.delenv("OMNIRELAY_NEW_ENCRYPTION_KEY")
    with gateway(tmp_path) as gw:
        assert chat(gw, "claude-sonnet-4-6").choices[0].message.content
    # With the wrong key the channel is not served, and says why (without any secret).
    monkeypatch.setenv("OMNIRELAY_ENCRYPTION_KEY", key)
    with gateway(tmp_path) as gw:
        shown = api(gw, "GET", "/admin/api/providers/claude").json()
        assert "do not decrypt" in shown["error"] and shown["api_keys"] == ["***"]
        with pytest.raises(openai.NotFoundError):
            chat(gw, "claude-sonnet-4-6")


def test_a_price_override_prices_the_next_request(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OMNIRELAY_ENCRYPTION_KEY", raising=False)
    with gateway(tmp_path) as gw:

        def cost_of_next() -> tuple[int, int]:
            client = openai.OpenAI(base_url=gw.base_url + "/v1", api_key=MASTER_KEY, max_retries=0)
            raw = client.chat.completions.with_raw_response.create(
                model="priced", messages=[{"role": "user", "content": "one two three four"}]
            )
            record = gw.usage(raw.headers["x-request-id"])[0]
            return record["cost"], record["unpriced"]

        assert cost_of_next() == (0, 1)
        put = api(
            gw, "PUT", "/admin/api/prices/priced", {"input": "1", "output": "2.5", "per_request": "0.000003"}
        )
        assert put.status_code == 200, put.text
        assert put.json()["source"] == "api" and put.json()["output"] == "2.5"
        # 4 tokens in at 1 micro-unit, 5 out at 2.5, 3 a request: 19.5, rounded half up.
        assert cost_of_next() == (20, 0)
        api(gw, "PUT", "/admin/api/prices/m/priced", {"input": 10, "output": "0"})
        assert cost_of_next() == (40, 0)  # provider/model wins over model
        listed = {p["model"]: p for p in api(gw, "GET", "/admin/api/prices").json()["data"]}
        assert listed["m/priced"]["source"] == "api" and listed["gpt-4o-mini"]["source"] == "default"
        assert api(gw, "PUT", "/admin/api/prices/priced", {"input": 0.5, "output": "1"}).status_code == 400
        assert api(gw, "PUT", "/admin/api/prices/priced", {"input": "-1", "output": "1"}).status_code == 400
        assert api(gw, "DELETE", "/admin/api/prices/m/priced").status_code == 200
        assert cost_of_next() == (20, 0)
    with gateway(tmp_path) as gw:  # overrides are stored
        assert api(gw, "GET", "/admin/api/prices/priced").json()["per_request"] == "0.000003"
        assert api(gw, "DELETE", "/admin/api/prices/priced").status_code == 200
        assert api(gw, "GET", "/admin/api/prices/priced").status_code == 404


def test_a_group_multiplier_is_stored_exactly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OMNIRELAY_ENCRYPTION_KEY", raising=False)
    with gateway(tmp_path) as gw:
        made = api(gw, "POST", "/admin/api/groups", {"name": "resellers", "multiplier": "0.8"})
        assert made.status_code == 201, made.text
        group = made.json()
        assert (group["multiplier"], group["multiplier_num"], group["multiplier_den"]) == ("0.8", 4, 5)
        assert api(gw, "POST", "/admin/api/groups", {"name": "resellers"}).status_code == 400
        assert api(gw, "POST", "/admin/api/groups", {"name": "f", "multiplier": 0.8}).status_code == 400
        changed = api(gw, "PATCH", f"/admin/api/groups/{group['id']}", {"multiplier": "0.333"})
        assert changed.json()["multiplier"] == "0.333"
        listed = api(gw, "GET", "/admin/api/groups").json()["data"]
        assert [g["name"] for g in listed] == ["resellers"]
        assert api(gw, "GET", "/admin/api/groups/grp_nope").status_code == 404
    conn = sqlite3.connect(tmp_path / "omnirelay.db")
    try:
        row = conn.execute("SELECT multiplier_num, multiplier_den FROM groups").fetchone()
    finally:
        conn.close()
    assert row == (333, 1000)


def test_provider_endpoints_are_admin_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OMNIRELAY_ENCRYPTION_KEY", raising=False)
    with gateway(tmp_path) as gw:
        user = api(gw, "POST", "/admin/api/users", {"name": "u1"}).json()
        key = api(gw, "POST", "/admin/api/keys", {"user_id": user["id"]}).json()["key"]
        for path in ("/admin/api/providers", "/admin/api/prices", "/admin/api/groups"):
            resp = httpx.get(gw.base_url + path, headers={"Authorization": f"Bearer {key}"}, timeout=10)
            assert resp.status_code == 403, path
    assert os.environ.get("OMNIRELAY_ENCRYPTION_KEY") is None


def test_a_stream_in_flight_survives_the_removal_of_its_channel(
    fake: FakeState, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OMNIRELAY_ENCRYPTION_KEY", raising=False)
    monkeypatch.setattr(channels_module, "RETIRE_POLL_SECONDS", 0.2)
    closed: list[str] = []
    real_close = Provider.close

    async def recording_close(self: Provider) -> None:
        closed.append(self.name)
        await real_close(self)

    monkeypatch.setattr(Provider, "close", recording_close)
    fake_url = fake.base_url  # type: ignore[attr-defined]
    with gateway(tmp_path) as gw:
        body = {**new_channel(fake_url, "streamer"), "models": ["slow-stream"]}
        assert api(gw, "POST", "/admin/api/providers", body).status_code == 201
        request = {"model": "slow-stream", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
        events: list[str] = []
        with httpx.stream(
            "POST", gw.base_url + "/v1/chat/completions", json=request, headers=ADMIN, timeout=20
        ) as resp:
            assert resp.status_code == 200
            lines = resp.iter_lines()
            for line in lines:
                if line.startswith("data: "):
                    events.append(line)
                    break
            # Removed while its stream is in flight: new requests no longer find it …
            assert api(gw, "DELETE", "/admin/api/providers/streamer").status_code == 200
            assert (
                httpx.post(
                    gw.base_url + "/v1/chat/completions", json={**request, "stream": False}, headers=ADMIN
                ).status_code
                == 404
            )
            time.sleep(0.5)
            assert "streamer" not in closed  # its connection stays open while the stream runs
            # … and the stream already running finishes normally.
            events += [line for line in lines if line.startswith("data: ")]
        assert events[-1] == "data: [DONE]" and len(events) > 2
        deadline = time.monotonic() + 5
        while "streamer" not in closed and time.monotonic() < deadline:
            time.sleep(0.05)
        assert "streamer" in closed  # closed once nothing is in flight on it, long before shutdown


def test_errors_never_repeat_a_submitted_secret(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OMNIRELAY_ENCRYPTION_KEY", raising=False)
    secret_url = f"ftp://admin:{HEADER_SECRET}@127.0.0.1:9/v1"
    with gateway(tmp_path) as gw:
        for body in (
            {"name": "leaky", "type": "openai-compatible", "base_url": secret_url},
            {"name": "leaky", "type": "openai-compatible", "base_url": secret_url.replace("ftp", "http")},
        ):
            resp = api(gw, "POST", "/admin/api/providers", body)
            assert resp.status_code == 400 and resp.json()["error"]["param"] == "base_url"
        time.sleep(0.3)
        assert HEADER_SECRET.encode() not in database_bytes(tmp_path)  # nor in the usage records


def test_providers_list_command_shows_masked_keys(
    fake: FakeState, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("OMNIRELAY_ENCRYPTION_KEY", raising=False)
    with gateway(tmp_path) as gw:
        api(gw, "POST", "/admin/api/providers", new_channel(fake.base_url))  # type: ignore[attr-defined]
        assert cli_main(["providers", "list", "--url", gw.base_url, "--key", MASTER_KEY]) == 0
    out = capsys.readouterr().out
    assert "chan" in out and "sk-u…1111" in out and "config" in out
    assert not any(secret in out for secret in SECRETS)


def test_a_channel_never_takes_a_key_from_the_hosts_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Presets that need no key (ollama, vllm, llamacpp) read one from the environment when a config
    file defines them; a channel made through the API must not, or an admin could send the host's
    key to any base_url."""
    monkeypatch.delenv("OMNIRELAY_ENCRYPTION_KEY", raising=False)
    monkeypatch.setenv("OLLAMA_API_KEY", "sk-host-secret-ollama-0123456789")
    with gateway(tmp_path) as gw:
        made = api(
            gw,
            "POST",
            "/admin/api/providers",
            {"name": "local", "type": "ollama", "base_url": "http://127.0.0.1:9/v1", "models": ["m"]},
        )
        assert made.status_code == 201, made.text
        assert made.json()["api_keys"] == []
        provider = next(p for p in gw.runtime.providers if p.name == "local")
        assert provider.config.api_keys == []
    assert b"sk-host-secret-ollama" not in database_bytes(tmp_path)
