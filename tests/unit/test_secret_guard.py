"""The log-line secret check itself: it must catch what it is meant to catch."""

from __future__ import annotations

import logging

from omnirelay.security.keys import generate_key
from omnirelay.storage.billing import new_code
from tests.secret_guard import SecretGuard


def _guarded(name: str = "omnirelay.test-guard") -> tuple[SecretGuard, logging.Logger]:
    guard = SecretGuard(["provider-secret-value-123"])
    logger = logging.getLogger(name)
    logger.propagate = False
    logger.addHandler(guard)
    logger.setLevel(logging.DEBUG)
    return guard, logger


def test_catches_known_secrets_and_secret_shapes_with_the_secret_masked() -> None:
    guard, logger = _guarded()
    key, code = generate_key(), new_code()
    logger.info("calling upstream with provider-secret-value-123")
    logger.debug("authenticated %s", key)
    logger.warning("redeemed %s", code)
    try:
        raise ValueError("bad key " + key)
    except ValueError:
        logger.exception("failed")
    logger.info("an ordinary line about sk-or-abcdef… (a prefix) is fine")
    assert len(guard.leaks) == 4
    assert not any(s in leak for leak in guard.leaks for s in (key, code, "provider-secret-value-123"))


def test_ignores_client_side_loggers_and_a_serve_banner() -> None:
    guard, logger = _guarded("httpx")
    logger.info("HTTP Request: POST http://127.0.0.1/v1beta/models/x?key=%s", generate_key())
    key = generate_key()
    banner = f"  master key: {key}\n2026-11-25 11:00:00,123 INFO omnirelay: serving on 127.0.0.1:8080\n"
    guard.check_process_output("serve", banner)
    assert guard.leaks == []
    guard.check_process_output("serve", f"2026-11-25 11:00:00,123 INFO omnirelay: key {key}\n")
    assert len(guard.leaks) == 1
