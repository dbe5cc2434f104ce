"""The OpenAI Responses surface: `POST /v1/responses` (any upstream, through the canonical model),
`GET /v1/responses/{id}`, and `previous_response_id` over stored exchanges."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from omnirelay.call import Call
from omnirelay.canonical.request import ChatRequest
from omnirelay.canonical.response import ChatResponse
from omnirelay.canonical.stream import StreamEvent
from omnirelay.errors import GatewayError, NotFound
from omnirelay.ingress.openai_responses import ResponsesIngress
from omnirelay.ingress.openai_responses.history import history_items, prepend_history
from omnirelay.ingress.openai_responses.stream import ResponsesStreamEncoder
from omnirelay.pipeline import _model_of, _no_adapter, read_body, run_chat, session_key
from omnirelay.routing.router import Deployment
from omnirelay.runtime import Runtime
from omnirelay.storage.records import StoredResponse
from omnirelay.transport import json
from omnirelay.transport.responses import StreamResponse

RESPONSES = ResponsesIngress()
Save = Callable[[dict[str, Any]], None]


class _SavingEncoder:
    """Delegates to the Responses stream encoder and saves the final Response object it builds."""

    def __init__(self, inner: ResponsesStreamEncoder, save: Save) -> None:
        self._inner = inner
        self._save = save

    def encode(self, event: StreamEvent) -> bytes:
        return self._inner.encode(event)

    def close(self) -> bytes:
        out = self._inner.close()
        if self._inner.response is not None:
            self._save(self._inner.response)
        return out

    def error(self, err: GatewayError) -> bytes:
        out = self._inner.error(err)
        if self._inner.response is not None:
            self._save(self._inner.response)
        return out


class _SavingIngress:
    """The Responses codec for one request, saving what it answers when `store` is on."""

    dialect = RESPONSES.dialect

    def __init__(self, save: Save | None) -> None:
        self._save = save

    def decode(self, body: dict[str, Any]) -> ChatRequest:
        return RESPONSES.decode(body)

    def encode_response(self, resp: ChatResponse, req: ChatRequest) -> bytes:
        out = RESPONSES.encode_response(resp, req)
        if self._save is not None:
            self._save(json.loads(out))
        return out

    def stream_encoder(self, req: ChatRequest) -> ResponsesStreamEncoder | _SavingEncoder:
        inner = RESPONSES.stream_encoder(req)
        return inner if self._save is None else _SavingEncoder(inner, self._save)

    def error_body(self, err: GatewayError) -> bytes:
        return RESPONSES.error_body(err)


async def create(rt: Runtime, request: Request, call: Call) -> Response | StreamResponse:
    body = json.parse_object(await read_body(request, rt.config.server.max_body_bytes))
    call.model = _model_of(body, None)
    call.stream = body.get("stream") is True
    previous = body.get("previous_response_id")
    if previous is not None:
        stored = await rt.responses.get(str(previous), call.key_id) if rt.responses else None
        if stored is None:
            raise NotFound(
                f"Previous response with id {previous!r} not found.",
                param="previous_response_id",
                code="previous_response_not_found",
            )
        body = prepend_history(body, history_items(json.loads(stored.request), json.loads(stored.response)))
    route = rt.resolve(call, call.model, body)
    save: Save | None = None
    if body.get("store") is not False and rt.responses is not None:
        archive, expanded = rt.responses, json.dumps(body).decode()

        def save(response: dict[str, Any]) -> None:
            archive.save(
                StoredResponse(
                    id=str(response["id"]),
                    ts=time.time(),
                    key_id=call.key_id,
                    model=call.model,
                    request=expanded,
                    response=json.dumps(response).decode(),
                )
            )

    async def no_passthrough(dep: Deployment) -> Response:
        raise _no_adapter(dep, "Responses requests")  # no upstream speaks this dialect

    return await run_chat(
        rt, call, route, _SavingIngress(save), body, no_passthrough, session_key(request.headers, body, route)
    )


async def retrieve(rt: Runtime, request: Request, call: Call) -> Response:
    response_id = request.path_params["response_id"]
    stored = await rt.responses.get(response_id, call.key_id) if rt.responses else None
    if stored is None:
        raise NotFound(
            f"Response with id {response_id!r} not found.", param="response_id", code="response_not_found"
        )
    call.model = stored.model
    return call.json_response(stored.response.encode())
