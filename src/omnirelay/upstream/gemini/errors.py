"""Google API errors → `UpstreamError`.

Gemini answers `{"error": {"code", "message", "status", "details": [...]}}`. The HTTP status is kept
for 4xx (429 retryable, with `retry-after` from `RetryInfo.retryDelay` or the HTTP header); 5xx become
502 except 503/504, and are retryable. A rejected API key (400 `API_KEY_INVALID`, 401, 403) says the
provider refused the gateway's credentials. Provider keys are scrubbed from every message.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

from omnirelay.errors import UpstreamError, UpstreamUnavailable
from omnirelay.transport import json
from omnirelay.upstream.base import Target
from omnirelay.upstream.openai import scrub

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)s\s*$")


def _google_error(data: Any) -> dict[str, Any] | None:
    if isinstance(data, list) and data:  # streamGenerateContent without alt=sse wraps it in an array
        data = data[0]
    err = data.get("error") if isinstance(data, dict) else None
    return err if isinstance(err, dict) else None


def _details(err: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    details = err.get("details")
    if not isinstance(details, list):
        return []
    return [d for d in details if isinstance(d, dict) and str(d.get("@type", "")).endswith(kind)]


def retry_after(err: dict[str, Any] | None, headers: Mapping[str, str]) -> str | None:
    """Seconds to wait, from `RetryInfo.retryDelay` ("7s", "0.5s") or a `retry-after` header."""
    for info in _details(err or {}, "google.rpc.RetryInfo"):
        match = _DURATION.match(str(info.get("retryDelay", "")))
        if match:
            return str(max(1, math.ceil(float(match.group(1)))))
    value = headers.get("retry-after")
    return value if value else None


def error_from_payload(
    target: Target, status: int, err: dict[str, Any] | None, headers: Mapping[str, str], fallback: str = ""
) -> UpstreamError:
    """Map one Google error object (or none, with the HTTP status alone)."""
    err = err or {}
    google_status = str(err.get("status") or "")
    message = scrub(target, str(err.get("message") or fallback or f"HTTP {status}"))
    reasons = {str(d.get("reason")) for d in _details(err, "google.rpc.ErrorInfo")}
    param = None
    for violation in _details(err, "google.rpc.BadRequest"):
        fields = violation.get("fieldViolations")
        if isinstance(fields, list) and fields and isinstance(fields[0], dict):
            param = fields[0].get("field") if isinstance(fields[0].get("field"), str) else None
            break
    code = google_status.lower() or None
    keep: dict[str, str] = {}
    after = retry_after(err, headers)
    name = target.name
    if status == 429:
        if after:
            keep["retry-after"] = after
        return UpstreamError(
            f"Provider {name!r} is rate limited: {message}",
            status=429,
            type="rate_limit_error",
            code="rate_limit_exceeded",
            headers=keep,
            upstream_status=status,
            retryable=True,
            provider=name,
        )
    if 400 <= status < 500:
        out_status = status
        if status in (401, 403) or "API_KEY_INVALID" in reasons:
            message = f"Provider {name!r} refused the gateway's credentials: {message}"
            out_status = 401 if status != 403 else 403
            code = "invalid_api_key" if out_status == 401 else code
        elif status == 404 and google_status == "NOT_FOUND":
            code = "model_not_found"
        return UpstreamError(
            message,
            status=out_status,
            type="invalid_request_error",
            code=code,
            param=param,
            upstream_status=status,
            retryable=status in (408, 409),
            provider=name,
        )
    if after:
        keep["retry-after"] = after
    return UpstreamError(
        f"Provider {name!r} failed with HTTP {status}: {message}",
        status=status if status in (503, 504) else 502,
        type="upstream_error",
        code=code,
        headers=keep,
        upstream_status=status,
        retryable=True,
        provider=name,
    )


def error_from_response(
    target: Target, status: int, headers: Mapping[str, str], body: bytes
) -> UpstreamError:
    try:
        err = _google_error(json.loads(body))
        fallback = ""
    except json.JSONDecodeError:
        err, fallback = None, body.decode("utf-8", "replace").strip()[:300]
    return error_from_payload(target, status, err, headers, fallback)


def stream_error(target: Target, payload: Any) -> UpstreamError | None:
    """An error object sent in place of a stream chunk, or None when the chunk is not one."""
    err = _google_error(payload)
    if err is None:
        return None
    code = err.get("code")
    status = code if isinstance(code, int) and 400 <= code < 600 else 500
    return error_from_payload(target, status, err, {})


def malformed(target: Target, what: str) -> UpstreamError:
    return UpstreamUnavailable(
        f"Provider {target.name!r} sent a malformed answer: {what}", provider=target.name, retryable=True
    )
