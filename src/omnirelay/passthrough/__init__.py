"""Same-protocol relays: when the client's protocol is the upstream's dialect, the request is
forwarded with only the edits the gateway needs and the answer relayed as the upstream's own bytes,
with usage read on the way. One module per dialect."""

from __future__ import annotations

import asyncio
import logging
import zlib
from collections.abc import Callable
from typing import Any, Protocol

from omnirelay.accounting.metering import OFF_LOOP_CHARS, Generated, counted, settle_usage
from omnirelay.accounting.tokenizer import encoding_of, loaded
from omnirelay.call import Call
from omnirelay.canonical.usage import Usage
from omnirelay.errors import UpstreamError
from omnirelay.routing.router import Deployment
from omnirelay.transport import json, sse
from omnirelay.transport.http import TransportError, UpstreamResponse
from omnirelay.upstream.openai import transport_error

log = logging.getLogger("omnirelay")


async def read_whole(call: Call, dep: Deployment, resp: UpstreamResponse) -> bytes:
    """The upstream's whole answer body; a broken or stalled body becomes an UpstreamError."""
    try:
        raw = await resp.read()
    except TransportError as exc:
        raise transport_error(dep.provider.target, exc) from None
    call.mark_first_byte()
    return raw


def parse_answer(dep: Deployment, raw: bytes) -> Any:
    """The answer as JSON; a malformed body is the upstream's failure (502, another deployment may serve)."""
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        raise UpstreamError(
            f"Provider {dep.provider.name!r} returned a malformed JSON body.",
            status=502,
            code="bad_upstream_response",
            provider=dep.provider.name,
            retryable=True,
        ) from None


def incomplete(dep: Deployment) -> UpstreamError:
    return UpstreamError(
        f"Provider {dep.provider.name!r} ended the stream before it was complete.",
        code="upstream_stream_incomplete",
        provider=dep.provider.name,
    )


# What a relayed stream keeps to charge what it generated if its usage never comes: its event bytes
# as they are, up to TAP_RAW_BYTES; past that they are compressed a batch at a time (zlib level 1,
# about 0.5 µs an event, a few percent of their size), up to TAP_PACKED_BYTES of compressed data;
# past that (some hundred thousand tokens) each event is read for its texts as it comes, and those are
# counted every TAP_COUNT_EVENTS events. Nothing is parsed unless the usage is missing at the end, and
# no stream keeps more than about TAP_RAW_BYTES + TAP_PACKED_BYTES + zlib's state (256 kB).
TAP_RAW_BYTES = 1024 * 1024
TAP_PACKED_BYTES = 4 * 1024 * 1024
TAP_COUNT_EVENTS = 8192


class Extractor(Protocol):
    """Reads the generated texts out of one dialect's stream events (only when usage is missing)."""

    def feed(self, event: bytes) -> None: ...

    def result(self) -> Generated: ...


def warm(model: str) -> asyncio.Future[Any]:
    """Load a model's encoding in a worker thread (its first load is never made on the loop); a
    failure is logged, and the caller may try again."""
    future = asyncio.ensure_future(asyncio.to_thread(encoding_of, model))

    def done(f: asyncio.Future[Any]) -> None:
        if not f.cancelled() and f.exception() is not None:
            log.error("loading the tokenizer for %s failed: %s", model, f.exception())

    future.add_done_callback(done)
    return future


class Tap:
    """The events of a relayed stream, kept cheaply while it runs (nothing parsed) so that, if it ends
    without the upstream's final usage, what it generated can still be counted and charged."""

    __slots__ = ("counted", "events", "late", "make", "model", "packed", "packer", "read", "size", "warming")

    def __init__(self, make: Callable[[], Extractor], model: str) -> None:
        self.make = make
        self.model = model
        self.events: list[bytes] = []
        self.size = 0
        self.packer: Any = None  # a zlib compressor, once the kept bytes pass TAP_RAW_BYTES
        self.packed: list[bytes] = []
        self.late: Extractor | None = None  # reads the events past TAP_PACKED_BYTES as they come
        self.read = 0  # events `late` has read since its texts were last counted
        self.counted = Generated()  # the counts of those texts
        self.warming: asyncio.Future[Any] | None = None

    def keep(self, events: list[bytes], size: int) -> None:
        self.events += events
        self.size += size
        if self.size > TAP_RAW_BYTES:
            self._spill()

    def _spill(self) -> None:
        events, self.events, self.size = self.events, [], 0
        if self.packer is None:
            self.packer = zlib.compressobj(1)
        if self.late is None and sum(map(len, self.packed)) < TAP_PACKED_BYTES:
            self.packed.append(self.packer.compress(b"".join(events)))
            return
        late = self.late = self.late or self.make()
        for event in events:
            late.feed(event)
        self.read += len(events)
        if self.read >= TAP_COUNT_EVENTS:
            if loaded(self.model):  # counted now (about 1 ms), so a stream of any length stays bounded
                self.read, self.late = 0, None
                self.counted = counted(self.counted, late.result(), self.model)
            elif self.warming is None or self.warming.done():  # retried should a load fail
                self.warming = warm(self.model)

    def _generated(self) -> Generated:
        """Everything kept, read (in a worker thread when it is much)."""
        early = self.make()
        if self.packer is not None:
            packed = [*self.packed, self.packer.flush()]
            self.packer, self.packed = None, []
            unpacker, splitter = zlib.decompressobj(), sse.EventSplitter()
            for part in packed:
                while part:  # a piece at a time: what was packed is never all unpacked at once
                    for event in splitter.feed(unpacker.decompress(part, TAP_RAW_BYTES)):
                        early.feed(event)
                    part = unpacker.unconsumed_tail
        for event in self.events:
            early.feed(event)
        self.events = []
        out = early.result()
        if self.late is not None:
            late = self.late.result()
            out.texts += late.texts
            out.reasoning += late.reasoning
        out.counted, out.counted_reasoning = self.counted.counted, self.counted.counted_reasoning
        return out

    async def settle(self, call: Call, dep: Deployment, prompt: Callable[[], int], complete: bool) -> None:
        """Set the call's usage from what was generated (see accounting.metering.settle_usage)."""
        model, reported = dep.upstream_model, call.usage

        def work() -> Usage | None:
            return settle_usage(model, self._generated(), reported, prompt, complete)

        heavy = self.packer is not None or self.late is not None
        size = self.size + call.request_bytes + (OFF_LOOP_CHARS if heavy else 0)
        await call.meter(work, model, size)
