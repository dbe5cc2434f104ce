"""The Starlette app: recording, auth, failure models, routes, and the SSE response."""

from __future__ import annotations

import asyncio
import contextvars
import json
import logging
import secrets
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from .answers import answer, prompt_words, stream_events
from .common import FakeAnthropicState, RecordedRequest, dumps, sse_event
from .rules import Invalid, check

_FAILURES: dict[str, tuple[int, str, str]] = {
    "fail-429": (429, "rate_limit_error", "Number of request tokens has exceeded your per-minute rate limit"),
    "fail-529": (529, "overloaded_error", "Overloaded"),
    "fail-500": (500, "api_error", "Internal server error"),
    "fail-400": (400, "invalid_request_error", "The fake upstream was asked to reject this request."),
    "fail-403": (403, "permission_error", "Your API key does not have permission to use this resource."),
    "fail-404": (404, "not_found_error", "model: fail-404"),
    "fail-413": (413, "request_too_large", "Request exceeds the maximum allowed number of bytes."),
}


def _headers(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    headers = {"request-id": "req_" + secrets.token_hex(12), "anthropic-organization-id": "org-fake"}
    headers.update(extra or {})
    return headers


def anthropic_error(
    status: int, type: str, message: str, headers: Mapping[str, str] | None = None
) -> Response:
    out = _headers(headers)
    body = {"type": "error", "error": {"type": type, "message": message}, "request_id": out["request-id"]}
    return Response(dumps(body), status_code=status, headers=out, media_type="application/json")


def _json(obj: Any) -> Response:
    return Response(dumps(obj), headers=_headers(), media_type="application/json")


_DROPPING: contextvars.ContextVar[bool] = contextvars.ContextVar("fake_anthropic_dropping", default=False)


class _DropFilter(logging.Filter):
    """Silence uvicorn's complaint about the response a `cut-stream` drops on purpose."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not _DROPPING.get()


_DROP_FILTER = _DropFilter()


class _EventStream(Response):
    """Pre-rendered SSE events; with ``drop_after`` the body is left unfinished and the socket closed."""

    def __init__(
        self,
        events: Sequence[bytes],
        state: FakeAnthropicState,
        drop_after: int | None = None,
        delay: float = 0.0,
    ):
        super().__init__(None, 200, _headers({"cache-control": "no-cache"}), "text/event-stream")
        self.raw_headers = [(k, v) for k, v in self.raw_headers if k != b"content-length"]
        self.events, self.state, self.drop_after, self.delay = list(events), state, drop_after, delay

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        gone = asyncio.Event()

        async def watch() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            gone.set()
            self.state.disconnects += 1

        watcher = asyncio.ensure_future(watch())
        sent: list[bytes] = []
        self.state.sent_events = sent
        try:
            await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
            for i, event in enumerate(self.events):
                if self.drop_after is not None and i >= self.drop_after:
                    _DROPPING.set(True)
                    return
                if i and self.delay:
                    await asyncio.sleep(self.delay)
                if gone.is_set():
                    return
                await send({"type": "http.response.body", "body": event, "more_body": True})
                sent.append(event)
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            watcher.cancel()


Handler = Callable[[Request, RecordedRequest], Awaitable[Response]]


def create_app(state: FakeAnthropicState) -> Starlette:
    """The fake API bound to ``state``: ``POST /v1/messages``, ``POST /v1/messages/count_tokens``,
    ``GET /v1/models`` and ``GET /v1/models/{id}``. Keys come in ``x-api-key`` (the classic form) or
    ``Authorization: Bearer`` (SDK 2.x); ``anthropic-version`` is required."""
    logger = logging.getLogger("uvicorn.error")
    if _DROP_FILTER not in logger.filters:
        logger.addFilter(_DROP_FILTER)

    def endpoint(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        async def run(request: Request) -> Response:
            raw = await request.body()
            headers = {k.lower(): v for k, v in request.headers.items()}
            record: RecordedRequest = {
                "method": request.method,
                "path": request.url.path,
                "headers": headers,
                "json": None,
                "raw": raw,
                "key": None,
                "auth": None,
            }
            if raw:
                try:
                    record["json"] = json.loads(raw)
                except ValueError:
                    record["json"] = None
            scheme, _, token = headers.get("authorization", "").partition(" ")
            if headers.get("x-api-key"):
                record["key"], record["auth"] = headers["x-api-key"], "x-api-key"
            elif scheme.lower() == "bearer" and token.strip():
                record["key"], record["auth"] = token.strip(), "bearer"
            state.requests.append(record)
            if state.next_responses:
                status, extra, payload = state.next_responses.pop(0)
                out = _headers({k.lower(): v for k, v in extra.items()})
                media_type = out.pop("content-type", "application/json")
                return Response(bytes(payload), status_code=status, headers=out, media_type=media_type)
            if record["key"] is None:
                return anthropic_error(401, "authentication_error", "x-api-key header is required")
            if state.valid_keys and record["key"] not in state.valid_keys:
                return anthropic_error(401, "authentication_error", "invalid x-api-key")
            if "anthropic-version" not in headers:
                return anthropic_error(400, "invalid_request_error", "anthropic-version: header is required")
            if request.method == "POST" and not isinstance(record["json"], dict):
                return anthropic_error(400, "invalid_request_error", "The request body is not valid JSON.")
            try:
                return await handler(request, record)
            except Invalid as exc:
                return anthropic_error(400, "invalid_request_error", str(exc))

        return run

    async def messages(request: Request, record: RecordedRequest) -> Response:
        body: dict[str, Any] = record["json"]
        failure = _FAILURES.get(str(body.get("model")))
        if failure is not None:
            status, etype, text = failure
            extra = {"retry-after": "3", "anthropic-ratelimit-requests-remaining": "0"}
            return anthropic_error(status, etype, text, extra if status == 429 else None)
        turns = check(body, state)
        message = answer(body, turns, state)
        if body.get("stream") is not True:
            return _json(message)
        events = stream_events(message)
        if body["model"] == "cut-stream":
            return _EventStream(events, state, drop_after=5)
        if body["model"] == "stream-error":
            error = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
            return _EventStream([*events[:5], sse_event(error)], state)
        return _EventStream(events, state, delay=state.chunk_delay if body["model"] == "slow-stream" else 0.0)

    async def count_tokens(request: Request, record: RecordedRequest) -> Response:
        body: dict[str, Any] = record["json"]
        return _json({"input_tokens": prompt_words(body, check(body, state, count=True))})

    def model_info(model: str) -> dict[str, Any]:
        return {
            "type": "model",
            "id": model,
            "display_name": model.replace("-", " ").title(),
            "created_at": "2025-09-29T00:00:00Z",
            "lifecycle": "active",
        }

    async def list_models(request: Request, record: RecordedRequest) -> Response:
        data = [model_info(m) for m in state.models]
        first, last = (data[0]["id"], data[-1]["id"]) if data else (None, None)
        return _json({"data": data, "has_more": False, "first_id": first, "last_id": last})

    async def get_model(request: Request, record: RecordedRequest) -> Response:
        model = request.path_params["model_id"]
        if model not in state.models:
            return anthropic_error(404, "not_found_error", f"model: {model}")
        return _json(model_info(model))

    async def not_found(request: Request, record: RecordedRequest) -> Response:
        return anthropic_error(404, "not_found_error", "Not Found")

    all_methods = ["GET", "POST", "PUT", "PATCH", "DELETE"]
    routes = [
        Route("/v1/messages", endpoint(messages), methods=["POST"]),
        Route("/v1/messages/count_tokens", endpoint(count_tokens), methods=["POST"]),
        Route("/v1/models", endpoint(list_models), methods=["GET"]),
        Route("/v1/models/{model_id:path}", endpoint(get_model), methods=["GET"]),
        Route("/{path:path}", endpoint(not_found), methods=all_methods),
    ]
    app = Starlette(routes=routes)
    app.state.fake = state
    return app
