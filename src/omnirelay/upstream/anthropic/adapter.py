"""`AnthropicAdapter`: sends canonical requests to `POST {base_url}/v1/messages`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from omnirelay.canonical.request import ChatRequest, EmbeddingRequest
from omnirelay.canonical.response import ChatResponse, EmbeddingResponse
from omnirelay.canonical.stream import StreamEvent
from omnirelay.errors import BadRequest, UpstreamUnavailable
from omnirelay.transport import json
from omnirelay.transport.http import TransportError, UpstreamResponse
from omnirelay.transport.sse import EventSplitter
from omnirelay.upstream.anthropic.errors import error_from_response, malformed
from omnirelay.upstream.anthropic.request import build_body
from omnirelay.upstream.anthropic.response import parse_message
from omnirelay.upstream.anthropic.stream import StreamTranslator, response_events
from omnirelay.upstream.base import Target
from omnirelay.upstream.openai import transport_error

ANTHROPIC_VERSION = "2023-06-01"
DEFAULT_BASE_URL = "https://api.anthropic.com"


class AnthropicAdapter:
    def __init__(self, target: Target) -> None:
        self.target = target
        base = (target.base_url or DEFAULT_BASE_URL).rstrip("/")
        # Accept a base URL configured with or without the version segment.
        self.url = base + ("/messages" if base.endswith("/v1") else "/v1/messages")

    def _headers(self, key: str | None, stream: bool) -> dict[str, str]:
        headers = {
            "content-type": "application/json",
            "accept": "text/event-stream" if stream else "application/json",
            "anthropic-version": ANTHROPIC_VERSION,
        }
        if key:
            headers["x-api-key"] = key
        headers.update(self.target.headers)
        return headers

    async def _post(self, body: dict[str, Any], key: str | None) -> UpstreamResponse:
        """Send; transport failures and error statuses become UpstreamErrors."""
        client = self.target.client
        assert client is not None, "the anthropic adapter needs an HTTP client"
        try:
            resp = await client.send(
                "POST", self.url, self._headers(key, bool(body.get("stream"))), json.dumps(body)
            )
        except TransportError as exc:
            raise transport_error(self.target, exc) from None
        if not 200 <= resp.status < 300:
            try:
                raw = await resp.read()
            except TransportError:
                raw = b""
            finally:
                await resp.aclose()
            raise error_from_response(self.target, resp.status, resp.headers, raw)
        return resp

    async def _read_message(self, resp: UpstreamResponse) -> ChatResponse:
        try:
            raw = await resp.read()
        except TransportError as exc:
            raise transport_error(self.target, exc) from None
        finally:
            await resp.aclose()
        try:
            data: Any = json.loads(raw)
        except json.JSONDecodeError:
            raise malformed(self.target, "a malformed JSON body") from None
        if not isinstance(data, dict):
            raise malformed(self.target, "a JSON body that is not a message")
        if data.get("type") == "error":
            raise error_from_response(self.target, 500, resp.headers, raw)
        return parse_message(data)

    async def complete(self, req: ChatRequest, key: str | None) -> ChatResponse:
        body = build_body(req)
        return await self._read_message(await self._post(body, key))

    async def stream(self, req: ChatRequest, key: str | None) -> AsyncIterator[StreamEvent]:
        body = build_body(req)
        body["stream"] = True
        resp = await self._post(body, key)
        if "event-stream" not in resp.headers.get("content-type", ""):
            for event in response_events(await self._read_message(resp)):
                yield event
            return
        translator = StreamTranslator(self.target)
        splitter = EventSplitter()
        try:
            try:
                async for chunk in resp.iter_bytes():
                    for raw in splitter.feed(chunk):
                        for event in translator.feed_raw(raw):
                            yield event
                rest = splitter.rest()
                if rest.strip():
                    for event in translator.feed_raw(rest):
                        yield event
            except TransportError as exc:
                if not translator.done:
                    raise transport_error(self.target, exc) from None
            if not translator.done:
                raise UpstreamUnavailable(
                    f"Provider {self.target.name!r} ended the stream before it was complete.",
                    provider=self.target.name,
                    retryable=True,
                )
        finally:
            await resp.aclose()

    async def embed(self, req: EmbeddingRequest, key: str | None) -> EmbeddingResponse:
        raise BadRequest("Anthropic has no embeddings endpoint.", param="model", code="unsupported_endpoint")
