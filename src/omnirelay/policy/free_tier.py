"""Free-tier caps: daily request counts per client IP (across keys) and per key, per endpoint family.

Like public free relays: `billing.free_tier.per_ip_daily` and `per_key_daily` cap the requests of a
UTC day, each endpoint family counted on its own (`chat`: chat completions, legacy completions,
Responses, Anthropic Messages, Gemini generateContent / streamGenerateContent; `embeddings`:
embeddings, Gemini embedContent / batchEmbedContents). Other endpoints (model lists, token counts,
moderations, images, audio, admin) are not capped. The master key is exempt.

Counts live in the routing state (`RoutingState.try_acquire` with `Limits(rpd=…)` on the subjects
`ip:<family>:<ip>` and `key:<family>:<key id>`, or `user:<family>:<user id>` for the keys of a
user, who could otherwise multiply its cap by minting keys), so the request path never touches the
database and replicas sharing a Redis state share the counts. A request is counted when admitted, whatever its
outcome; a request refused by one cap is not counted against the other.
"""

from __future__ import annotations

import math
from typing import Literal

from omnirelay.config import FreeTierConfig
from omnirelay.errors import GatewayError
from omnirelay.policy.auth import Principal
from omnirelay.state.base import Limits, RoutingState

Family = Literal["chat", "embeddings"]

_FAMILIES: dict[str, Family] = {
    "chat.completions": "chat",
    "completions": "chat",
    "responses": "chat",
    "messages": "chat",
    "embeddings": "embeddings",
}
_GEMINI: dict[str, Family] = {
    "generateContent": "chat",
    "streamGenerateContent": "chat",
    "embedContent": "embeddings",
    "batchEmbedContents": "embeddings",
}


def family(route_name: str, method: str, gemini_target: str | None = None) -> Family | None:
    """The endpoint family a request belongs to, or None when it is not capped."""
    if method != "POST":
        return None
    if route_name == "gemini" and gemini_target is not None:
        return _GEMINI.get(gemini_target.rpartition(":")[2])
    return _FAMILIES.get(route_name)


class FreeTierExceeded(GatewayError):
    status = 429
    type = "rate_limit_error"
    code = "free_tier_limit_exceeded"


def enabled(config: FreeTierConfig) -> bool:
    return bool(config.per_ip_daily or config.per_key_daily)


async def admit(
    config: FreeTierConfig,
    state: RoutingState,
    principal: Principal,
    fam: Family,
    client_ip: str | None,
    now: float,
) -> None:
    """Count the request against its caps, or refuse it (429, retry-after until the UTC day ends)."""
    if principal.is_master:
        return
    counted: list[str] = []
    # Keys of one user share the per-key cap: users can mint keys, which must not multiply it.
    owner = principal.user_id
    checks: list[tuple[str, int | None, str]] = [
        (f"user:{fam}:{owner}", config.per_key_daily.get(fam), "this API key's user")
        if owner
        else (f"key:{fam}:{principal.key_id}", config.per_key_daily.get(fam), "this API key")
    ]
    if client_ip is not None:
        checks.append((f"ip:{fam}:{client_ip}", config.per_ip_daily.get(fam), f"the client IP {client_ip}"))
    for subject, cap, who in checks:
        if cap is None:
            continue
        admission = await state.try_acquire(subject, Limits(rpd=cap), now)
        if not admission.ok:
            for done in counted:  # not counted against a cap it did not use
                await state.release(done, now)
            wait = max(1, math.ceil(admission.retry_after))
            raise FreeTierExceeded(
                f"Free tier: {who} has used its {cap} {fam} requests for today (UTC); retry in {wait}s.",
                headers={"retry-after": str(wait)},
            )
        counted.append(subject)
