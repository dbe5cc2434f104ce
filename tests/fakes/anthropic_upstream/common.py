"""State shared by the fake's modules: the recording dataclass, model names, signatures, framing."""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

RecordedRequest = dict[str, Any]
RawResponse = tuple[int, Mapping[str, str], bytes]

DEFAULT_MODELS: tuple[str, ...] = ("claude-sonnet-4-6", "claude-opus-4-6", "claude-haiku-4-5")

SPECIAL_MODELS: dict[str, str] = {
    "cache-hit": "normal answer; usage input 100, cache_read 900, cache_creation 50",
    "refuse": "answers 'I can't help with that.' with stop_reason refusal",
    "fail-429": "429 rate_limit_error with retry-after: 3",
    "fail-529": "529 overloaded_error",
    "fail-500": "500 api_error",
    "fail-400": "400 invalid_request_error",
    "fail-403": "403 permission_error",
    "fail-404": "404 not_found_error",
    "fail-413": "413 request_too_large",
    "cut-stream": "stream: message_start, ping, a block start and two deltas, then the connection drops",
    "stream-error": "stream: like cut-stream, but ends with an `event: error` (overloaded_error)",
    "slow-stream": "stream normally but sleep FakeAnthropicState.chunk_delay between events",
}


_SIGNING_SECRET = secrets.token_bytes(16)


@dataclass
class FakeAnthropicState:
    """Mutable configuration and recording shared between a test and the fake server."""

    #: Every request received, oldest first: method, path, headers (lowercased), json, raw, key, auth.
    requests: list[RecordedRequest] = field(default_factory=list)
    #: If non-empty, only these keys are accepted (others get 401 authentication_error).
    valid_keys: set[str] = field(default_factory=set)
    #: FIFO of ``(status, headers, body)`` returned verbatim for the next requests.
    next_responses: list[RawResponse] = field(default_factory=list)
    models: list[str] = field(default_factory=lambda: list(DEFAULT_MODELS))
    #: Thinking signatures this fake issued → the thinking text each one signs.
    signatures: dict[str, str] = field(default_factory=dict)
    #: Streams whose client went away before the stream ended.
    disconnects: int = 0
    #: Delay between SSE events for model ``slow-stream``.
    chunk_delay: float = 0.2
    #: The SSE events the latest stream actually sent, in order.
    sent_events: list[bytes] = field(default_factory=list)

    @property
    def last_request(self) -> RecordedRequest:
        if not self.requests:
            raise AssertionError("the fake Anthropic upstream has not received any request")
        return self.requests[-1]

    def requests_to(self, path: str) -> list[RecordedRequest]:
        return [r for r in self.requests if r["path"] == path]

    def reset(self) -> None:
        self.requests.clear()
        self.next_responses.clear()


def sign(state: FakeAnthropicState, thinking: str) -> str:
    """Issue a signature for a thinking text; `rules` accepts only signatures issued this way."""
    signature = "sig_" + hashlib.sha256(_SIGNING_SECRET + thinking.encode()).hexdigest()[:40]
    state.signatures[signature] = thinking
    return signature


def dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


def sse_event(obj: dict[str, Any]) -> bytes:
    """One event in Anthropic's framing: an ``event:`` line naming the ``data:`` object's type."""
    name = str(obj["type"]).encode()
    return b"event: " + name + b"\ndata: " + dumps(obj) + b"\n\n"
