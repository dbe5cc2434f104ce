"""The OpenAI Responses API (`POST /v1/responses`) as a client-facing protocol.

No upstream speaks this dialect yet, so every request is decoded into the canonical model
(`decode`), answered by any chat upstream, and encoded back as a `response` object (`encode`) or as
the typed event stream (`stream`). Stored state (`previous_response_id`, `item_reference`) is the
pipeline's job; `history` has the pure helpers it needs. Errors use the OpenAI error object.
"""

from __future__ import annotations

from typing import Any

from omnirelay.canonical.request import ChatRequest
from omnirelay.canonical.response import ChatResponse
from omnirelay.errors import GatewayError
from omnirelay.ingress.openai_chat import error_body
from omnirelay.ingress.openai_responses.decode import decode_request
from omnirelay.ingress.openai_responses.encode import encode_response, new_response_id
from omnirelay.ingress.openai_responses.history import (
    history_items,
    item_index,
    prepend_history,
    resolve_item_references,
)
from omnirelay.ingress.openai_responses.stream import ResponsesStreamEncoder
from omnirelay.transport import json

__all__ = [
    "ResponsesIngress",
    "ResponsesStreamEncoder",
    "decode_request",
    "encode_response",
    "history_items",
    "item_index",
    "new_response_id",
    "prepend_history",
    "resolve_item_references",
]


class ResponsesIngress:
    dialect = "openai-responses"

    def decode(self, body: dict[str, Any]) -> ChatRequest:
        return decode_request(body)

    def encode_response(self, resp: ChatResponse, req: ChatRequest) -> bytes:
        return json.dumps(encode_response(resp, req))

    def stream_encoder(self, req: ChatRequest) -> ResponsesStreamEncoder:
        return ResponsesStreamEncoder(req)

    def error_body(self, err: GatewayError) -> bytes:
        return json.dumps(error_body(err))
