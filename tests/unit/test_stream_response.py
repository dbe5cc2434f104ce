"""The streaming response tells a client that left (a disconnect) from the gateway's own failure."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from omnirelay.transport.responses import StreamResponse


def _run(body: AsyncIterator[bytes], send_error: type[BaseException] | None = None) -> tuple[bool, Any]:
    closed: list[bool] = []

    async def main() -> StreamResponse:
        async def send(message: dict[str, Any]) -> None:
            if send_error is not None and message.get("body"):
                raise send_error("client went away")

        async def receive() -> dict[str, Any]:
            await asyncio.sleep(10)
            return {"type": "http.disconnect"}

        response = StreamResponse(body, [])

        async def on_close(disconnected: bool) -> None:
            closed.append(disconnected)

        response.on_close = on_close
        await response({}, receive, send)
        return response

    response = asyncio.run(main())
    return closed[0], response.failure


async def _chunks(fail: bool = False) -> AsyncIterator[bytes]:
    yield b"data: 1\n\n"
    if fail:
        raise ValueError("a bug in the relay")
    yield b"data: 2\n\n"


def test_a_finished_stream_is_neither_disconnected_nor_failed() -> None:
    assert _run(_chunks()) == (False, None)


def test_a_bug_in_the_relay_is_a_failure_not_a_disconnect() -> None:
    disconnected, failure = _run(_chunks(fail=True))
    assert not disconnected and isinstance(failure, ValueError)


def test_a_send_to_a_gone_client_is_a_disconnect() -> None:
    disconnected, failure = _run(_chunks(), send_error=ConnectionResetError)
    assert disconnected and failure is None
