"""Who is calling, and whether they may: the master key, or a gateway key (status, expiry, client IP,
rate limits). Keys are compared by their SHA-256 digest; the plain key is never stored.

Gateway keys are looked up in the store through a short-lived cache (`KEY_CACHE_SECONDS`), so the
request path does not read the database per request; changes made through this process's admin API
take effect at once, changes made elsewhere within the cache time."""

from __future__ import annotations

import hmac
import ipaddress
import math
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from omnirelay.errors import AuthenticationFailed, GatewayError, PermissionDenied
from omnirelay.security.keys import key_hash as hash_key
from omnirelay.state.base import Limits, RoutingState
from omnirelay.storage.base import Store
from omnirelay.storage.billing import GroupRecord, UserRecord
from omnirelay.storage.records import KeyRecord

MASTER_KEY_PREFIX = "sk-or-master-"


def generate_master_key() -> str:
    return MASTER_KEY_PREFIX + secrets.token_urlsafe(32)


KEY_CACHE_SECONDS = 5.0


class HasState(Protocol):
    state: RoutingState


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling. `user` is the owner of the key (when it has one): its role decides whether the
    caller may use the admin API for everyone (admin) or only for its own keys and usage (user)."""

    key_id: str
    is_master: bool
    key: KeyRecord | None = None
    user: UserRecord | None = None
    group: GroupRecord | None = None  # the user's pricing group (its price multiplier)

    @property
    def is_admin(self) -> bool:
        return self.is_master or (self.user is not None and self.user.role == "admin")

    @property
    def user_id(self) -> str | None:
        return self.key.user_id if self.key is not None else None

    def may_use(self, model: str) -> bool:
        allowed = self.key.allowed_models if self.key is not None else None
        return allowed is None or model in allowed


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


def _ip_allowed(client_ip: str | None, allowed: list[str]) -> bool:
    if client_ip is None:
        return False
    try:
        ip = ipaddress.ip_address(client_ip)
    except ValueError:
        return False
    for entry in allowed:
        try:
            if ip in ipaddress.ip_network(entry, strict=False):
                return True
        except ValueError:
            continue
    return False


class Authenticator:
    def __init__(
        self, master_key_hash: str, store: Store | None = None, limits: HasState | None = None
    ) -> None:
        self._master = master_key_hash.encode()
        self._store = store
        self._limits = limits  # whose `state` counts the keys' rpm/rpd/tpm (the routing state)
        self._cache: dict[str, tuple[KeyRecord | None, float]] = {}
        self._users: dict[str, tuple[UserRecord | None, float]] = {}
        self._groups: dict[str, tuple[GroupRecord | None, float]] = {}

    def remember(self, key: KeyRecord) -> None:
        """Make a created or changed key effective at once (this process)."""
        self._cache[key.key_hash] = (key, time.monotonic())

    def remember_user(self, user: UserRecord) -> None:
        """Make a changed user (role, status) effective at once (this process)."""
        self._users[user.id] = (user, time.monotonic())

    def remember_group(self, group: GroupRecord) -> None:
        """Make a created or changed group (its multiplier) effective at once (this process)."""
        self._groups[group.id] = (group, time.monotonic())

    async def group(self, group_id: str) -> GroupRecord | None:
        """A pricing group, through the same short-lived cache as keys and users."""
        hit = self._groups.get(group_id)
        if hit is not None and time.monotonic() - hit[1] < KEY_CACHE_SECONDS:
            return hit[0]
        group = await self._store.billing.get_group(group_id) if self._store is not None else None
        if len(self._groups) > 100_000:
            self._groups.clear()
        self._groups[group_id] = (group, time.monotonic())
        return group

    async def _owner(self, user_id: str) -> UserRecord | None:
        hit = self._users.get(user_id)
        if hit is not None and time.monotonic() - hit[1] < KEY_CACHE_SECONDS:
            return hit[0]
        user = await self._store.billing.get_user(user_id) if self._store is not None else None
        if len(self._users) > 100_000:
            self._users.clear()
        self._users[user_id] = (user, time.monotonic())
        return user

    async def _lookup(self, key_hash: str) -> KeyRecord | None:
        hit = self._cache.get(key_hash)
        if hit is not None and time.monotonic() - hit[1] < KEY_CACHE_SECONDS:
            return hit[0]
        key = await self._store.find_key(key_hash) if self._store is not None else None
        if len(self._cache) > 100_000:
            self._cache.clear()
        self._cache[key_hash] = (key, time.monotonic())
        return key

    async def authenticate(
        self, headers: Mapping[str, str], query_key: str | None = None, client_ip: str | None = None
    ) -> Principal:
        token = bearer_token(headers, query_key)
        if token is None:
            raise AuthenticationFailed(
                "You didn't provide an API key. Send it as 'Authorization: Bearer <key>'.",
                code="missing_api_key",
            )
        digest = hash_key(token)
        if hmac.compare_digest(digest.encode(), self._master):
            return Principal(key_id="master", is_master=True)
        key = await self._lookup(digest)
        if key is None:
            raise AuthenticationFailed("Incorrect API key provided.")
        if key.status != "active":
            raise AuthenticationFailed("This API key is disabled.", code="key_disabled")
        now = time.time()
        if key.expires_at is not None and key.expires_at <= now:
            when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(key.expires_at))
            raise AuthenticationFailed(f"This API key expired at {when}.", code="key_expired")
        user = await self._owner(key.user_id) if key.user_id else None
        if user is not None and user.status != "active":
            raise AuthenticationFailed("The user who owns this API key is disabled.", code="user_disabled")
        if key.allowed_ips is not None and not _ip_allowed(client_ip, key.allowed_ips):
            raise PermissionDenied(f"This API key may not be used from {client_ip}.", code="ip_not_allowed")
        if self._limits is not None and (key.rpm or key.rpd or key.tpm):
            admission = await self._limits.state.try_acquire(
                "key:" + key.id, Limits(rpm=key.rpm, rpd=key.rpd, tpm=key.tpm), now
            )
            if not admission.ok:
                wait = max(1, math.ceil(admission.retry_after))
                raise GatewayError(
                    f"This API key is over its {admission.limit} limit; retry in {wait}s.",
                    status=429,
                    type="rate_limit_error",
                    code="rate_limit_exceeded",
                    headers={"retry-after": str(wait)},
                )
        group = await self.group(user.group_id) if user is not None and user.group_id else None
        return Principal(key_id=key.id, is_master=False, key=key, user=user, group=group)
