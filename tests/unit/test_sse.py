from __future__ import annotations

import time

from hypothesis import given, settings
from hypothesis import strategies as st

from omnirelay.transport.sse import EventSplitter, data_payload, decode_event

EVENTS = [b'data: {"a":1}\n\n', b"event: x\r\ndata: two\r\n\r\n", b": keep-alive\n\n", b"data: [DONE]\n\n"]


@given(st.lists(st.integers(min_value=1, max_value=12), min_size=1, max_size=40))
def test_splitter_keeps_events_whole_and_bytes_untouched(cuts: list[int]) -> None:
    stream = b"".join(EVENTS)
    splitter = EventSplitter()
    out: list[bytes] = []
    pos = 0
    for cut in cuts:
        out += splitter.feed(stream[pos : pos + cut])
        pos += cut
    out += splitter.feed(stream[pos:])
    assert out == EVENTS
    assert splitter.rest() == b""


def test_decode() -> None:
    ev = decode_event(b'event: message_start\ndata: {"x": 1}\n\n')
    assert ev is not None and ev.event == "message_start" and ev.data == b'{"x": 1}'
    assert decode_event(b": comment\n\n") is None
    assert data_payload(b'data: {"a":1}\n\n') == b'{"a":1}'
    assert data_payload(b"data:[DONE]\n\n") == b"[DONE]"


# --- the splitter against a byte-by-byte reference, over random streams cut at random places -------


def _reference(data: bytes) -> tuple[list[bytes], bytes]:
    """An event ends at the first byte where the bytes since the last event end with \\n\\n or \\n\\r\\n."""
    out, begin = [], 0
    for end in range(1, len(data) + 1):
        if data[begin:end].endswith((b"\n\n", b"\n\r\n")):
            out.append(data[begin:end])
            begin = end
    return out, data[begin:]


_LINE = st.sampled_from([b"data: x", b"event: e", b":c", b"", b'data: {"a":1}', b"\r", b"\n", b"a\rb"])
_END = st.sampled_from([b"\n", b"\r\n", b"\n\n", b"\r\n\r\n", b"\n\r\n", b"\r"])
_STREAMS = st.lists(st.tuples(_LINE, _END), max_size=30).map(lambda xs: b"".join(a + b for a, b in xs))
_SOUP = st.binary(max_size=200).map(lambda b: bytes(b"\n\ra:"[x % 4] for x in b))


@settings(max_examples=1500, deadline=None)
@given(st.one_of(_STREAMS, _SOUP), st.data())
def test_splitter_matches_the_reference_however_the_stream_is_cut(data: bytes, draw: st.DataObject) -> None:
    cuts = sorted(draw.draw(st.lists(st.integers(0, len(data)), max_size=12)))
    splitter, got, previous = EventSplitter(), [], 0
    for cut in [*cuts, len(data)]:
        got += splitter.feed(data[previous:cut])
        previous = cut
    assert (got, splitter.rest()) == _reference(data)


def test_a_large_event_in_small_chunks_is_split_in_linear_time() -> None:
    event = b"data: " + b"A" * 4_000_000 + b"\n\n"
    splitter = EventSplitter()
    began = time.perf_counter()
    out = [e for i in range(0, len(event), 4096) for e in splitter.feed(event[i : i + 4096])]
    assert out == [event]
    assert time.perf_counter() - began < 0.5  # quadratic re-scanning took > 1.5 s here
