"""Gateway API keys, and keeping secrets out of logs and UIs.

Keys are ``sk-or-`` followed by 43 url-safe characters (256 bits from :mod:`secrets`). Only
:func:`key_hash` is stored; :func:`key_prefix` is what a UI shows to tell keys apart.

Why a plain SHA-256 is the right hash here, and the wrong one for passwords: slow hashes (bcrypt,
scrypt, argon2) exist to make *guessing* expensive, because passwords come from a small,
predictable space that an attacker with a leaked hash can enumerate. A generated key has 256 bits
of entropy; even at 10^12 guesses per second, finding a preimage takes on the order of 10^65 years,
so slowing each guess down buys nothing. A fast hash also lets every request be authenticated by a
single indexed lookup (``WHERE key_hash = ?``), which a salted slow hash cannot offer. The same
argument does not hold for anything a human chose: never use :func:`key_hash` for passwords.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from secrets import token_urlsafe

__all__ = [
    "KEY_PREFIX",
    "MIN_MASKED_LEN",
    "MIN_REDACTED_LEN",
    "generate_key",
    "key_hash",
    "key_prefix",
    "mask",
    "redact",
]

KEY_PREFIX = "sk-or-"
KEY_RANDOM_BYTES = 32  # token_urlsafe(32) is 43 characters
PREFIX_SHOWN = 6
MIN_MASKED_LEN = 20  # below this, showing 8 characters would reveal too much of the secret
MIN_REDACTED_LEN = 8  # shorter strings are too likely to be ordinary words or numbers


def generate_key() -> str:
    """A new gateway key: ``sk-or-`` + 43 url-safe characters (256 random bits)."""
    return KEY_PREFIX + token_urlsafe(KEY_RANDOM_BYTES)


def key_hash(key: str) -> str:
    """SHA-256 hex digest of ``key``: what is stored and looked up (see the module docstring for
    why a fast hash is fine for random keys). Same digest as the master key's."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def key_prefix(key: str) -> str:
    """The displayable start of a gateway key: ``sk-or-`` + its first 6 random characters + ``…``.
    A string that is not a gateway key is masked instead."""
    if not key.startswith(KEY_PREFIX) or len(key) < len(KEY_PREFIX) + 2 * PREFIX_SHOWN:
        return mask(key)
    return key[: len(KEY_PREFIX) + PREFIX_SHOWN] + "…"


def mask(secret: str) -> str:
    """First 4 + ``…`` + last 4 characters, or ``***`` when the secret is shorter than 20
    characters (showing 8 characters of a short secret would give most of it away)."""
    if len(secret) < MIN_MASKED_LEN:
        return "***"
    return secret[:4] + "…" + secret[-4:]


def redact(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every occurrence of each secret (of at least 8 characters; shorter ones are
    left alone so common words survive) replaced by its :func:`mask`. One pass, longest secret
    first, so a secret inside another, or inside a mask, is never half-replaced. Only literal
    occurrences are found: a secret that was URL- or JSON-escaped in ``text`` is not."""
    wanted = sorted({s for s in secrets if len(s) >= MIN_REDACTED_LEN}, key=len, reverse=True)
    if not wanted or not text:
        return text
    pattern = re.compile("|".join(re.escape(s) for s in wanted))
    return pattern.sub(lambda m: mask(m.group(0)), text)
