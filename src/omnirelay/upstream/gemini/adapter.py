"""The Gemini API (generativelanguage v1beta) as a canonical chat and embeddings upstream.

`POST {base}/v1beta/models/{model}:generateContent`, `:streamGenerateContent?alt=sse`, `:embedContent`
and `:batchEmbedContents`, authenticated with `x-goog-api-key`. A JSON-schema answer is asked for with
`responseJsonSchema`; a model that does not know that field (400 naming it) is asked again once with
the schema cleaned into `responseSchema`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from omnirelay.canonical.assemble import Assembler
from omnirelay.canonical.request import ChatRequest, EmbeddingRequest
from omnirelay.canonical.response import ChatResponse, EmbeddingResponse
from omnirelay.canonical.stream import StreamEvent, UsageEvent
from omnirelay.canonical.usage import Usage
from omnirelay.errors import BadRequest, UpstreamError
from omnirelay.transport import json
from omnirelay.transport.http import TransportError, UpstreamResponse
from omnirelay.upstream.base import Target
from omnirelay.upstream.gemini.errors import error_from_response, malformed
from omnirelay.upstream.gemini.request import ImageFetcher, build_request, use_response_schema
from omnirelay.upstream.gemini.stream import Translator, sse_chunks
from omnirelay.upstream.openai import transport_error

DEFAULT_BASE_URL = "https://generativelanguage.googleapis.com"
API_VERSION = "v1beta"


def api_root(configured: str) -> str:
    base = (configured or DEFAULT_BASE_URL).rstrip("/")
    for suffix in ("/" + API_VERSION, "/v1"):
        if base.endswith(suffix):
            return base[: -len(suffix)]
    return base


def model_resource(model: str) -> str:
    """`models/<id>` for a bare id; tuned models and full resource names are kept as given."""
    if "/" in model:
        return model
    return "models/" + model


def _refuses_json_schema(status: int, body: bytes) -> bool:
    return status == 400 and (b"responseJsonSchema" in body or b"response_json_schema" in body)


class GeminiAdapter:
    """`fetch_image(url) -> (bytes, mime type)`, when set, inlines http(s) image URLs."""

    def __init__(self, target: Target, fetch_image: ImageFetcher | None = None) -> None:
        self.target = target
        self.fetch_image = fetch_image
        self._base = api_root(target.base_url)

    # --- HTTP -----------------------------------------------------------------------------------

    def _url(self, model: str, method: str, query: str = "") -> str:
        return f"{self._base}/{API_VERSION}/{model_resource(model)}:{method}{query}"

    def _headers(self, key: str | None, stream: bool) -> dict[str, str]:
        headers = {
            "content-type": "application/json",
            "accept": "text/event-stream" if stream else "application/json",
        }
        if key:
            headers["x-goog-api-key"] = key
        headers.update(self.target.headers)
        return headers

    async def _send(self, url: str, key: str | None, body: dict[str, Any], stream: bool) -> UpstreamResponse:
        client = self.target.client
        if client is None:
            name = self.target.name
            raise UpstreamError(f"Provider {name!r} has no HTTP client.", provider=name)
        try:
            return await client.send("POST", url, self._headers(key, stream), json.dumps(body))
        except TransportError as exc:
            raise transport_error(self.target, exc) from None

    async def _read(self, resp: UpstreamResponse) -> bytes:
        try:
            return await resp.read()
        except TransportError as exc:
            raise transport_error(self.target, exc) from None

    async def _call(self, url: str, key: str | None, body: dict[str, Any]) -> Any:
        """POST and parse a JSON answer; error answers raise."""
        resp = await self._send(url, key, body, stream=False)
        try:
            raw = await self._read(resp)
        finally:
            await resp.aclose()
        if resp.status >= 400:
            raise error_from_response(self.target, resp.status, resp.headers, raw)
        try:
            return json.loads(raw)
        except json.JSONDecodeError:
            raise malformed(self.target, "the body is not valid JSON") from None

    async def _generate(self, req: ChatRequest, key: str | None, stream: bool) -> UpstreamResponse:
        """Send a chat request; an error answer raises. The caller closes the returned response."""
        method, query = ("streamGenerateContent", "?alt=sse") if stream else ("generateContent", "")
        url = self._url(req.model, method, query)
        body = await build_request(req, self.fetch_image)
        while True:
            resp = await self._send(url, key, body, stream)
            if resp.status < 400:
                return resp
            try:
                raw = await self._read(resp)
            finally:
                await resp.aclose()
            if _refuses_json_schema(resp.status, raw) and use_response_schema(body):
                continue  # asked once more, with the schema as `responseSchema`
            raise error_from_response(self.target, resp.status, resp.headers, raw)

    # --- chat -----------------------------------------------------------------------------------

    async def complete(self, req: ChatRequest, key: str | None) -> ChatResponse:
        resp = await self._generate(req, key, stream=False)
        try:
            raw = await self._read(resp)
        finally:
            await resp.aclose()
        try:
            data = json.loads(raw)
        except json.JSONDecodeError:
            raise malformed(self.target, "the body is not valid JSON") from None
        translator = Translator(self.target, req.model, keep_images=True)
        asm = Assembler()
        for event in translator.feed(data):
            asm.feed(event)
        if not translator.candidates:
            raise malformed(self.target, "the answer has no candidates")
        out = asm.response
        out.usage = translator.usage
        for choice in out.choices:
            for position, image in translator.images(choice.index):
                choice.message.parts.insert(position, image)
        return out

    async def stream(self, req: ChatRequest, key: str | None) -> AsyncIterator[StreamEvent]:
        resp = await self._generate(req, key, stream=True)
        translator = Translator(self.target, req.model)
        try:
            try:
                async for chunk in sse_chunks(self.target, resp):
                    for event in translator.feed(chunk):
                        yield event
                failure = translator.incomplete()
            except UpstreamError as exc:
                failure = exc
            if translator.usage is not None:  # keep what is known, even when the answer broke off
                yield UsageEvent(translator.usage)
            if failure is not None:
                raise failure
        finally:
            await resp.aclose()

    # --- embeddings -----------------------------------------------------------------------------

    async def embed(self, req: EmbeddingRequest, key: str | None) -> EmbeddingResponse:
        texts = [item for item in req.inputs if isinstance(item, str)]
        if len(texts) != len(req.inputs):
            raise BadRequest("Gemini embeddings take text input, not token arrays.", param="input")
        if not texts:
            raise BadRequest("The embeddings input is empty.", param="input")
        resource = model_resource(req.model)
        vectors: list[list[float]] = []
        if len(texts) == 1:
            single: dict[str, Any] = {"content": {"parts": [{"text": texts[0]}]}}
            if req.dimensions:
                single["outputDimensionality"] = req.dimensions
            data = await self._call(self._url(req.model, "embedContent"), key, single)
            embedding = data.get("embedding") if isinstance(data, dict) else None
            vectors = [_values(self.target, embedding)]
        else:
            requests = []
            for text in texts:
                item: dict[str, Any] = {"model": resource, "content": {"parts": [{"text": text}]}}
                if req.dimensions:
                    item["outputDimensionality"] = req.dimensions
                requests.append(item)
            data = await self._call(self._url(req.model, "batchEmbedContents"), key, {"requests": requests})
            embeddings = data.get("embeddings") if isinstance(data, dict) else None
            if not isinstance(embeddings, list) or len(embeddings) != len(texts):
                raise malformed(self.target, "the number of embeddings does not match the inputs")
            vectors = [_values(self.target, e) for e in embeddings]
        return EmbeddingResponse(model=req.model, vectors=vectors, usage=_embed_usage(data, texts))


def _values(target: Target, embedding: Any) -> list[float]:
    values = embedding.get("values") if isinstance(embedding, dict) else None
    if not isinstance(values, list):
        raise malformed(target, "an embedding has no values")
    return [float(v) for v in values]


def _embed_usage(data: Any, texts: list[str]) -> Usage:
    meta = data.get("usageMetadata") if isinstance(data, dict) else None
    count = meta.get("promptTokenCount") if isinstance(meta, dict) else None
    if isinstance(count, int):
        return Usage(input_tokens=count)
    return Usage(input_tokens=sum(max(1, len(t.split())) for t in texts), estimated=True)
