"""The Gemini surface: `POST /v1beta/models/{model}:{method}` (also under `/v1` and `/google`) for
generateContent, streamGenerateContent (SSE with `alt=sse`, a JSON array without), countTokens,
embedContent and batchEmbedContents; `GET /v1beta/models` and `/v1beta/models/{model}`."""

from __future__ import annotations

from functools import partial
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from omnirelay.accounting.metering import off_loop
from omnirelay.accounting.tokens import estimate_usage
from omnirelay.call import Call
from omnirelay.canonical.request import EmbeddingRequest
from omnirelay.errors import NotFound
from omnirelay.ingress.gemini import GeminiIngress, encode_count_tokens, encode_model, encode_models
from omnirelay.passthrough import gemini as gemini_passthrough
from omnirelay.pipeline import _no_adapter, read_body, run_chat, session_key, with_attempts
from omnirelay.routing.router import Deployment, Route
from omnirelay.runtime import Runtime
from omnirelay.transport import json
from omnirelay.transport.responses import StreamResponse

GEMINI = GeminiIngress(sse=True)
GEMINI_ARRAY = GeminiIngress(sse=False)
CHAT_METHODS = ("generateContent", "streamGenerateContent")


def looks_like_gemini(request: Request) -> bool:
    """A google-genai client (it may use the `/v1/models` path that OpenAI clients use too)."""
    headers = request.headers
    return "x-goog-api-key" in headers or "x-goog-api-client" in headers or "key" in request.query_params


def _split(target: str) -> tuple[str, str]:
    model, sep, method = target.rpartition(":")
    if not sep or not model:
        raise NotFound(
            f"Unknown method in {target!r}; expected models/<model>:<method>.", code="unknown_method"
        )
    return model.removeprefix("models/"), method


async def dispatch(rt: Runtime, request: Request, call: Call) -> Response | StreamResponse:
    model, method = _split(request.path_params["target"])
    call.model = model
    raw = await read_body(request, rt.config.server.max_body_bytes)
    body = json.parse_object(raw)
    call.billable = method != "countTokens"  # counting tokens is free (and needs no credit), as at Google
    route = rt.resolve(call, model, body)
    if method in CHAT_METHODS:
        stream = method == "streamGenerateContent"
        use_sse = request.query_params.get("alt") == "sse"
        call.stream = stream
        ingress = GEMINI if use_sse or not stream else GEMINI_ARRAY
        tagged = {**body, "model": model, "stream": stream}
        return await run_chat(
            rt,
            call,
            route,
            ingress,
            tagged,
            lambda dep: gemini_passthrough.generate(call, dep, body, stream, use_sse),
            session_key(request.headers, body, route),
        )
    if method == "countTokens":
        return await _count_tokens(call, route, model, body, len(raw))
    if method in ("embedContent", "batchEmbedContents"):
        return await _embed(rt, call, route, model, method, body)
    raise NotFound(f"Method {method!r} is not supported by this gateway.", code="unknown_method")


async def _count_tokens(call: Call, route: Route, model: str, body: dict[str, Any], size: int) -> Response:
    dep = route.deployments[0]
    if dep.provider.dialect == "gemini":
        call.served_by(dep)
        return await gemini_passthrough.relay_json(call, dep, "countTokens", body)
    req = GEMINI.decode_count_tokens(model, body)  # a large prompt is counted off the event loop
    usage = await off_loop(partial(estimate_usage, req, dep.upstream_model), dep.upstream_model, size)
    call.usage = usage
    return call.json_response(encode_count_tokens(usage))


async def _embed(
    rt: Runtime, call: Call, route: Route, model: str, method: str, body: dict[str, Any]
) -> Response:
    batch = method == "batchEmbedContents"
    req: EmbeddingRequest = (
        GEMINI.decode_batch_embed(model, body) if batch else GEMINI.decode_embed(model, body)
    )

    async def attempt(dep: Deployment) -> Response:
        if dep.provider.dialect == "gemini":
            return await gemini_passthrough.relay_json(call, dep, method, body)
        adapter = dep.provider.adapter
        if adapter is None:
            raise _no_adapter(dep, "embeddings")
        req.model = dep.upstream_model
        resp = await adapter.embed(req, dep.key)
        call.mark_first_byte()
        call.usage = resp.usage
        return call.json_response(GEMINI.encode_batch_embed(resp) if batch else GEMINI.encode_embed(resp))

    return await with_attempts(rt, call, route, attempt)


async def list_models(rt: Runtime, request: Request, call: Call) -> Response:
    return call.json_response(encode_models(name for name, _owner in rt.models(call)))


async def get_model(rt: Runtime, request: Request, call: Call) -> Response:
    name = request.path_params["target"].removeprefix("models/")
    rt.resolve(call, name)
    return call.json_response(encode_model(name))
