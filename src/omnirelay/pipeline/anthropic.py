"""The Anthropic Messages surface: messages, count_tokens, models."""

from __future__ import annotations

import time
from functools import partial

from starlette.requests import Request
from starlette.responses import Response

from omnirelay.accounting.metering import off_loop
from omnirelay.accounting.tokens import estimate_usage
from omnirelay.call import Call
from omnirelay.ingress import anthropic as anthropic_ingress
from omnirelay.passthrough import anthropic as anthropic_passthrough
from omnirelay.pipeline import _model_of, read_body, run_chat, session_key
from omnirelay.runtime import Runtime
from omnirelay.transport import json
from omnirelay.transport.responses import StreamResponse

ANTHROPIC = anthropic_ingress.AnthropicIngress()


async def anthropic_messages(rt: Runtime, request: Request, call: Call) -> Response | StreamResponse:
    body = json.parse_object(await read_body(request, rt.config.server.max_body_bytes))
    call.model = _model_of(body, None)
    call.stream = body.get("stream") is True
    route = rt.resolve(call, call.model, body)
    return await run_chat(
        rt,
        call,
        route,
        ANTHROPIC,
        body,
        lambda dep: anthropic_passthrough.messages(call, dep, body, request.headers),
        session_key(request.headers, body, route),
    )


async def anthropic_count_tokens(rt: Runtime, request: Request, call: Call) -> Response:
    raw = await read_body(request, rt.config.server.max_body_bytes)
    body = json.parse_object(raw)
    call.model = _model_of(body, None)
    call.billable = False  # counting tokens is free, as at Anthropic
    dep = rt.resolve(call, call.model).deployments[0]
    if dep.provider.dialect == "anthropic":
        call.served_by(dep)
        return await anthropic_passthrough.count_tokens(call, dep, body, request.headers)
    req = ANTHROPIC.decode({**body, "max_tokens": 1})
    model = dep.upstream_model  # a large prompt is counted off the event loop
    call.usage = await off_loop(partial(estimate_usage, req, model), model, len(raw))
    return call.json_response(json.dumps({"input_tokens": call.usage.input_tokens}))


async def anthropic_models(rt: Runtime, request: Request, call: Call) -> Response:
    created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(rt.started))
    data = [
        {"type": "model", "id": name, "display_name": name, "created_at": created}
        for name, _owner in rt.models(call)
    ]
    return call.json_response(
        json.dumps(
            {
                "data": data,
                "has_more": False,
                "first_id": data[0]["id"] if data else None,
                "last_id": data[-1]["id"] if data else None,
            }
        ),
    )
