from __future__ import annotations

import base64
import hashlib
import os
import re
import stat
from pathlib import Path

import pytest

from omnirelay.security.keys import generate_key, key_hash, key_prefix, mask, redact
from omnirelay.security.secrets import (
    ENV_VAR,
    KeyRing,
    SecretBox,
    SecretError,
    load_key,
    random_key,
    rotate,
)

PLAIN = "sk-ant-api03-very-secret-provider-credential"
posix_only = pytest.mark.skipif(os.name == "nt", reason="POSIX file modes")


def payload(token: str) -> bytes:
    text = token.split(":")[2]
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def with_payload(token: str, raw: bytes) -> str:
    version, key_id, _ = token.split(":")
    return f"{version}:{key_id}:" + base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def flip(raw: bytes, index: int) -> bytes:
    b = bytearray(raw)
    b[index] ^= 0x01
    return bytes(b)


def assert_no_secret(exc: pytest.ExceptionInfo[SecretError], *secrets: str) -> None:
    for s in secrets:
        assert s not in str(exc.value)


# --- SecretBox --------------------------------------------------------------------------------------


def test_round_trip_including_unicode_and_empty() -> None:
    box = SecretBox(random_key())
    for text in (PLAIN, "", "clé — 秘密 🔑"):
        assert box.decrypt(box.encrypt(text)) == text


def test_token_format_and_key_id() -> None:
    key = random_key()
    box = SecretBox(key)
    token = box.encrypt(PLAIN)
    version, key_id, data = token.split(":")
    assert version == "v1"
    assert key_id == hashlib.sha256(key).hexdigest()[:8] == box.key_id
    assert re.fullmatch(r"[A-Za-z0-9_-]+", data)
    assert len(payload(token)) == 12 + len(PLAIN.encode()) + 16


def test_ciphertext_does_not_contain_plaintext() -> None:
    box = SecretBox(random_key())
    token = box.encrypt(PLAIN)
    assert PLAIN not in token
    assert PLAIN.encode() not in payload(token)
    assert base64.urlsafe_b64encode(PLAIN.encode()).decode()[:20] not in token


def test_fresh_nonce_each_time() -> None:
    box = SecretBox(random_key())
    tokens = {box.encrypt(PLAIN) for _ in range(100)}
    assert len(tokens) == 100
    assert len({payload(t)[:12] for t in tokens}) == 100


def test_wrong_key_is_refused() -> None:
    token = SecretBox(random_key()).encrypt(PLAIN)
    with pytest.raises(SecretError, match="encrypted with key") as exc:
        SecretBox(random_key()).decrypt(token)
    assert_no_secret(exc, PLAIN, token.split(":")[2])


def test_wrong_key_with_forged_key_id_fails_authentication() -> None:
    token = SecretBox(random_key()).encrypt(PLAIN)
    other = SecretBox(random_key())
    forged = f"v1:{other.key_id}:{token.split(':')[2]}"
    with pytest.raises(SecretError, match="authentication"):
        other.decrypt(forged)


@pytest.mark.parametrize("where", ["nonce", "ciphertext", "tag"])
def test_tampering_is_detected(where: str) -> None:
    box = SecretBox(random_key())
    token = box.encrypt(PLAIN)
    raw = payload(token)
    index = {"nonce": 3, "ciphertext": 12 + 5, "tag": len(raw) - 1}[where]
    with pytest.raises(SecretError, match="authentication") as exc:
        box.decrypt(with_payload(token, flip(raw, index)))
    assert_no_secret(exc, PLAIN)


def test_truncated_and_extended_payloads_are_refused() -> None:
    box = SecretBox(random_key())
    token = box.encrypt(PLAIN)
    raw = payload(token)
    for bad in (raw[:-1], raw + b"\x00", raw[:20]):
        with pytest.raises(SecretError):
            box.decrypt(with_payload(token, bad))


@pytest.mark.parametrize(
    "token",
    [
        "",
        "garbage",
        "v1:abc",
        "v1:0123abcd:x:y",
        "v2:0123abcd:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "v1:XYZ12345:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "v1:0123abcd:not base64!!",
        "v1:0123abcd:AAAA",
    ],
)
def test_malformed_tokens_raise_secret_error(token: str) -> None:
    with pytest.raises(SecretError):
        SecretBox(random_key()).decrypt(token)


def test_aad_binds_the_ciphertext() -> None:
    box = SecretBox(random_key())
    token = box.encrypt(PLAIN, aad=b"provider:anthropic")
    assert box.decrypt(token, aad=b"provider:anthropic") == PLAIN
    for wrong in (b"provider:openai", b""):
        with pytest.raises(SecretError, match="authentication"):
            box.decrypt(token, aad=wrong)
    with pytest.raises(SecretError):
        box.decrypt(box.encrypt(PLAIN), aad=b"provider:anthropic")


def test_bad_key_lengths_and_repr_hide_the_key() -> None:
    for bad in (b"", b"x" * 16, b"x" * 31, b"x" * 33):
        with pytest.raises(SecretError):
            SecretBox(bad)
    key = random_key()
    box = SecretBox(key)
    assert key.hex() not in repr(box) and box.key_id in repr(box)


# --- key sources ------------------------------------------------------------------------------------


def test_env_key_base64_hex_and_urlsafe(tmp_path: Path) -> None:
    key = random_key()
    for encoded in (
        base64.b64encode(key).decode(),
        base64.b64encode(key).decode().rstrip("="),
        base64.urlsafe_b64encode(key).decode(),
        key.hex(),
        key.hex().upper(),
        f"  {key.hex()}\n",
    ):
        assert load_key(tmp_path / "data", {ENV_VAR: encoded}) == key
    assert not (tmp_path / "data").exists()  # the env key never touches the data dir


@pytest.mark.parametrize(
    "value",
    [
        "   ",
        "not a key",
        base64.b64encode(b"x" * 16).decode(),
        base64.b64encode(b"x" * 33).decode(),
        "ab" * 31,
        "zz" * 32,
    ],
)
def test_malformed_env_key_is_a_clear_error(tmp_path: Path, value: str) -> None:
    with pytest.raises(SecretError, match=ENV_VAR) as exc:
        load_key(tmp_path, {ENV_VAR: value})
    if value.strip():
        assert value not in str(exc.value)


@posix_only
def test_key_file_created_private_and_reused(tmp_path: Path) -> None:
    data_dir = tmp_path / "nested" / "data"
    key = load_key(data_dir, {})
    assert len(key) == 32
    path = data_dir / "encryption.key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700
    assert load_key(data_dir, {}) == key
    assert load_key(data_dir, {"OTHER": "x"}) == key
    assert [p.name for p in data_dir.iterdir()] == ["encryption.key"]  # no temp file left behind
    assert SecretBox(load_key(data_dir, {})).decrypt(SecretBox(key).encrypt(PLAIN)) == PLAIN


@posix_only
def test_key_file_mode_ignores_umask(tmp_path: Path) -> None:
    old = os.umask(0o000)
    try:
        load_key(tmp_path / "d", {})
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "d" / "encryption.key").stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "d").stat().st_mode) == 0o700


@posix_only
@pytest.mark.parametrize("mode", [0o640, 0o644, 0o604, 0o660])
def test_group_or_other_readable_key_file_is_refused(tmp_path: Path, mode: int) -> None:
    load_key(tmp_path, {})
    path = tmp_path / "encryption.key"
    os.chmod(path, mode)
    with pytest.raises(SecretError, match="chmod 600") as exc:
        load_key(tmp_path, {})
    assert path.read_text().strip() not in str(exc.value)
    os.chmod(path, 0o600)
    assert len(load_key(tmp_path, {})) == 32


def test_env_key_wins_over_key_file(tmp_path: Path) -> None:
    file_key = load_key(tmp_path, {})
    env_key = random_key()
    assert load_key(tmp_path, {ENV_VAR: env_key.hex()}) == env_key != file_key


def test_corrupt_key_file_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "encryption.key"
    path.write_text("short\n")
    os.chmod(path, 0o600)
    with pytest.raises(SecretError, match="encryption key file"):
        load_key(tmp_path, {})


# --- rotation ---------------------------------------------------------------------------------------


def test_keyring_rotation() -> None:
    old, new = SecretBox(random_key()), SecretBox(random_key())
    old_tokens = [old.encrypt(f"secret-{i}") for i in range(5)]
    ring = KeyRing(new, [old])
    assert ring.key_ids == [new.key_id, old.key_id]
    assert [ring.decrypt(t) for t in old_tokens] == [f"secret-{i}" for i in range(5)]
    fresh = ring.encrypt("fresh")
    assert fresh.split(":")[1] == new.key_id and new.decrypt(fresh) == "fresh"
    with pytest.raises(SecretError):
        old.decrypt(fresh)
    assert all(ring.needs_rotation(t) for t in old_tokens) and not ring.needs_rotation(fresh)
    upgraded = ring.reencrypt(old_tokens[0])
    assert not ring.needs_rotation(upgraded) and new.decrypt(upgraded) == "secret-0"
    assert ring.reencrypt(fresh) == fresh


def test_keyring_unknown_key_id() -> None:
    ring = KeyRing(SecretBox(random_key()))
    with pytest.raises(SecretError, match="unknown key"):
        ring.decrypt(SecretBox(random_key()).encrypt(PLAIN))


def test_rotate_reencrypts_with_the_new_key_only() -> None:
    old, new = SecretBox(random_key()), SecretBox(random_key())
    plains = [PLAIN, "another", ""]
    rotated = rotate((old.encrypt(p) for p in plains), old, new)
    assert [new.decrypt(t) for t in rotated] == plains
    assert all(t.split(":")[1] == new.key_id for t in rotated)
    for t in rotated:
        with pytest.raises(SecretError):
            old.decrypt(t)
    assert rotate(rotated, old, new) == rotated  # idempotent: already-rotated tokens are kept


def test_rotate_with_aad_and_all_or_nothing() -> None:
    old, new = SecretBox(random_key()), SecretBox(random_key())
    tokens = [old.encrypt("a", aad=b"p1"), old.encrypt("b", aad=b"p1")]
    assert [new.decrypt(t, aad=b"p1") for t in rotate(tokens, old, new, aad=b"p1")] == ["a", "b"]
    stranger = SecretBox(random_key()).encrypt("c")
    with pytest.raises(SecretError):
        rotate([old.encrypt("a"), stranger], old, new)


# --- gateway keys -----------------------------------------------------------------------------------


def test_generate_key_format_and_uniqueness() -> None:
    keys = [generate_key() for _ in range(1000)]
    for key in keys:
        assert re.fullmatch(r"sk-or-[A-Za-z0-9_-]{43}", key), key
    assert len(set(keys)) == 1000


def test_key_hash_is_stable_sha256() -> None:
    key = generate_key()
    assert key_hash(key) == key_hash(key) == hashlib.sha256(key.encode()).hexdigest()
    assert re.fullmatch(r"[0-9a-f]{64}", key_hash(key))
    assert key_hash(key) != key_hash(generate_key())
    assert key_hash("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


def test_key_prefix() -> None:
    key = generate_key()
    assert key_prefix(key) == "sk-or-" + key[6:12] + "…"
    assert key[12:] not in key_prefix(key)
    assert key_prefix("not-a-gateway-key-but-long-enough") == "not-…ough"
    assert key_prefix("sk-or-x") == "***"


def test_mask() -> None:
    assert mask("sk-ant-api03-abcdefghijklmnop-XYZW") == "sk-a…XYZW"
    assert mask(generate_key()).startswith("sk-o")
    for short in ("", "abc", "password", "nineteen-characters"):
        assert mask(short) == "***"
    assert mask("a" * 20) == "aaaa…aaaa"


def test_redact() -> None:
    secret = "sk-ant-api03-abcdefghijklmnop-XYZW"
    text = f"calling with {secret}; retry with {secret}. short=abc word=password"
    out = redact(text, [secret, "abc", "word"])
    assert secret not in out
    assert out.count("sk-a…XYZW") == 2
    assert "short=abc word=password" in out  # short strings are never redacted
    assert redact("token=pa55word!", ["pa55word!"]) == "token=***"  # 8..19 chars: fully hidden
    assert redact("nothing here", []) == "nothing here"


def test_redact_prefers_the_longest_secret() -> None:
    inner = "ABCDEFGHIJKLMNOPQRSTUV"
    outer = "xx-" + inner + "-yy-more-secret"
    out = redact(f"a {outer} b {inner} c", iter([inner, outer]))
    assert outer not in out and inner not in out
    assert out == f"a {mask(outer)} b {mask(inner)} c"


def test_concurrent_first_use_agrees_on_one_key(tmp_path: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(8) as pool:
        keys = set(pool.map(lambda _: load_key(tmp_path / "d", {}), range(32)))
    assert len(keys) == 1
    assert [p.name for p in (tmp_path / "d").iterdir()] == ["encryption.key"]
