"""OpenAI-dialect requests to OpenAI-dialect upstreams.

The body is forwarded with only the edits the gateway needs (the upstream model name; in streams,
`stream_options.include_usage` so every request learns its token counts). Answers go back as the
upstream's own bytes: a JSON body is parsed once to read usage, an SSE stream is cut into events
and relayed as they arrive, with only the usage chunk the client did not ask for removed.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from functools import partial
from typing import Any

from omnirelay.accounting.metering import Generated, off_loop, settle_usage
from omnirelay.call import Call
from omnirelay.canonical.usage import Usage
from omnirelay.errors import GatewayError
from omnirelay.ingress.openai_chat import error_body
from omnirelay.passthrough import Tap, incomplete, parse_answer, read_whole
from omnirelay.routing.router import Deployment
from omnirelay.transport import json, sse
from omnirelay.transport.http import TransportError, UpstreamResponse
from omnirelay.upstream import openai
from omnirelay.wire.openai import parse_usage

_DONE = b"data: [DONE]"


async def send_json(
    dep: Deployment, path: str, body: bytes, content_type: str = "application/json"
) -> UpstreamResponse:
    """Send and raise the upstream's error answer, if any, before a byte reaches the client."""
    target = dep.provider.target
    resp = await openai.send(target, dep.key, path, body, content_type, model=dep.upstream_model)
    if resp.status >= 400:
        try:
            raw = await resp.read()
        except TransportError as exc:
            raise openai.transport_error(target, exc) from None
        raise openai.error_from_response(target, resp.status, resp.headers, raw)
    return resp


async def relay_body(
    call: Call, dep: Deployment, resp: UpstreamResponse, parse: bool, prompt: Callable[[], int] | None = None
) -> tuple[bytes, str]:
    """Read a whole answer; with `parse`, check it is JSON and take its usage. A chat or completion
    answer (`prompt` given) without usage is counted with the tokenizer and flagged as estimated."""
    raw = await read_whole(call, dep, resp)
    content_type = resp.headers.get("content-type", "application/json")
    if parse:
        data = parse_answer(dep, raw)
        usage = data.get("usage") if isinstance(data, dict) else None
        if isinstance(usage, dict):
            call.usage = _usage(usage)
        elif prompt is not None and isinstance(data, dict) and resp.status < 400:
            texts = Texts()
            texts.add_choices(data.get("choices"), "message")
            generated, model = texts.result(), dep.upstream_model  # counted off the loop when large
            settle = partial(settle_usage, model, generated, None, prompt, True)
            call.usage = await off_loop(settle, model, generated.chars() + call.request_bytes)
    return raw, content_type


class Texts:
    """The generated texts of chat completion (or legacy completion) choices: content, refusal,
    reasoning, tool names and arguments, each block's pieces joined."""

    __slots__ = ("blocks", "names")

    def __init__(self) -> None:
        self.blocks: dict[tuple[int, str, int], list[str]] = {}
        self.names: list[str] = []

    def _add(self, key: tuple[int, str, int], text: Any) -> None:
        if isinstance(text, str) and text:
            self.blocks.setdefault(key, []).append(text)

    def add_choices(self, choices: Any, field: str) -> None:
        for choice in choices if isinstance(choices, list) else ():
            if not isinstance(choice, dict):
                continue
            raw_index = choice.get("index")
            index = raw_index if isinstance(raw_index, int) else 0
            self._add((index, "text", 0), choice.get("text"))  # legacy completions
            body = choice.get(field)
            if not isinstance(body, dict):
                continue
            self._add((index, "text", 0), body.get("content"))
            self._add((index, "refusal", 0), body.get("refusal"))
            self._add((index, "reasoning", 0), body.get("reasoning_content") or body.get("reasoning"))
            calls = body.get("tool_calls")
            for position, tool in enumerate(calls if isinstance(calls, list) else ()):
                fn = tool.get("function") if isinstance(tool, dict) else None
                if isinstance(fn, dict):
                    raw_slot = tool.get("index")
                    slot = raw_slot if isinstance(raw_slot, int) else position
                    if isinstance(fn.get("name"), str):
                        self.names.append(fn["name"])
                    self._add((index, "tool", slot), fn.get("arguments"))

    def feed(self, event: bytes) -> None:
        payload = sse.data_payload(event)
        if not payload or not payload.startswith(b"{"):
            return
        try:
            data = json.loads(payload)
        except json.JSONDecodeError:
            return
        if isinstance(data, dict):
            self.add_choices(data.get("choices"), "delta")

    def result(self) -> Generated:
        out = Generated(texts=list(self.names))
        for (_, kind, _), pieces in self.blocks.items():
            (out.reasoning if kind == "reasoning" else out.texts).append("".join(pieces))
        return out


def _usage(raw: dict[str, Any]) -> Usage:
    if "prompt_tokens" in raw or "completion_tokens" in raw:
        return parse_usage(raw)
    # images and transcriptions report input/output tokens
    return Usage(
        input_tokens=int(raw.get("input_tokens") or 0), output_tokens=int(raw.get("output_tokens") or 0)
    )


def _has_value(event: bytes, key: bytes) -> bool:
    """Whether an event carries `key` with a non-null value (without parsing the JSON)."""
    at = event.find(key)
    if at < 0:
        return False
    rest = event[at + len(key) : at + len(key) + 12].lstrip(b": \t")
    return not rest.startswith(b"null")


async def relay_stream(
    call: Call,
    dep: Deployment,
    resp: UpstreamResponse,
    strip_usage: bool,
    prompt: Callable[[], int] | None = None,
) -> AsyncIterator[bytes]:
    """Relay upstream SSE events as they arrive, reading usage on the way.

    A stream that breaks or ends without `[DONE]` is ended with an error event, never retried:
    the client already has bytes. One that ends without usage (the client went away, the upstream
    cut it, a vendor that reports none) is charged for what it generated (`Tap`), given `prompt`.
    """
    splitter = sse.EventSplitter()
    done = finished = False
    failure: GatewayError | None = None
    tap = Tap(Texts, dep.upstream_model) if prompt is not None else None
    try:
        async for chunk in resp.iter_bytes():
            call.mark_first_byte()
            events = splitter.feed(chunk)
            if not events:
                continue
            if tap is not None:
                tap.keep(events, len(chunk))
            out: list[bytes] = []
            for event in events:
                if _has_value(event, b'"usage"'):
                    payload = sse.data_payload(event)
                    data = json.loads(payload) if payload and payload.startswith(b"{") else None
                    if isinstance(data, dict) and isinstance(data.get("usage"), dict):
                        call.usage = _usage(data["usage"])
                        if strip_usage and not data.get("choices"):
                            continue
                if not finished and _has_value(event, b'"finish_reason"'):
                    finished = True
                if event.startswith(_DONE):
                    done = True
                out.append(event)
            if out:
                yield out[0] if len(out) == 1 else b"".join(out)
    except TransportError as exc:
        failure = openai.transport_error(dep.provider.target, exc)
    finally:
        try:
            await resp.aclose()
        finally:  # charged even if closing the upstream response fails
            if tap is not None and prompt is not None and call.usage is None:
                await tap.settle(call, dep, prompt, done or (finished and failure is None))
    if done:
        return
    if failure is None and finished:
        yield _DONE + b"\n\n"  # a lenient upstream that ends without the terminator
        return
    failure = failure or incomplete(dep)
    call.status = 502
    call.error = failure.message
    yield sse.encode(json.dumps(error_body(failure)))
