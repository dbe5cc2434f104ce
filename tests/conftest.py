"""Shared fixtures: a fake OpenAI upstream and a gateway in front of it, both on loopback."""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from omnirelay.app import create_app
from omnirelay.config import Config
from omnirelay.runtime import Runtime
from omnirelay.state.memory import MemoryRoutingState
from tests.fakes import FakeState, ServerThread
from tests.fakes import create_app as create_fake
from tests.fakes.anthropic_upstream import FakeAnthropicState
from tests.fakes.anthropic_upstream import create_app as create_anthropic_fake
from tests.fakes.gemini_upstream import FakeGeminiState
from tests.fakes.gemini_upstream import create_app as create_gemini_fake
from tests.secret_guard import GUARD

MASTER_KEY = "sk-or-test-master-key-0123456789"
ANTHROPIC_KEY = "sk-ant-upstream-cccccccccccccccc"
GEMINI_KEY = "gemini-upstream-key-dddddddddddd"
UPSTREAM_KEYS = ["sk-upstream-aaaaaaaaaaaaaaaa", "sk-upstream-bbbbbbbbbbbbbbbb"]


def pytest_configure(config: pytest.Config) -> None:
    """Watch every log line of the run for secrets (tests/secret_guard.py)."""
    for secret in (MASTER_KEY, ANTHROPIC_KEY, GEMINI_KEY, *UPSTREAM_KEYS):
        GUARD.add_secret(secret)
    logging.getLogger().addHandler(GUARD)
    logging.getLogger("omnirelay").setLevel(logging.DEBUG)  # debug lines must be clean too


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    logging.getLogger().removeHandler(GUARD)
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.ensure_newline()
    if reporter is not None and not GUARD.leaks:
        reporter.write_line(f"secret guard: {GUARD.lines} gateway log lines checked, no secret found")
    if GUARD.leaks:
        lines = [f"SECRET IN A LOG LINE ({len(GUARD.leaks)} found):", *GUARD.leaks[:20]]
        if reporter is not None:
            reporter.write_line("\n".join(lines), red=True, bold=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


FAKE_MODELS = [
    "gpt-4o-mini",
    {"name": "fast", "upstream": "gpt-4o-mini"},
    "fail-429",
    "fail-500",
    "fail-503",
    "fail-400",
    "bad-json",
    "cut-stream",
    "slow-stream",
    "text-embedding-3-small",
    "gpt-3.5-turbo-instruct",
    "omni-moderation-latest",
    "dall-e-3",
    "tts-1",
    "whisper-1",
]


class Gateway:
    def __init__(self, server: ServerThread, data_dir: Path) -> None:
        self.server = server
        self.base_url = server.base_url
        self.data_dir = data_dir

    @property
    def runtime(self) -> Runtime:
        return self.server.app.state.runtime  # type: ignore[no-any-return]

    def reset_routing(self) -> None:
        """Forget cool-downs, invalid keys, breakers and sticky sessions left by the previous test."""
        self.runtime.dispatcher.state = MemoryRoutingState()

    def record(self, request_id: str) -> dict[str, Any]:
        """The usage record of one request (waiting for the background writer)."""
        rows = self.usage(request_id)
        assert rows, f"no usage record was written for {request_id}"
        return rows[0]

    def usage(self, request_id: str | None = None, wait: float = 3.0) -> list[dict[str, Any]]:
        """Usage records as stored in SQLite (waits for the background writer when asked for one id)."""
        deadline = time.monotonic() + wait
        while True:
            conn = sqlite3.connect(self.data_dir / "omnirelay.db")
            conn.row_factory = sqlite3.Row
            try:
                query = "SELECT * FROM usage_records" + (" WHERE request_id = ?" if request_id else "")
                rows = [dict(r) for r in conn.execute(query, (request_id,) if request_id else ())]
            finally:
                conn.close()
            if rows or request_id is None or time.monotonic() > deadline:
                return rows
            time.sleep(0.05)


def serve(tmp_path_factory: pytest.TempPathFactory, label: str, raw: dict[str, Any]) -> Iterator[Gateway]:
    """A gateway of a test module's own on loopback: `raw` config, with the test master key and
    usage written every 0.05 s unless `raw` says otherwise."""
    config = Config.model_validate(
        {"master_key": MASTER_KEY, "usage": {"flush_interval_seconds": 0.05}, **raw}
    )
    with ServerThread(create_app(config, tmp_path_factory.mktemp(label)), lifespan="on") as server:
        yield Gateway(server, server.app.state.runtime.data_dir)


def chat_prompt_tokens(text: str, model: str) -> int:
    """What the tokenizer counts for a one-message user prompt, with OpenAI's chat framing: 3 per
    message, the role, the content, 3 priming the reply."""
    from omnirelay.accounting.tokenizer import count_text

    return 3 + count_text("user", model) + count_text(text, model) + 3


def gateway_config(
    fake_url: str,
    anthropic_url: str = "http://127.0.0.1:9",
    gemini_url: str = "http://127.0.0.1:9",
    **overrides: Any,
) -> Config:
    raw: dict[str, Any] = {
        "master_key": MASTER_KEY,
        "usage": {"flush_interval_seconds": 0.05},
        # The shared gateway passes upstream 429s on at once; waiting is tested in test_routing*.
        "routing": {"max_wait_seconds": 1},
        "server": {"max_body_bytes": 1_000_000},
        "providers": [
            {
                "name": "oai",
                "type": "openai",
                "base_url": fake_url + "/v1",
                "api_keys": UPSTREAM_KEYS,
                "models": FAKE_MODELS,
            },
            {
                "name": "impatient",
                "type": "openai-compatible",
                "base_url": fake_url + "/v1",
                "api_keys": ["sk-upstream-impatient"],
                "models": ["slow-first-byte"],
                "timeouts": {"first_byte": 0.5, "idle": 1.0},
            },
            {"name": "mock", "type": "mock", "models": ["mock"]},
            {
                "name": "anth",
                "type": "anthropic",
                "base_url": anthropic_url,
                "api_keys": [ANTHROPIC_KEY],
                "models": [
                    "claude-sonnet-4-6",
                    {"name": "anth-cache-hit", "upstream": "cache-hit"},
                    {"name": "anth-fail-429", "upstream": "fail-429"},
                    {"name": "anth-fail-529", "upstream": "fail-529"},
                    {"name": "anth-cut-stream", "upstream": "cut-stream"},
                ],
            },
            {
                "name": "gem",
                "type": "gemini",
                "base_url": gemini_url,
                "api_keys": [GEMINI_KEY],
                "models": [
                    "gemini-2.5-flash",
                    "gemini-embedding-001",
                    {"name": "gem-cache-hit", "upstream": "cache-hit"},
                    {"name": "gem-fail-429", "upstream": "fail-429"},
                    {"name": "gem-blocked", "upstream": "blocked"},
                    {"name": "gem-max-tokens", "upstream": "max-tokens"},
                    {"name": "gem-cut-stream", "upstream": "cut-stream"},
                ],
            },
            # Nothing listens on port 9: every request to it fails to connect, and falls to "backup".
            {
                "name": "down",
                "type": "openai-compatible",
                "priority": 0,
                "base_url": "http://127.0.0.1:9/v1",
                "models": [{"name": "failover-model", "upstream": "gpt-4o-mini"}],
            },
            {
                "name": "backup",
                "type": "openai-compatible",
                "priority": 1,
                "base_url": fake_url + "/v1",
                "api_keys": ["sk-upstream-backup"],
                "models": [{"name": "failover-model", "upstream": "gpt-4o-mini"}],
            },
        ],
    }
    raw.update(overrides)
    return Config.model_validate(raw)


@pytest.fixture(scope="session")
def fake() -> Iterator[FakeState]:
    state = FakeState(slow_seconds=3.0)
    with ServerThread(create_fake(state)) as server:
        state.base_url = server.base_url  # type: ignore[attr-defined]
        yield state


@pytest.fixture(scope="session")
def anthropic_fake() -> Iterator[FakeAnthropicState]:
    state = FakeAnthropicState()
    with ServerThread(create_anthropic_fake(state)) as server:
        state.base_url = server.base_url  # type: ignore[attr-defined]
        yield state


@pytest.fixture(scope="session")
def gemini_fake() -> Iterator[FakeGeminiState]:
    state = FakeGeminiState()
    with ServerThread(create_gemini_fake(state)) as server:
        state.base_url = server.base_url  # type: ignore[attr-defined]
        yield state


@pytest.fixture(scope="session")
def gateway(
    fake: FakeState,
    anthropic_fake: FakeAnthropicState,
    gemini_fake: FakeGeminiState,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Gateway]:
    data_dir = tmp_path_factory.mktemp("gateway-data")
    config = gateway_config(fake.base_url, anthropic_fake.base_url, gemini_fake.base_url)  # type: ignore[attr-defined]
    app = create_app(config, data_dir)
    with ServerThread(app, lifespan="on") as server:
        yield Gateway(server, data_dir)


@pytest.fixture(autouse=True)
def _fresh_routing_state(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if "gateway" in request.fixturenames:
        request.getfixturevalue("gateway").reset_routing()
