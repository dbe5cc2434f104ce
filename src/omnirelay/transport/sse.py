"""Server-sent events: an incremental splitter that keeps bytes untouched, and a small decoder.

The splitter cuts a byte stream into whole events (each with its blank-line terminator) so that a
passthrough can relay, inspect or drop one event at a time without re-serialising anything.
"""

from __future__ import annotations

from dataclasses import dataclass


class EventSplitter:
    __slots__ = ("_buf",)

    def __init__(self) -> None:
        self._buf = b""

    def feed(self, chunk: bytes) -> list[bytes]:
        buf = self._buf + chunk if self._buf else chunk
        events: list[bytes] = []
        start = 0
        lf = buf.find(b"\n\n")
        crlf = buf.find(b"\n\r\n")
        while lf >= 0 or crlf >= 0:
            end = crlf + 3 if crlf >= 0 and (lf < 0 or crlf < lf) else lf + 2
            events.append(buf[start:end])
            start = end
            # Each terminator is searched again only once passed: a chunk of many events is scanned
            # once, not once an event (a missing one is not searched again).
            if 0 <= lf < start:
                lf = buf.find(b"\n\n", start)
            if 0 <= crlf < start:
                crlf = buf.find(b"\n\r\n", start)
        self._buf = buf[start:]
        return events

    def rest(self) -> bytes:
        """Bytes of an unfinished event (a stream that ended without its terminator)."""
        rest, self._buf = self._buf, b""
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
