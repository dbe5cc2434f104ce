"""Logged bodies wait for the database in a bounded backlog: past it, they are dropped and counted
(usage records, by contrast, are never dropped)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from omnirelay.accounting import bodies
from omnirelay.accounting.bodies import BodyCapture, BodyLog


def test_a_full_backlog_drops_and_counts_bodies(monkeypatch: Any) -> None:
    monkeypatch.setattr(bodies, "MAX_PENDING_BODIES", 3)
    store: Any = SimpleNamespace(add_bodies=None)  # never called: the writer is not started
    log = BodyLog(store, enabled=True, max_bytes=100, retention_days=1, flush_interval=1)
    for i in range(5):
        log.record(f"req_{i}", 0.0, BodyCapture(100))
    assert (log.writer.pending, log.dropped) == (3, 2)
