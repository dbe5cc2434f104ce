from __future__ import annotations

from collections.abc import Iterator

import pytest
from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Route

from omnirelay.errors import BadRequest
from omnirelay.transport.fetch import _public, fetch_media
from tests.fakes import ServerThread


async def png(request: object) -> Response:
    return Response(b"\x89PNG" + b"\0" * 1000, media_type="image/png")


@pytest.fixture(scope="module")
def media_server() -> Iterator[str]:
    with ServerThread(Starlette(routes=[Route("/cat.png", png)])) as server:
        yield server.base_url


def test_public_address_classification() -> None:
    for private in (
        "127.0.0.1",
        "10.1.2.3",
        "192.168.0.1",
        "169.254.169.254",
        "::1",
        "fd00::1",
        "0.0.0.0",
        "::ffff:127.0.0.1",
        "100.64.0.1",
    ):
        assert not _public(private), private
    for public in ("8.8.8.8", "1.1.1.1", "2606:4700:4700::1111"):
        assert _public(public), public


async def test_loopback_and_bad_schemes_are_refused(media_server: str) -> None:
    with pytest.raises(BadRequest, match="non-public"):
        await fetch_media(media_server + "/cat.png")
    with pytest.raises(BadRequest, match="non-public"):
        await fetch_media("http://localhost:9/x.png")
    with pytest.raises(BadRequest, match="http"):
        await fetch_media("file:///etc/passwd")


async def test_fetch_with_size_limit(media_server: str) -> None:
    data, media_type = await fetch_media(media_server + "/cat.png", allow_private=True)
    assert data.startswith(b"\x89PNG") and media_type == "image/png"
    with pytest.raises(BadRequest, match="larger than"):
        await fetch_media(media_server + "/cat.png", allow_private=True, max_bytes=100)
    with pytest.raises(BadRequest, match="HTTP 404"):
        await fetch_media(media_server + "/missing.png", allow_private=True)
