"""Plain records the store persists."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class UsageRecord:
    ts: float  # unix seconds when the request arrived
    request_id: str
    key_id: str
    endpoint: str
    model: str  # as the client asked
    provider: str | None
    upstream_model: str | None
    status: int
    stream: bool
    ttfb_ms: float | None
    latency_ms: float
    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0
    usage_estimated: bool = False
    client_ip: str | None = None
    error: str | None = None
    cost: int = 0  # micro-units of credit
    unpriced: bool = False  # served without a known price (charged nothing)
    user_id: str | None = None  # the owner of the key at the time of the request


@dataclass(slots=True)
class StoredResponse:
    """A Responses-API exchange kept for `GET /v1/responses/{id}` and `previous_response_id`."""

    id: str
    ts: float
    key_id: str
    model: str
    request: str  # JSON: the input items of this turn (history included)
    response: str  # JSON: the Response object as returned


@dataclass(slots=True)
class KeyRecord:
    """A gateway API key. Only its SHA-256 hash is stored; `prefix` is for display."""

    id: str
    key_hash: str
    prefix: str
    created_at: float
    name: str | None = None
    user_id: str | None = None
    status: str = "active"  # active | disabled
    expires_at: float | None = None
    quota: int | None = None  # credits in micro-units; None = unlimited
    spent: int = 0  # micro-units charged so far
    allowed_models: list[str] | None = None
    allowed_ips: list[str] | None = None  # IPs or CIDRs
    rpm: int | None = None
    rpd: int | None = None
    tpm: int | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    price_multiplier: str | None = None  # exact decimal ("1.5"), times the group's; None = 1
    log_bodies: bool | None = None  # None: the gateway's `logging.bodies` setting


@dataclass(slots=True)
class LoggedBody:
    """The request and response bodies of one request, kept when body logging is on for it. Each is
    cut at `logging.max_body_bytes`; `*_bytes` are the full sizes."""

    request_id: str
    ts: float
    request: bytes
    response: bytes
    request_bytes: int
    response_bytes: int
    response_content_type: str | None = None
