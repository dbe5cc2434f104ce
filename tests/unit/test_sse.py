from __future__ import annotations

from hypothesis import given
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
