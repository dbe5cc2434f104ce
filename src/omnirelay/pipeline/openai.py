"""The OpenAI surface: chat completions, embeddings, the other JSON endpoints, audio, models."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from omnirelay.accounting.metering import prompt_of
from omnirelay.call import Call
from omnirelay.errors import BadRequest
from omnirelay.ingress import openai_chat
from omnirelay.passthrough.openai import relay_body, relay_stream, send_json
from omnirelay.pipeline import _model_of, _no_adapter, read_body, run_chat, session_key, with_attempts
from omnirelay.pipeline.anthropic import anthropic_models
from omnirelay.pipeline.gemini import get_model as gemini_model
from omnirelay.pipeline.gemini import list_models as gemini_models
from omnirelay.pipeline.gemini import looks_like_gemini
from omnirelay.routing.router import Deployment
from omnirelay.runtime import Runtime
from omnirelay.transport import json, multipart
from omnirelay.transport.responses import StreamResponse

OPENAI = openai_chat.OpenAIChatIngress()


async def chat_completions(rt: Runtime, request: Request, call: Call) -> Response | StreamResponse:
    body = json.parse_object(await read_body(request, rt.config.server.max_body_bytes))
    call.model = openai_chat.check_request(body)
    call.stream = stream = body.get("stream") is True
    route = rt.resolve(call, call.model, body)
    return await run_chat(
        rt,
        call,
        route,
        OPENAI,
        body,
        lambda dep: _chat_passthrough(call, dep, body, stream),
        session_key(request.headers, body, route),
    )


async def _chat_passthrough(
    call: Call, dep: Deployment, body: dict[str, Any], stream: bool
) -> Response | StreamResponse:
    out = dict(body)
    out["model"] = dep.upstream_model
    strip_usage = False
    if stream and dep.provider.stream_usage:
        options = body.get("stream_options")
        options = dict(options) if isinstance(options, dict) else {}
        if options.get("include_usage") is not True:
            options["include_usage"] = True
            out["stream_options"] = options
            strip_usage = True
    resp = await send_json(dep, "/chat/completions", json.dumps(out))
    call.upstream_headers = resp.headers
    prompt = prompt_of(lambda: OPENAI.decode(body), body, dep.upstream_model)  # only if usage is missing
    if stream and "event-stream" in resp.headers.get("content-type", ""):
        return call.stream_response(relay_stream(call, dep, resp, strip_usage, prompt), prompt=prompt)
    raw, content_type = await relay_body(call, dep, resp, parse=True, prompt=prompt)
    return call.json_response(raw, resp.status, content_type)


async def embeddings(rt: Runtime, request: Request, call: Call) -> Response:
    body = json.parse_object(await read_body(request, rt.config.server.max_body_bytes))
    call.model = _model_of(body, None)

    async def attempt(dep: Deployment) -> Response:
        if dep.provider.dialect == "openai":
            return await _relay_json(call, dep, body, "/embeddings")
        adapter = dep.provider.adapter
        if adapter is None:
            raise _no_adapter(dep, "/v1/embeddings")
        req = openai_chat.decode_embeddings({**body, "model": dep.upstream_model})
        resp = await adapter.embed(req, dep.key)
        call.mark_first_byte()
        call.usage = resp.usage
        return call.json_response(
            json.dumps(openai_chat.encode_embeddings(resp, body.get("encoding_format")))
        )

    return await with_attempts(rt, call, rt.resolve(call, call.model), attempt)


def _completion_prompt(path: str, body: dict[str, Any], dep: Deployment) -> Callable[[], int] | None:
    """The prompt count of a legacy completion, used only if its answer reports no usage."""
    return prompt_of(None, body.get("prompt"), dep.upstream_model) if path == "/completions" else None


async def _relay_json(call: Call, dep: Deployment, body: dict[str, Any], path: str) -> Response:
    out = dict(body)
    out["model"] = dep.upstream_model
    resp = await send_json(dep, path, json.dumps(out))
    call.upstream_headers = resp.headers
    content_type = resp.headers.get("content-type", "application/json")
    prompt = _completion_prompt(path, body, dep)
    raw, content_type = await relay_body(call, dep, resp, parse="json" in content_type, prompt=prompt)
    return call.json_response(raw, resp.status, content_type)


def openai_json_endpoint(
    path: str, default_model: str | None = None, streams: bool = False
) -> Callable[[Runtime, Request, Call], Awaitable[Response | StreamResponse]]:
    """A relay for an OpenAI JSON endpoint served only by OpenAI-dialect providers."""

    async def handler(rt: Runtime, request: Request, call: Call) -> Response | StreamResponse:
        body = json.parse_object(await read_body(request, rt.config.server.max_body_bytes))
        call.model = _model_of(body, default_model)
        call.stream = stream = streams and body.get("stream") is True

        async def attempt(dep: Deployment) -> Response | StreamResponse:
            if dep.provider.dialect != "openai":
                raise _no_adapter(dep, "/v1" + path)
            if not stream:
                return await _relay_json(call, dep, body, path)
            out = dict(body)
            out["model"] = dep.upstream_model
            options = dict(body.get("stream_options") or {})
            strip = dep.provider.stream_usage and options.get("include_usage") is not True
            if strip:
                options["include_usage"] = True
                out["stream_options"] = options
            resp = await send_json(dep, path, json.dumps(out))
            call.upstream_headers = resp.headers
            prompt = _completion_prompt(path, body, dep)
            return call.stream_response(relay_stream(call, dep, resp, strip, prompt), prompt=prompt)

        return await with_attempts(rt, call, rt.resolve(call, call.model), attempt)

    return handler


async def transcriptions(rt: Runtime, request: Request, call: Call) -> Response:
    """multipart/form-data in; the form is rebuilt with the upstream model name and relayed."""
    limit = rt.config.server.max_body_bytes
    content_type = request.headers.get("content-type", "")
    if not content_type.startswith("multipart/form-data"):
        raise BadRequest("This endpoint takes multipart/form-data with 'file' and 'model'.")
    fields: list[tuple[str, str | multipart.FilePart]] = []
    async with request.form(max_files=4, max_fields=200, max_part_size=limit) as form:
        for name, value in form.multi_items():
            if isinstance(value, str):
                fields.append((name, value))
            else:
                data = await value.read()
                fields.append(
                    (
                        name,
                        multipart.FilePart(
                            value.filename or "audio", value.content_type or "application/octet-stream", data
                        ),
                    )
                )
    model = next((v for k, v in fields if k == "model" and isinstance(v, str)), None)
    if not model:
        raise BadRequest("'model' is required.", param="model", code="missing_model")
    if not any(isinstance(v, multipart.FilePart) for _k, v in fields):
        raise BadRequest("'file' is required.", param="file")
    call.model = model

    async def attempt(dep: Deployment) -> Response:
        if dep.provider.dialect != "openai":
            raise _no_adapter(dep, "/v1/audio/transcriptions")
        edited = [(k, dep.upstream_model if k == "model" else v) for k, v in fields]
        body, ctype = multipart.encode(edited)
        resp = await send_json(dep, "/audio/transcriptions", body, ctype)
        call.upstream_headers = resp.headers
        rtype = resp.headers.get("content-type", "application/json")
        raw, rtype = await relay_body(call, dep, resp, parse="json" in rtype)
        return call.json_response(raw, resp.status, rtype)

    return await with_attempts(rt, call, rt.resolve(call, model), attempt)


# --- models -------------------------------------------------------------------------------------


def _model_json(rt: Runtime, name: str, owner: str) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": rt.started, "owned_by": owner}


async def list_models(rt: Runtime, request: Request, call: Call) -> Response:
    if "anthropic-version" in request.headers:  # the Anthropic SDK lists models at the same path
        return await anthropic_models(rt, request, call)
    if looks_like_gemini(request):  # so does google-genai with API version v1
        return await gemini_models(rt, request, call)
    data = [_model_json(rt, name, owner) for name, owner in rt.models(call)]
    return call.json_response(json.dumps({"object": "list", "data": data}))


async def get_model(rt: Runtime, request: Request, call: Call) -> Response:
    if looks_like_gemini(request):
        request.path_params["target"] = request.path_params["model"]
        return await gemini_model(rt, request, call)
    model = request.path_params["model"]
    dep = rt.resolve(call, model).deployments[0]
    return call.json_response(json.dumps(_model_json(rt, model, dep.provider.name)))
