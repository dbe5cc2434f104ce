"""Server-sent events: an incremental splitter that keeps bytes untouched, and a small decoder.

The splitter cuts a byte stream into whole events (each with its blank-line terminator) so that a
passthrough can relay, inspect or drop one event at a time without re-serialising anything.
"""

from __future__ import annotations

from dataclasses import dataclass


class EventSplitter:
    """Whole events out of chunks. A chunk that holds only whole events is cut without a copy of
    the chunk; an unfinished event waits in a growing buffer whose bytes are searched only once, so
    a large event (a base64 image) arriving in many small chunks costs time linear in its size."""

    __slots__ = ("_buf", "_scanned")

    def __init__(self) -> None:
        self._buf = bytearray()
        self._scanned = 0  # bytes of `_buf` already searched for a terminator, less its length - 1

    def feed(self, chunk: bytes) -> list[bytes]:
        if self._buf:
            return self._feed_pending(chunk)
        events: list[bytes] = []
        start = 0
        lf = chunk.find(b"\n\n")
        crlf = chunk.find(b"\n\r\n")
        while lf >= 0 or crlf >= 0:
            end = crlf + 3 if crlf >= 0 and (lf < 0 or crlf < lf) else lf + 2
            events.append(chunk[start:end])
            start = end
            # Each terminator is searched again only once passed: a chunk of many events is scanned
            # once, not once an event (a missing one is not searched again).
            if 0 <= lf < start:
                lf = chunk.find(b"\n\n", start)
            if 0 <= crlf < start:
                crlf = chunk.find(b"\n\r\n", start)
        if start < len(chunk):
            self._buf = bytearray(chunk[start:])
            self._scanned = max(len(self._buf) - 2, 0)
        return events

    def _feed_pending(self, chunk: bytes) -> list[bytes]:
        """`feed` with an unfinished event waiting: search only the bytes not searched before (a
        terminator, at most 3 bytes, may begin in the last 2 bytes searched)."""
        buf = self._buf
        buf += chunk
        events: list[bytes] = []
        start = 0
        lf = buf.find(b"\n\n", self._scanned)
        crlf = buf.find(b"\n\r\n", self._scanned)
        while lf >= 0 or crlf >= 0:
            end = crlf + 3 if crlf >= 0 and (lf < 0 or crlf < lf) else lf + 2
            events.append(bytes(buf[start:end]))
            start = end
            if 0 <= lf < start:
                lf = buf.find(b"\n\n", start)
            if 0 <= crlf < start:
                crlf = buf.find(b"\n\r\n", start)
        if start:
            del buf[:start]
        self._scanned = max(len(buf) - 2, 0)
        return events

    def rest(self) -> bytes:
        """Bytes of an unfinished event (a stream that ended without its terminator)."""
        rest = bytes(self._buf)
        self._buf, self._scanned = bytearray(), 0
        return rest


@dataclass(slots=True)
class Event:
    event: str | None
    data: bytes


def decode_event(raw: bytes) -> Event | None:
    """Decode one whole event; None for a comment-only or empty event."""
    name: str | None = None
    data: list[bytes] = []
    for line in raw.splitlines():
        if not line or line.startswith(b":"):
            continue
        field, _, value = line.partition(b":")
        if value.startswith(b" "):
            value = value[1:]
        if field == b"data":
            data.append(value)
        elif field == b"event":
            name = value.decode()
    if not data and name is None:
        return None
    return Event(name, b"\n".join(data))


def data_payload(raw: bytes) -> bytes | None:
    """The data of an event whose only field is a single `data:` line (the OpenAI chat shape)."""
    if raw.startswith(b"data:"):
        body = raw[5:].strip()
        if b"\n" not in body:
            return body
    ev = decode_event(raw)
    return ev.data if ev is not None else None


def encode(data: bytes, event: str | None = None) -> bytes:
    if event is None:
        return b"data: " + data + b"\n\n"
    return b"event: " + event.encode() + b"\ndata: " + data + b"\n\n"
