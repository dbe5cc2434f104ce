"""Contract of the channel and price-override store over SQLite and PostgreSQL, and the encryption
of channel credentials with a key rotation on a real store.

PostgreSQL runs when reachable at 127.0.0.1:5432 (trust auth, user postgres): each test gets a
throw-away database, dropped afterwards. Without asyncpg or the server those cases skip, loudly.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from omnirelay.channels import decrypt_channel, encrypt_channel, load_ring, rotate_encryption_key
from omnirelay.config import ProviderConfig
from omnirelay.security.secrets import (
    KeyRing,
    SecretBox,
    SecretError,
    random_key,
    read_key_file,
    write_key_file,
)
from omnirelay.storage.channels import ChannelExistsError, ChannelRecord, PriceRecord
from tests.contract.databases import BACKENDS, store_on

KEY = "sk-upstream-contract-key-000000"


def record(name: str, **extra: object) -> ChannelRecord:
    fields: dict[str, object] = {
        "name": name,
        "definition": {"name": name, "type": "openai", "models": ["a", {"name": "b", "upstream": "c"}]},
        "secrets": {"api_keys": ["v1:00000000:tok"], "headers": {}},
        "key_id": "00000000",
        "enabled": True,
        "created_at": 1000.0,
        "updated_at": 1000.0,
    }
    fields.update(extra)
    return ChannelRecord(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize("backend", BACKENDS)
async def test_channels_round_trip(backend: str, tmp_path: Path) -> None:
    async with store_on(backend, tmp_path, "channel") as store:
        assert await store.list_channels() == []
        await store.add_channel(record("b-chan", created_at=2000.0))
        await store.add_channel(record("a-chan"))
        with pytest.raises(ChannelExistsError):
            await store.add_channel(record("a-chan"))
        assert [c.name for c in await store.list_channels()] == ["a-chan", "b-chan"]  # oldest first
        got = await store.get_channel("a-chan")
        assert got == record("a-chan")
        assert await store.get_channel("nope") is None

        changed = record(
            "a-chan", enabled=False, definition={"name": "a-chan", "type": "mock"}, created_at=5.0
        )
        assert await store.update_channel(changed)
        got = await store.get_channel("a-chan")
        assert (
            got is not None and got.enabled is False and got.definition == {"name": "a-chan", "type": "mock"}
        )
        assert got.created_at == 1000.0  # never overwritten
        assert not await store.update_channel(record("ghost"))

        await store.replace_channel_secrets(
            {
                "a-chan": ({"api_keys": ["v1:11111111:x"], "headers": {"h": "v1:11111111:y"}}, "11111111"),
                "ghost": ({}, "z"),
            }
        )
        got = await store.get_channel("a-chan")
        assert (
            got is not None and got.key_id == "11111111" and got.secrets["headers"] == {"h": "v1:11111111:y"}
        )
        assert await store.delete_channel("a-chan") and not await store.delete_channel("a-chan")
        assert [c.name for c in await store.list_channels()] == ["b-chan"]


@pytest.mark.parametrize("backend", BACKENDS)
async def test_price_overrides_round_trip(backend: str, tmp_path: Path) -> None:
    async with store_on(backend, tmp_path, "channel") as store:
        await store.set_price(PriceRecord("gpt-4o", "2.5", "10", cached_input="1.25", updated_at=1.0))
        await store.set_price(PriceRecord("oai/gpt-4o", "0.000001", "0", per_request="0.5", updated_at=1.0))
        await store.set_price(PriceRecord("gpt-4o", "3", "12", updated_at=2.0))  # replaces
        prices = await store.list_prices()
        assert prices == [
            PriceRecord("gpt-4o", "3", "12", updated_at=2.0),
            PriceRecord("oai/gpt-4o", "0.000001", "0", per_request="0.5", updated_at=1.0),
        ]
        assert await store.delete_price("gpt-4o") and not await store.delete_price("gpt-4o")
        assert [p.model for p in await store.list_prices()] == ["oai/gpt-4o"]


@pytest.mark.parametrize("backend", BACKENDS)
async def test_rotation_reencrypts_every_channel_in_place(backend: str, tmp_path: Path) -> None:
    env: dict[str, str] = {}
    ring = load_ring(tmp_path, env)
    async with store_on(backend, tmp_path, "channel") as store:
        for name in ("one", "two"):
            cfg = ProviderConfig(
                name=name,
                type="openai-compatible",
                base_url="http://127.0.0.1:9/v1",
                api_keys=[KEY + name],
                headers={"x-secret": "header-" + name},
                models=["m"],
            )
            await store.add_channel(encrypt_channel(cfg, ring, True))
        before = await store.list_channels()
        result = await rotate_encryption_key(store, tmp_path, env)
        assert (result.channels, result.old_key_id) == (2, ring.current.key_id)
        after = await store.list_channels()
        new_ring = load_ring(tmp_path, env)
        assert new_ring.current.key_id == result.new_key_id != ring.current.key_id
        for old, new in zip(before, after, strict=True):
            assert new.key_id == result.new_key_id
            assert not set(new.secrets["api_keys"]) & set(old.secrets["api_keys"])
            cfg = decrypt_channel(new, new_ring)
            assert cfg.api_keys == [KEY + new.name] and cfg.headers == {"x-secret": "header-" + new.name}
            with pytest.raises(SecretError):
                decrypt_channel(new, ring)  # the old key alone cannot read it any more


def test_a_token_is_bound_to_its_channel() -> None:
    ring = KeyRing(SecretBox(random_key()))
    cfg = ProviderConfig(name="a", type="openai", api_keys=[KEY], models=["m"])
    stolen = encrypt_channel(cfg, ring, True)
    other = encrypt_channel(cfg.model_copy(update={"name": "b"}), ring, True)
    other.secrets = stolen.secrets  # copied into another row: refused, not silently used
    with pytest.raises(SecretError):
        decrypt_channel(other, ring)
    assert KEY not in repr(stolen) + str(stolen.definition)


@pytest.mark.parametrize("backend", BACKENDS)
async def test_an_interrupted_rotation_stays_readable_and_finishes_when_run_again(
    backend: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env: dict[str, str] = {}
    ring = load_ring(tmp_path, env)
    cfg = ProviderConfig(name="one", type="openai", api_keys=[KEY], models=["m"])
    async with store_on(backend, tmp_path, "channel") as store:
        await store.add_channel(encrypt_channel(cfg, ring, True))

        real_replace = os.replace

        def crash(src: str, dst: str) -> None:
            if Path(dst).name == "encryption.key":
                raise OSError("power cut before the rename")
            real_replace(src, dst)

        with monkeypatch.context() as m:
            m.setattr(os, "replace", crash)
            with pytest.raises(OSError):
                await rotate_encryption_key(store, tmp_path, env)
        pending = tmp_path / "encryption.key.new"
        assert pending.exists() and stat.S_IMODE(pending.stat().st_mode) == 0o600
        # Rows are under the new key, the key file still holds the old one: a start reads both.
        (stored,) = await store.list_channels()
        assert stored.key_id != ring.current.key_id
        assert decrypt_channel(stored, load_ring(tmp_path, env)).api_keys == [KEY]

        result = await rotate_encryption_key(store, tmp_path, env)  # run again: it finishes
        assert result.new_key_id == stored.key_id and not pending.exists()
        final = load_ring(tmp_path, env)
        assert final.key_ids == [stored.key_id]
        (again,) = await store.list_channels()
        assert again.secrets == stored.secrets  # already under the new key: verified, kept
        assert decrypt_channel(again, final).api_keys == [KEY]


def test_write_key_file_is_atomic_and_private(tmp_path: Path) -> None:
    path = tmp_path / "k"
    first, second = random_key(), random_key()
    write_key_file(path, first)
    write_key_file(path, second)  # replaces
    assert read_key_file(path) == second and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["k"]  # no temporary file left behind
