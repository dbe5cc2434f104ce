"""Gemini's generateContent API as a client-facing protocol (`/v1beta/models/{model}:generateContent`).

The model comes from the URL, not the body: call `decode_for(model, body, stream=...)`, or put the
model into `body["model"]` (and `body["stream"] = True` for `:streamGenerateContent`) before calling
the `Ingress.decode(body)` form. Gemini-dialect upstreams skip this codec (passthrough).

Decisions, in one place:

- Tool-call ids: a `functionCall` keeps its `id`, or gets a synthesized `call_<24 hex>`. A
  `functionResponse` takes the id of the call it answers among the calls of the latest model turn:
  by id when it carries one, else by name in call order (each call answered once). An id the client
  sends that matches no call is kept; a response matching nothing gets a fresh id. Encoded function
  calls always carry the canonical id, so a client echoing it back is matched by id.
- Thought signatures (`thoughtSignature`, base64) round-trip in `provider_details["gemini"]
  ["thoughtSignature"]`: on the `ToolCallPart` of a `functionCall` part; on the `ThinkingPart` of a
  `thought: true` part; and, because `TextPart` has no `provider_details`, a signature on a text part
  (or a signature-only part) becomes a redacted `ThinkingPart("", redacted=True)` holding it right
  before that text. Encoding reverses this. Other vendors drop redacted thinking they cannot read.
  Only Gemini signatures are ever written to `thoughtSignature` (the SDK rejects non-base64 values).
- Thoughts: `includeThoughts` sets `include_reasoning` (off by default, as in Gemini); thought parts
  are returned only when it was asked for. `thinkingBudget` 0 → effort "none", -1 (dynamic) → the
  model's default, n > 0 → `reasoning_budget`; `thinkingLevel` → `reasoning_effort`.
- Tool config: AUTO → auto, NONE → none, ANY → required (one allowed name → that tool), VALIDATED →
  auto. With `allowedFunctionNames` (ANY or VALIDATED) only those tools are offered. Tools other than
  `functionDeclarations` (googleSearch, codeExecution, urlContext, ...) are a 400.
- Schemas: `parameters` / `responseSchema` (OpenAPI subset, upper-case types, `nullable`) are
  converted to JSON Schema; `parametersJsonSchema` / `responseJsonSchema` are taken as they are.
- Ignored: `safetySettings` (no canonical meaning) and `cachedContent` (a Gemini-side cache another
  vendor cannot read; its content is not part of the request). Other unknown top-level fields go to
  `extra`, unknown `generationConfig` fields to `extra["generationConfig"]`. `taskType`/`title` of
  embedding requests are ignored.
- Errors: `{"error": {code, message, status}}` with `code` = the HTTP status sent. 413 keeps code 413
  with status INVALID_ARGUMENT (gRPC has no "too large"); 502 and 529 → UNAVAILABLE (retryable); a
  429 with `retry-after` gets a RetryInfo detail; a 400 naming a param gets a BadRequest detail.
- Streams: `stream_encoder(req)` writes SSE (`?alt=sse`); `stream_encoder(req, sse=False)`, or an
  instance built with `GeminiIngress(sse=False)`, writes the JSON-array form used without `alt=sse`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from omnirelay.canonical.request import ChatRequest, EmbeddingRequest
from omnirelay.canonical.response import ChatResponse, EmbeddingResponse
from omnirelay.canonical.usage import Usage
from omnirelay.errors import GatewayError
from omnirelay.ingress.gemini.decode import (
    decode,
    decode_batch_embed,
    decode_count_tokens,
    decode_embed,
    decode_for,
    json_schema,
)
from omnirelay.ingress.gemini.encode import (
    StreamEncoder,
    encode_batch_embed,
    encode_count_tokens,
    encode_embed,
    encode_model,
    encode_models,
    encode_response,
    error_body,
    error_json,
    response_json,
    usage_json,
)

__all__ = [
    "GeminiIngress",
    "StreamEncoder",
    "decode",
    "decode_batch_embed",
    "decode_count_tokens",
    "decode_embed",
    "decode_for",
    "encode_batch_embed",
    "encode_count_tokens",
    "encode_embed",
    "encode_model",
    "encode_models",
    "encode_response",
    "error_body",
    "error_json",
    "json_schema",
    "response_json",
    "usage_json",
]


class GeminiIngress:
    dialect = "gemini"

    def __init__(self, *, sse: bool = True) -> None:
        self.sse = sse  # the stream form `stream_encoder` writes by default

    def decode(self, body: dict[str, Any]) -> ChatRequest:
        """Needs `body["model"]` (from the URL) and, for streaming, `body["stream"] = True`."""
        return decode(body)

    def decode_for(self, model: str, body: dict[str, Any], *, stream: bool = False) -> ChatRequest:
        return decode_for(model, body, stream=stream)

    def encode_response(self, resp: ChatResponse, req: ChatRequest) -> bytes:
        return encode_response(resp, req)

    def stream_encoder(self, req: ChatRequest, sse: bool | None = None) -> StreamEncoder:
        return StreamEncoder(req, sse=self.sse if sse is None else sse)

    def error_body(self, err: GatewayError) -> bytes:
        return error_body(err)

    # --- side endpoints ---------------------------------------------------------------------------

    def decode_count_tokens(self, model: str, body: dict[str, Any]) -> ChatRequest:
        return decode_count_tokens(model, body)

    def decode_embed(self, model: str, body: dict[str, Any]) -> EmbeddingRequest:
        return decode_embed(model, body)

    def decode_batch_embed(self, model: str, body: dict[str, Any]) -> EmbeddingRequest:
        return decode_batch_embed(model, body)

    def encode_embed(self, resp: EmbeddingResponse) -> bytes:
        return encode_embed(resp)

    def encode_batch_embed(self, resp: EmbeddingResponse) -> bytes:
        return encode_batch_embed(resp)

    def encode_count_tokens(self, usage: Usage) -> bytes:
        return encode_count_tokens(usage)

    def encode_models(self, names: Iterable[str]) -> bytes:
        return encode_models(names)

    def encode_model(self, name: str) -> bytes:
        return encode_model(name)
