"""Who is calling. Keys are compared by their SHA-256 digest; the plain key is never stored."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Mapping
from dataclasses import dataclass

from omnirelay.errors import AuthenticationFailed

MASTER_KEY_PREFIX = "sk-or-master-"


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def generate_master_key() -> str:
    return MASTER_KEY_PREFIX + secrets.token_urlsafe(32)


def mask(key: str) -> str:
    return key[:10] + "…" + key[-4:] if len(key) > 16 else "***"


@dataclass(frozen=True, slots=True)
class Principal:
    key_id: str
    is_master: bool


def bearer_token(headers: Mapping[str, str], query_key: str | None = None) -> str | None:
    """The client's key, as each protocol sends it: `Authorization: Bearer` (OpenAI, and accepted
    everywhere), `x-api-key` (Anthropic), `x-goog-api-key` or `?key=` (Gemini)."""
    auth = headers.get("authorization")
    if auth:
        scheme, _, token = auth.partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
        return None
    return headers.get("x-api-key") or headers.get("x-goog-api-key") or query_key or None


class Authenticator:
    def __init__(self, master_key_hash: str) -> None:
        self._master = master_key_hash.encode()

    def authenticate(self, headers: Mapping[str, str], query_key: str | None = None) -> Principal:
        token = bearer_token(headers, query_key)
        if token is None:
            raise AuthenticationFailed(
                "You didn't provide an API key. Send it as 'Authorization: Bearer <key>'.",
                code="missing_api_key",
            )
        if hmac.compare_digest(hash_key(token).encode(), self._master):
            return Principal(key_id="master", is_master=True)
        raise AuthenticationFailed("Incorrect API key provided.")
