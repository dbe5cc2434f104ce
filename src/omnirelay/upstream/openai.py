"""The OpenAI wire dialect as an upstream: every `openai`, `openai-compatible` and preset provider.

Requests in this dialect are relayed by `omnirelay.passthrough`; this module knows how to send them
and how to turn the upstream's failures into `UpstreamError`s with the upstream's status and
message kept where safe.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from omnirelay.errors import UpstreamError, UpstreamTimeout, UpstreamUnavailable
from omnirelay.transport import json
from omnirelay.transport.http import TransportError, UpstreamResponse
from omnirelay.upstream.base import Target
from omnirelay.wire.headers import RATE_LIMIT_HEADERS


def request_headers(target: Target, key: str | None, content_type: str | None) -> dict[str, str]:
    headers = {"accept": "application/json, text/event-stream"}
    if content_type:
        headers["content-type"] = content_type
    if key:
        if target.azure_api_version:
            headers["api-key"] = key
        else:
            headers["authorization"] = f"Bearer {key}"
    if target.headers:
        headers.update(target.headers)
    return headers


async def send(
    target: Target,
    key: str | None,
    path: str,
    body: bytes | None,
    content_type: str | None = "application/json",
    method: str = "POST",
    model: str | None = None,
) -> UpstreamResponse:
    """Send one request; transport failures become UpstreamErrors. Any HTTP status is returned.

    `model` is the upstream model, needed for Azure's deployment URLs."""
    assert target.client is not None
    try:
        return await target.client.send(
            method, url(target, path, model), request_headers(target, key, content_type), body
        )
    except TransportError as exc:
        raise transport_error(target, exc) from None


def url(target: Target, path: str, model: str | None) -> str:
    if target.azure_api_version and model:
        return f"{target.base_url}/openai/deployments/{model}{path}?api-version={target.azure_api_version}"
    return target.base_url + path


def transport_error(target: Target, exc: TransportError) -> UpstreamError:
    detail = scrub(target, exc.detail)
    if exc.kind == "connect":
        return UpstreamUnavailable(
            f"Could not connect to provider {target.name!r}: {detail}", provider=target.name, retryable=True
        )
    if exc.kind == "first_byte_timeout":
        return UpstreamTimeout(
            f"Provider {target.name!r} did not start answering in time.", provider=target.name, retryable=True
        )
    if exc.kind == "idle_timeout":
        return UpstreamTimeout(f"Provider {target.name!r} stopped sending data.", provider=target.name)
    return UpstreamUnavailable(
        f"The connection to provider {target.name!r} broke: {detail}", provider=target.name, retryable=True
    )


def scrub(target: Target, text: str) -> str:
    for secret in target.secrets:
        if secret and secret in text:
            text = text.replace(secret, "***")
    return text


def error_from_response(
    target: Target, status: int, headers: Mapping[str, str], body: bytes
) -> UpstreamError:
    """Map an upstream error answer. 4xx keeps its status; 5xx becomes 502 (503/504 kept)."""
    message, etype, code, param = _parse_error(body)
    message = scrub(target, message or f"HTTP {status}")
    keep = {h: headers[h] for h in RATE_LIMIT_HEADERS if h in headers}
    if status == 429:
        return UpstreamError(
            f"Provider {target.name!r} is rate limited: {message}",
            status=429,
            type=etype or "rate_limit_error",
            code=code or "rate_limit_exceeded",
            param=param,
            headers=keep,
            upstream_status=status,
            retryable=True,
            provider=target.name,
        )
    if 400 <= status < 500:
        retryable = status in (408, 409)
        if status in (401, 403):
            message = f"Provider {target.name!r} refused the gateway's credentials: {message}"
        return UpstreamError(
            message,
            status=status,
            type=etype or "invalid_request_error",
            code=code,
            param=param,
            headers=keep,
            upstream_status=status,
            retryable=retryable,
            provider=target.name,
        )
    out_status = status if status in (503, 504) else 502
    return UpstreamError(
        f"Provider {target.name!r} failed with HTTP {status}: {message}",
        status=out_status,
        type=etype or "upstream_error",
        code=code,
        headers=keep,
        upstream_status=status,
        retryable=True,
        provider=target.name,
    )


def _parse_error(body: bytes) -> tuple[str | None, str | None, str | None, str | None]:
    try:
        data: Any = json.loads(body)
    except Exception:
        text = body.decode("utf-8", "replace").strip()
        return (text[:300] or None), None, None, None
    err = data.get("error") if isinstance(data, dict) else None
    if isinstance(err, dict):
        code = err.get("code")
        return (
            str(err.get("message") or "") or None,
            err.get("type") if isinstance(err.get("type"), str) else None,
            str(code) if code is not None else None,
            err.get("param") if isinstance(err.get("param"), str) else None,
        )
    if isinstance(err, str):
        return err, None, None, None
    if isinstance(data, dict) and isinstance(data.get("message"), str):
        return data["message"], None, None, None
    return None, None, None, None
