"""A deterministic fake of the Gemini API (generativelanguage v1beta), for exercising the gateway.

Wire shapes follow what the official ``google-genai`` SDK sends and parses (camelCase JSON, Google
error envelopes ``{"error": {code, message, status, details}}``, ``data: <json>\\r\\n\\r\\n`` SSE events
for ``?alt=sse`` and a JSON array body without it). Like the real API it validates requests:

* unknown keys in function-declaration schemas (``additionalProperties``, ``$schema``, ``$defs``,
  ``const``, ``default``, ...) → 400 INVALID_ARGUMENT ``Invalid JSON payload received. Unknown name …``;
* empty ``parts``, bad roles, parts with no data field, non-object ``functionCall.args`` or
  ``functionResponse.response``;
* a ``functionResponse`` whose name matches no earlier ``functionCall``, or a function-response turn
  whose part count differs from the function-call turn before it;
* with ``thinkingConfig``: a ``functionCall`` of the current turn without a ``thoughtSignature`` this fake
  issued.

Answers: ``"echo: " + <last user text>`` (plus `` [images: N]``…); after function responses
``"tool said: " + <compact JSON of each response>``; declared tools (mode not NONE) → one ``functionCall``
per (allowed) function, no ids, each with a ``thoughtSignature`` ``sig_<hex>`` when ``thinkingConfig`` is
present; ``includeThoughts`` → a ``thought: true`` part first; JSON mime type → JSON. Usage counts words.
Special models: see ``SPECIAL_MODELS``. Every request is recorded in ``FakeGeminiState.requests``.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import logging
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from .answers import (
    answer,
    blocked,
    count_words,
    dumps,
    failure,
    google_error,
    json_response,
    model_info,
    response_body,
    stream_chunks,
    vector,
)
from .validation import TOP_KEYS, Invalid, check_contents, get, known

__all__ = ["DEFAULT_MODELS", "SPECIAL_MODELS", "FakeGeminiState", "create_app", "google_error"]

DEFAULT_MODELS: tuple[str, ...] = ("gemini-2.5-flash", "gemini-2.5-pro", "gemini-embedding-001")
SPECIAL_MODELS: dict[str, str] = {
    "cache-hit": "usage reports cachedContentTokenCount 900 of promptTokenCount 1000",
    "max-tokens": "the answer is cut after two words with finishReason MAX_TOKENS",
    "blocked": "promptFeedback.blockReason SAFETY and no candidates",
    "legacy-schema": "400 for generationConfig.responseJsonSchema (models that predate it)",
    "not-found": "404 NOT_FOUND",
    "fail-429": "429 RESOURCE_EXHAUSTED with RetryInfo retryDelay 7s",
    "fail-500": "500 INTERNAL",
    "fail-503": "503 UNAVAILABLE",
    "fail-400": "400 INVALID_ARGUMENT",
    "cut-stream": "streams two chunks, then drops the connection",
    "embedding-with-usage": "embeddings that report usageMetadata",
}
RawResponse = tuple[int, Mapping[str, str], bytes]


@dataclass
class FakeGeminiState:
    requests: list[dict[str, Any]] = field(default_factory=list)
    #: When non-empty, only these keys are accepted (others get 400 API_KEY_INVALID).
    valid_keys: set[str] = field(default_factory=set)
    models: list[str] = field(default_factory=lambda: list(DEFAULT_MODELS))
    #: Every thoughtSignature handed out; replayed function calls must carry one of these.
    issued_signatures: set[str] = field(default_factory=set)
    #: FIFO of (status, headers, body) returned verbatim for the next requests.
    next_responses: list[RawResponse] = field(default_factory=list)
    embedding_dims: int = 768

    @property
    def last_request(self) -> dict[str, Any]:
        if not self.requests:
            raise AssertionError("the fake Gemini upstream has received no request")
        return self.requests[-1]

    def reset(self) -> None:
        self.requests.clear()
        self.next_responses.clear()
        self.valid_keys.clear()


def _bad(message: str) -> Response:
    return google_error(400, "INVALID_ARGUMENT", message)


_DROPPING = contextvars.ContextVar("fake_gemini_dropping", default=False)


class _DropFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not _DROPPING.get()


_FILTER = _DropFilter()


class _Chunks(Response):
    """A streamed body of pre-rendered pieces; ``drop_after`` ends the connection mid-body."""

    def __init__(self, pieces: Sequence[bytes], media_type: str, drop_after: int | None = None) -> None:
        super().__init__(content=None, media_type=media_type)
        self.raw_headers = [(k, v) for k, v in self.raw_headers if k != b"content-length"]
        self.pieces, self.drop_after = list(pieces), drop_after

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
        for i, piece in enumerate(self.pieces):
            if self.drop_after is not None and i >= self.drop_after:
                _DROPPING.set(True)
                return  # uvicorn closes the socket: the body never completes
            await send({"type": "http.response.body", "body": piece, "more_body": True})
            await asyncio.sleep(0)
        await send({"type": "http.response.body", "body": b"", "more_body": False})


def create_app(state: FakeGeminiState) -> Starlette:
    logger = logging.getLogger("uvicorn.error")
    if _FILTER not in logger.filters:
        logger.addFilter(_FILTER)

    def authorize(record: dict[str, Any]) -> Response | None:
        if state.next_responses:
            status, headers, payload = state.next_responses.pop(0)
            media = dict(headers).get("content-type", "application/json")
            rest = {k: v for k, v in headers.items() if k.lower() != "content-type"}
            return Response(payload, status_code=status, headers=rest, media_type=media)
        if not record["key"]:
            return google_error(
                403,
                "PERMISSION_DENIED",
                "Method doesn't allow unregistered callers (callers "
                "without established identity). Please use API Key or other form of API consumer "
                "identity to call this API.",
            )
        if state.valid_keys and record["key"] not in state.valid_keys:
            return google_error(
                400,
                "INVALID_ARGUMENT",
                "API key not valid. Please pass a valid API key.",
                [
                    {
                        "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                        "reason": "API_KEY_INVALID",
                        "domain": "googleapis.com",
                        "metadata": {"service": "generativelanguage.googleapis.com"},
                    }
                ],
            )
        return None

    async def record_of(request: Request) -> dict[str, Any]:
        raw = await request.body()
        record: dict[str, Any] = {
            "method": request.method,
            "path": unquote(request.url.path),
            "query": dict(request.query_params),
            "headers": {k.lower(): v for k, v in request.headers.items()},
            "json": None,
            "raw": raw,
            "key": request.headers.get("x-goog-api-key") or request.query_params.get("key"),
        }
        if raw:
            try:
                record["json"] = json.loads(raw)
            except ValueError:
                record["json"] = ValueError
        state.requests.append(record)
        return record

    async def list_models(request: Request) -> Response:
        record = await record_of(request)
        denied = authorize(record)
        if denied is not None:
            return denied
        size = int(request.query_params.get("pageSize") or 50)
        start = int(request.query_params.get("pageToken") or 0)
        out: dict[str, Any] = {"models": [model_info(m) for m in state.models[start : start + size]]}
        if start + size < len(state.models):
            out["nextPageToken"] = str(start + size)
        return json_response(out)

    async def model_route(request: Request) -> Response:
        record = await record_of(request)
        denied = authorize(record)
        if denied is not None:
            return denied
        name = unquote(request.path_params["name"])
        model, _, rpc = name.partition(":")
        record["model"], record["rpc"] = model, rpc
        if request.method == "GET" and not rpc:
            if model not in state.models:
                return google_error(404, "NOT_FOUND", f"models/{model} is not found for API version v1beta.")
            return json_response(model_info(model))
        if request.method != "POST" or not rpc:
            return google_error(404, "NOT_FOUND", f"Method not found: {request.method} {record['path']}")
        body = record["json"]
        if body is ValueError or not isinstance(body, dict):
            return _bad("Invalid JSON payload received. Unexpected token.")
        failed = failure(model)
        if failed is not None:
            return failed
        handler = {
            "generateContent": generate,
            "streamGenerateContent": stream,
            "countTokens": count_tokens,
            "embedContent": embed,
            "batchEmbedContents": batch_embed,
        }.get(rpc)
        if handler is None:
            return google_error(404, "NOT_FOUND", f"Method not found: {rpc}")
        try:
            return handler(model, body, request)
        except Invalid as exc:
            return _bad(str(exc))

    def generate(model: str, body: dict[str, Any], request: Request) -> Response:
        known(body, TOP_KEYS, "")
        if model == "blocked":
            check_contents(body, False, state.issued_signatures)
            return json_response(blocked(model, body))
        per_candidate, reason, usage = answer(model, body, state.issued_signatures)
        candidates = [
            {"content": {"parts": parts, "role": "model"}, "finishReason": reason, "index": i}
            for i, parts in enumerate(per_candidate)
        ]
        return json_response(response_body(model, secrets.token_urlsafe(12), candidates, usage))

    def stream(model: str, body: dict[str, Any], request: Request) -> Response:
        known(body, TOP_KEYS, "")
        if model == "blocked":
            check_contents(body, False, state.issued_signatures)
            chunks = [blocked(model, body)]
        else:
            chunks = stream_chunks(model, *answer(model, body, state.issued_signatures))
        drop = 2 if model == "cut-stream" else None
        if request.query_params.get("alt") == "sse":
            return _Chunks([b"data: " + dumps(c) + b"\r\n\r\n" for c in chunks], "text/event-stream", drop)
        rendered = [json.dumps(c, indent=2).encode() for c in chunks]
        pieces = [b"[" + rendered[0], *(b",\r\n" + r for r in rendered[1:]), b"]"]
        return _Chunks(pieces, "application/json; charset=UTF-8", drop)

    def count_tokens(model: str, body: dict[str, Any], request: Request) -> Response:
        inner = get(body, "generateContentRequest") or body
        contents = check_contents(inner, False, state.issued_signatures)
        words = sum(count_words(p.get("text", "")) for c in contents for p in c["parts"])
        total = 1000 if model == "cache-hit" else max(1, words)
        return json_response(
            {"totalTokens": total, "promptTokensDetails": [{"modality": "TEXT", "tokenCount": total}]}
        )

    def embed_one(model: str, request_body: dict[str, Any], where: str) -> tuple[list[float], int]:
        if "embed" not in model:
            raise Invalid(f"models/{model} is not supported for embedContent.")
        named = request_body.get("model")
        if named is not None and named != f"models/{model}":
            raise Invalid(
                f"* BatchEmbedContentsRequest.{where}.model: the model ({named}) must match the model "
                f"in the URL (models/{model})."
            )
        parts = get(request_body.get("content"), "parts")
        if not isinstance(parts, list) or not parts:
            raise Invalid(f"* {where}.content.parts: contents.parts must not be empty.")
        text = " ".join(str(p.get("text", "")) for p in parts)
        dims = get(request_body, "outputDimensionality") or state.embedding_dims
        if not isinstance(dims, int) or not 1 <= dims <= 3072:
            raise Invalid(f"* {where}.output_dimensionality: must be between 1 and 3072.")
        return vector(text, dims), max(1, count_words(text))

    def _with_usage(model: str, out: dict[str, Any], words: int) -> Response:
        if model == "embedding-with-usage":
            out["usageMetadata"] = {"promptTokenCount": words, "totalTokenCount": words}
        return json_response(out)

    def embed(model: str, body: dict[str, Any], request: Request) -> Response:
        values, words = embed_one(model, body, "EmbedContentRequest")
        return _with_usage(model, {"embedding": {"values": values}}, words)

    def batch_embed(model: str, body: dict[str, Any], request: Request) -> Response:
        items = body.get("requests")
        if not isinstance(items, list) or not items:
            raise Invalid("* BatchEmbedContentsRequest.requests: requests must not be empty.")
        results = [embed_one(model, item, f"requests[{i}]") for i, item in enumerate(items)]
        return _with_usage(
            model, {"embeddings": [{"values": v} for v, _ in results]}, sum(w for _, w in results)
        )

    async def not_found(request: Request) -> Response:
        return google_error(404, "NOT_FOUND", f"Method not found: {request.method} {request.url.path}")

    app = Starlette(
        routes=[
            Route("/v1beta/models", list_models, methods=["GET"]),
            Route("/v1beta/models/{name:path}", model_route, methods=["GET", "POST"]),
            Route("/{path:path}", not_found, methods=["GET", "POST", "PUT", "PATCH", "DELETE"]),
        ]
    )
    app.state.fake = state
    return app
