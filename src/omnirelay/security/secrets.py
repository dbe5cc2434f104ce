"""Provider credentials at rest: AES-256-GCM with self-describing tokens and key rotation.

A token looks like ``v1:<key id>:<base64url(nonce ‖ ciphertext ‖ tag)>``:

* ``v1`` names this format (96-bit random nonce, AES-256-GCM, 128-bit tag);
* the key id is the first 8 hex digits of SHA-256 of the key, so a rotation can tell which key
  encrypted what without trying them all (it identifies a key, it does not help recover one);
* the header ``v1:<key id>:`` is authenticated together with the caller's ``aad``, so neither
  the version nor the key id can be swapped without the decryption failing.

Pass ``aad`` to bind a ciphertext to where it is stored (for example the provider's name): a token
copied into another row then fails to decrypt instead of silently yielding the wrong credential.

The key comes from ``OMNIRELAY_ENCRYPTION_KEY`` (64 hex digits or base64 of 32 bytes) or else
from ``<data dir>/encryption.key``, created on first use with mode 0600. Losing the key makes every
stored credential unreadable; back it up separately from the database.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import os
import stat
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

__all__ = [
    "ENV_VAR",
    "KEY_FILE_NAME",
    "KeyRing",
    "SecretBox",
    "SecretError",
    "load_key",
    "random_key",
    "read_key_file",
    "rotate",
    "write_key_file",
]

ENV_VAR = "OMNIRELAY_ENCRYPTION_KEY"
KEY_FILE_NAME = "encryption.key"
KEY_BYTES = 32
NONCE_BYTES = 12
TAG_BYTES = 16
VERSION = "v1"
KEY_ID_HEX = 8


class SecretError(Exception):
    """A secret could not be encrypted, decrypted or loaded. Messages never contain key material,
    plaintext or ciphertext; key ids and file paths are not secret and may appear."""


def random_key() -> bytes:
    """A fresh 256-bit key from the OS CSPRNG."""
    return os.urandom(KEY_BYTES)


def key_id_of(key: bytes) -> str:
    return hashlib.sha256(key).hexdigest()[:KEY_ID_HEX]


def _b64url_encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64url_decode(text: str) -> bytes:
    padded = text + "=" * (-len(text) % 4)
    try:
        return base64.b64decode(padded.encode("ascii"), altchars=b"-_", validate=True)
    except (binascii.Error, ValueError, UnicodeEncodeError) as exc:
        raise SecretError("malformed secret token: payload is not base64url") from exc


def _split_token(token: str) -> tuple[str, bytes]:
    """The token's key id and its raw ``nonce ‖ ciphertext ‖ tag``; SecretError if malformed."""
    if not isinstance(token, str):
        raise SecretError("malformed secret token: expected a string")
    parts = token.split(":")
    if len(parts) != 3:
        raise SecretError("malformed secret token: expected 'v1:<key id>:<payload>'")
    version, key_id, payload = parts
    if version != VERSION:
        raise SecretError(f"unsupported secret token version {version[:8]!r} (this build reads v1)")
    if len(key_id) != KEY_ID_HEX or any(c not in "0123456789abcdef" for c in key_id):
        raise SecretError("malformed secret token: bad key id")
    raw = _b64url_decode(payload)
    if len(raw) < NONCE_BYTES + TAG_BYTES:
        raise SecretError("malformed secret token: payload too short")
    return key_id, raw


def token_key_id(token: str) -> str:
    """Which key encrypted ``token`` (its key id); SecretError if the token is malformed."""
    return _split_token(token)[0]


class SecretBox:
    """Encrypts and decrypts strings with one AES-256-GCM key."""

    __slots__ = ("_aead", "_key", "_key_id")

    def __init__(self, key: bytes) -> None:
        if not isinstance(key, bytes | bytearray) or len(key) != KEY_BYTES:
            raise SecretError(f"an encryption key must be exactly {KEY_BYTES} bytes")
        self._key = bytes(key)
        self._aead: AESGCM | None = None
        self._key_id = key_id_of(self._key)

    def _cipher(self) -> AESGCM:
        # cryptography (and the OpenSSL it loads, ~6 MB) is imported on the first secret, not at
        # start: a gateway without stored credentials never needs it.
        if self._aead is None:
            from cryptography.hazmat.primitives.ciphers.aead import AESGCM

            self._aead = AESGCM(self._key)
        return self._aead

    @property
    def key_id(self) -> str:
        return self._key_id

    def __repr__(self) -> str:
        return f"SecretBox(key_id={self._key_id!r})"

    def _header(self) -> str:
        return f"{VERSION}:{self._key_id}:"

    def encrypt(self, plaintext: str, *, aad: bytes = b"") -> str:
        header = self._header()
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._cipher().encrypt(nonce, plaintext.encode("utf-8"), header.encode("ascii") + aad)
        return header + _b64url_encode(nonce + sealed)

    def decrypt(self, token: str, *, aad: bytes = b"") -> str:
        key_id, raw = _split_token(token)
        if key_id != self._key_id:
            raise SecretError(f"secret was encrypted with key {key_id}, not with this key ({self._key_id})")
        nonce, sealed = raw[:NONCE_BYTES], raw[NONCE_BYTES:]
        from cryptography.exceptions import InvalidTag

        try:
            plain = self._cipher().decrypt(nonce, sealed, self._header().encode("ascii") + aad)
        except InvalidTag:
            raise SecretError(
                f"secret failed authentication with key {key_id}: "
                "it was tampered with, or the associated data differs"
            ) from None
        try:
            return plain.decode("utf-8")
        except UnicodeDecodeError:
            raise SecretError("decrypted secret is not valid UTF-8") from None


class KeyRing:
    """Decrypts with any of several keys (chosen by the token's key id), encrypts with the current
    one. During a rotation hold the new key as ``current`` and the old one in ``previous``: old
    tokens stay readable, new ones are written with the new key, and :meth:`reencrypt` upgrades a
    stored token when convenient."""

    __slots__ = ("_boxes", "_current")

    def __init__(self, current: SecretBox, previous: Iterable[SecretBox] = ()) -> None:
        self._current = current
        self._boxes: dict[str, SecretBox] = {current.key_id: current}
        for box in previous:
            self._boxes.setdefault(box.key_id, box)

    @property
    def current(self) -> SecretBox:
        return self._current

    @property
    def key_ids(self) -> list[str]:
        """Known key ids, the current one first."""
        return list(self._boxes)

    def __repr__(self) -> str:
        return f"KeyRing(current={self._current.key_id!r}, keys={self.key_ids!r})"

    def encrypt(self, plaintext: str, *, aad: bytes = b"") -> str:
        return self._current.encrypt(plaintext, aad=aad)

    def decrypt(self, token: str, *, aad: bytes = b"") -> str:
        key_id = token_key_id(token)
        box = self._boxes.get(key_id)
        if box is None:
            raise SecretError(f"secret was encrypted with unknown key {key_id} (known: {self.key_ids})")
        return box.decrypt(token, aad=aad)

    def needs_rotation(self, token: str) -> bool:
        return token_key_id(token) != self._current.key_id

    def reencrypt(self, token: str, *, aad: bytes = b"") -> str:
        """``token`` encrypted with the current key (returned unchanged, once verified, when it
        already is)."""
        plain = self.decrypt(token, aad=aad)
        return token if not self.needs_rotation(token) else self.encrypt(plain, aad=aad)


def rotate(tokens: Iterable[str], old: SecretBox, new: SecretBox, *, aad: bytes = b"") -> list[str]:
    """Re-encrypt ``tokens`` from ``old`` to ``new``, all or nothing: the first token that does not
    decrypt raises SecretError before anything is returned. Tokens already under ``new`` are
    verified and kept, so an interrupted rotation can simply be run again. For tokens bound to
    different associated data, call :meth:`KeyRing.reencrypt` per token instead."""
    ring = KeyRing(new, [old])
    return [ring.reencrypt(token, aad=aad) for token in tokens]


# --- key sources ----------------------------------------------------------------------------------


def parse_key(text: str, *, source: str) -> bytes:
    """32 bytes from 64 hex digits or base64 (standard or url-safe, padding optional)."""
    value = text.strip()
    if len(value) == 2 * KEY_BYTES and all(c in "0123456789abcdefABCDEF" for c in value):
        return bytes.fromhex(value)
    try:
        padded = value + "=" * (-len(value) % 4)
        alt = b"-_" if ("-" in value or "_" in value) else None
        key = base64.b64decode(padded.encode("ascii"), altchars=alt, validate=True)
    except (binascii.Error, ValueError, UnicodeEncodeError):
        key = b""
    if len(key) != KEY_BYTES:
        raise SecretError(
            f"{source} must be {KEY_BYTES} random bytes, as 64 hex digits or base64 "
            '(generate one with: python -c "import os, base64; '
            'print(base64.b64encode(os.urandom(32)).decode())")'
        )
    return key


def _check_key_file(path: Path) -> None:
    try:
        st = path.stat()
    except OSError as exc:
        raise SecretError(f"cannot read encryption key file {path}: {exc.strerror}") from None
    if not stat.S_ISREG(st.st_mode):
        raise SecretError(f"encryption key file {path} is not a regular file")
    if os.name != "nt" and st.st_mode & 0o077:
        raise SecretError(
            f"encryption key file {path} is accessible by group/others "
            f"(mode {stat.S_IMODE(st.st_mode):04o}); run: chmod 600 {path}"
        )


def _read_key_file(path: Path) -> bytes:
    _check_key_file(path)
    try:
        text = path.read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as exc:
        raise SecretError(f"cannot read encryption key file {path}: {exc}") from None
    return parse_key(text, source=f"encryption key file {path}")


def _key_file_bytes(key: bytes) -> bytes:
    return (base64.b64encode(key).decode("ascii") + "\n").encode("ascii")


def _write_new_private_file(path: Path, data: bytes) -> None:
    """Create ``path`` (it must not exist) with mode 0600 holding ``data``, fsynced."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def _temporary_beside(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}.{os.urandom(4).hex()}.tmp")


def _create_key_file(path: Path) -> None:
    """Write a fresh key to ``path`` atomically, never replacing an existing file: a half-written
    key is never visible and of two processes starting at once, exactly one key wins."""
    data = _key_file_bytes(random_key())
    tmp = _temporary_beside(path)
    _write_new_private_file(tmp, data)
    try:
        os.link(tmp, path)  # fails if path exists: never overwrite a key
    except FileExistsError:
        pass
    except OSError:  # no hard links on this filesystem: exclusive create instead
        with contextlib.suppress(FileExistsError):
            _write_new_private_file(path, data)
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)


def read_key_file(path: Path) -> bytes:
    """The key in ``path``; a file that group or others can access is refused."""
    return _read_key_file(Path(path))


def write_key_file(path: Path, key: bytes) -> None:
    """Write ``key`` (base64) to ``path`` with mode 0600, atomically: a temporary file in the same
    directory, fsynced, then renamed over ``path`` (replacing it if it exists)."""
    if len(key) != KEY_BYTES:
        raise SecretError(f"an encryption key must be exactly {KEY_BYTES} bytes")
    path = Path(path)
    tmp = _temporary_beside(path)
    _write_new_private_file(tmp, _key_file_bytes(key))
    try:
        os.replace(tmp, path)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def load_key(data_dir: Path, env: Mapping[str, str]) -> bytes:
    """The 32-byte encryption key: from ``OMNIRELAY_ENCRYPTION_KEY`` when set (an empty value is
    an error, not a fallback: silently switching to a different key would strand every stored
    secret), else from ``<data_dir>/encryption.key``, created with mode 0600 on first use (and
    ``data_dir`` with 0700 when it has to be created). An existing key file that group or others
    can access is refused."""
    if ENV_VAR in env:
        if not env[ENV_VAR].strip():
            raise SecretError(f"{ENV_VAR} is set but empty; set a key or unset it to use the key file")
        return parse_key(env[ENV_VAR], source=ENV_VAR)
    data_dir = Path(data_dir)
    path = data_dir / KEY_FILE_NAME
    if not data_dir.exists():
        try:
            data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            os.chmod(data_dir, 0o700)  # mkdir's mode is filtered by the umask
        except OSError as exc:
            raise SecretError(f"cannot create data directory {data_dir}: {exc.strerror}") from None
    if not path.exists():
        try:
            _create_key_file(path)
        except OSError as exc:
            raise SecretError(f"cannot create encryption key file {path}: {exc.strerror}") from None
    return _read_key_file(path)
