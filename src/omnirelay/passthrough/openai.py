"""OpenAI-dialect requests to OpenAI-dialect upstreams.

The body is forwarded with only the edits the gateway needs (the upstream model name; in streams,
`stream_options.include_usage` so every request learns its token counts). Answers go back as the
upstream's own bytes: a JSON body is parsed once to read usage, an SSE stream is cut into events
and relayed as they arrive, with only the usage chunk the client did not ask for removed.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from omnirelay.call import Call
from omnirelay.canonical.usage import Usage
from omnirelay.errors import GatewayError
from omnirelay.ingress.openai_chat import error_body
from omnirelay.passthrough import incomplete, parse_answer, read_whole
from omnirelay.routing.router import Deployment
from omnirelay.transport import json, sse
from omnirelay.transport.http import TransportError, UpstreamResponse
from omnirelay.upstream import openai
from omnirelay.wire.openai import parse_usage

_DONE = b"data: [DONE]"


async def send_json(
    dep: Deployment, path: str, body: bytes, content_type: str = "application/json"
) -> UpstreamResponse:
    """Send and raise the upstream's error answer, if any, before a byte reaches the client."""
    target = dep.provider.target
    resp = await openai.send(target, dep.key, path, body, content_type, model=dep.upstream_model)
    if resp.status >= 400:
        try:
            raw = await resp.read()
        except TransportError as exc:
            raise openai.transport_error(target, exc) from None
        raise openai.error_from_response(target, resp.status, resp.headers, raw)
    return resp


async def relay_body(call: Call, dep: Deployment, resp: UpstreamResponse, parse: bool) -> tuple[bytes, str]:
    """Read a whole answer; with `parse`, check it is JSON and take its usage."""
    raw = await read_whole(call, dep, resp)
    content_type = resp.headers.get("content-type", "application/json")
    if parse:
        data = parse_answer(dep, raw)
        usage = data.get("usage") if isinstance(data, dict) else None
        if isinstance(usage, dict):
            call.usage = _usage(usage)
    return raw, content_type


def _usage(raw: dict[str, Any]) -> Usage:
    if "prompt_tokens" in raw or "completion_tokens" in raw:
        return parse_usage(raw)
    # images and transcriptions report input/output tokens
    return Usage(
        input_tokens=int(raw.get("input_tokens") or 0), output_tokens=int(raw.get("output_tokens") or 0)
    )


def _has_value(event: bytes, key: bytes) -> bool:
    """Whether an event carries `key` with a non-null value (without parsing the JSON)."""
    at = event.find(key)
    if at < 0:
        return False
    rest = event[at + len(key) : at + len(key) + 12].lstrip(b": \t")
    return not rest.startswith(b"null")


async def relay_stream(
    call: Call, dep: Deployment, resp: UpstreamResponse, strip_usage: bool
) -> AsyncIterator[bytes]:
    """Relay upstream SSE events as they arrive, reading usage on the way.

    A stream that breaks or ends without `[DONE]` is ended with an error event, never retried:
    the client already has bytes.
    """
    splitter = sse.EventSplitter()
    done = finished = False
    failure: GatewayError | None = None
    try:
        async for chunk in resp.iter_bytes():
            call.mark_first_byte()
            events = splitter.feed(chunk)
            if not events:
                continue
            out: list[bytes] = []
            for event in events:
                if _has_value(event, b'"usage"'):
                    payload = sse.data_payload(event)
                    data = json.loads(payload) if payload and payload.startswith(b"{") else None
                    if isinstance(data, dict) and isinstance(data.get("usage"), dict):
                        call.usage = _usage(data["usage"])
                        if strip_usage and not data.get("choices"):
                            continue
                if not finished and _has_value(event, b'"finish_reason"'):
                    finished = True
                if event.startswith(_DONE):
                    done = True
                out.append(event)
            if out:
                yield out[0] if len(out) == 1 else b"".join(out)
    except TransportError as exc:
        failure = openai.transport_error(dep.provider.target, exc)
    finally:
        await resp.aclose()
    if done:
        return
    if failure is None and finished:
        yield _DONE + b"\n\n"  # a lenient upstream that ends without the terminator
        return
    failure = failure or incomplete(dep)
    call.status = 502
    call.error = failure.message
    yield sse.encode(json.dumps(error_body(failure)))
