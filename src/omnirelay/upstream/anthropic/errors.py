"""Anthropic errors → `UpstreamError`.

Answers have the shape `{"type": "error", "error": {"type": ..., "message": ...}}`. Statuses follow
the OpenAI dialect's rules (`upstream/openai.py`): 4xx kept (401/403 say the provider refused the
gateway's credentials), 429 kept with its retry headers and retryable, 5xx → 502 except 503/504,
and Anthropic's 529 `overloaded_error` → 503. Messages are scrubbed of the provider's keys.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from omnirelay.errors import UpstreamError
from omnirelay.transport import json
from omnirelay.upstream.base import Target
from omnirelay.upstream.openai import scrub
from omnirelay.wire.headers import RATE_LIMIT_HEADERS

# The HTTP status each error type comes with, for errors reported inside a stream.
STATUS_OF_TYPE: dict[str, int] = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "billing_error": 402,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "timeout_error": 504,
    "overloaded_error": 529,
}


def _parse(body: bytes) -> tuple[str | None, str | None]:
    """(message, error type) of an error body; the raw text when it is not Anthropic's shape."""
    try:
        data: Any = json.loads(body)
    except json.JSONDecodeError:
        text = body.decode("utf-8", "replace").strip()
        return (text[:300] or None), None
    err = data.get("error") if isinstance(data, dict) else None
    if isinstance(err, dict):
        message, etype = err.get("message"), err.get("type")
        return (str(message) if message else None), (etype if isinstance(etype, str) else None)
    if isinstance(data, dict) and isinstance(data.get("message"), str):
        return data["message"], None
    return None, None


def error_from_response(
    target: Target, status: int, headers: Mapping[str, str], body: bytes
) -> UpstreamError:
    message, etype = _parse(body)
    message = scrub(target, message or f"HTTP {status}")
    keep = {h: headers[h] for h in RATE_LIMIT_HEADERS if h in headers}
    name = target.name
    common: dict[str, Any] = {"headers": keep, "upstream_status": status, "provider": name}
    if status == 429:
        return UpstreamError(
            f"Provider {name!r} is rate limited: {message}",
            status=429,
            type=etype or "rate_limit_error",
            code="rate_limit_exceeded",
            retryable=True,
            **common,
        )
    if status == 529:
        return UpstreamError(
            f"Provider {name!r} is overloaded: {message}",
            status=503,
            type=etype or "overloaded_error",
            code="overloaded",
            retryable=True,
            **common,
        )
    if 400 <= status < 500:
        if status in (401, 403):
            message = f"Provider {name!r} refused the gateway's credentials: {message}"
        return UpstreamError(
            message,
            status=status,
            type=etype or "invalid_request_error",
            retryable=status in (408, 409),
            **common,
        )
    return UpstreamError(
        f"Provider {name!r} failed with HTTP {status}: {message}",
        status=status if status in (503, 504) else 502,
        type=etype or "upstream_error",
        retryable=True,
        **common,
    )


def error_from_event(target: Target, data: bytes) -> UpstreamError:
    """An `event: error` received after the stream started."""
    _, etype = _parse(data)
    return error_from_response(target, STATUS_OF_TYPE.get(etype or "", 500), {}, data)


def malformed(target: Target, what: str) -> UpstreamError:
    return UpstreamError(
        f"Provider {target.name!r} returned {what}.",
        status=502,
        code="bad_upstream_response",
        retryable=True,
        provider=target.name,
    )
