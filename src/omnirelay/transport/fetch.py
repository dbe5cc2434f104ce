"""Fetch a client-supplied media URL for an upstream that only takes inline data (Gemini).

Guarded against server-side request forgery: only http(s); every address a host name resolves to
must be public (no loopback, private, link-local, reserved or multicast ranges), and the connection
goes to the checked address, so DNS rebinding cannot swap it; at most `max_bytes`; a few redirects,
each checked the same way; bounded time.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from urllib.parse import urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver

from omnirelay.errors import BadRequest

MAX_BYTES = 20 * 1024 * 1024
TIMEOUT = 20.0


def _public(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


class _PublicOnlyResolver(AbstractResolver):
    """An aiohttp resolver that refuses names resolving to non-public addresses."""

    def __init__(self, allow_private: bool) -> None:
        self._inner = ThreadedResolver()
        self._allow_private = allow_private

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        hosts = await self._inner.resolve(host, port, family)
        if not self._allow_private:
            for entry in hosts:
                if not _public(entry["host"]):
                    raise BadRequest(
                        f"Media URL host {host!r} resolves to a non-public address; not fetched."
                    )
        return hosts

    async def close(self) -> None:
        await self._inner.close()


def _too_large(max_bytes: int) -> BadRequest:
    return BadRequest(f"The media at the URL is larger than {max_bytes} bytes.", param="messages")


async def fetch_media(url: str, max_bytes: int = MAX_BYTES, allow_private: bool = False) -> tuple[bytes, str]:
    """Download `url`; returns (content, media type). Raises BadRequest on anything refused or failed."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise BadRequest("Media URLs must be http(s) URLs.", param="messages")
    if not allow_private and _is_ip(parts.hostname) and not _public(parts.hostname):
        raise BadRequest(f"Media URL host {parts.hostname!r} is a non-public address; not fetched.")
    connector = aiohttp.TCPConnector(resolver=_PublicOnlyResolver(allow_private), use_dns_cache=False)
    try:
        async with (
            aiohttp.ClientSession(connector=connector) as session,
            asyncio.timeout(TIMEOUT),
            session.get(url, max_redirects=3) as resp,
        ):
            if resp.status != 200:
                raise BadRequest(f"Fetching the media URL failed with HTTP {resp.status}.", param="messages")
            if resp.content_length is not None and resp.content_length > max_bytes:
                raise _too_large(max_bytes)
            data = bytearray()
            async for chunk in resp.content.iter_chunked(65536):
                data += chunk
                if len(data) > max_bytes:
                    raise _too_large(max_bytes)
            media_type = resp.headers.get("content-type", "application/octet-stream").split(";")[0].strip()
            return bytes(data), media_type
    except TimeoutError:
        raise BadRequest("Fetching the media URL timed out.", param="messages") from None
    except aiohttp.ClientError as exc:
        if isinstance(exc.__cause__, BadRequest):
            raise exc.__cause__ from None
        raise BadRequest(f"Fetching the media URL failed: {type(exc).__name__}.", param="messages") from None
