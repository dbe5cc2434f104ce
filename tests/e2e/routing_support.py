"""Shared pieces of the routing e2e tests: gateways over the programmable fake, and client helpers that
report who served a request and how many attempts it took."""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import openai

from omnirelay.app import create_app
from omnirelay.config import Config
from tests.conftest import MASTER_KEY, Gateway
from tests.fakes.programmable import ProgrammableState
from tests.fakes.programmable import create_app as create_programmable
from tests.fakes.server import ServerThread

ADMIN = {"Authorization": f"Bearer {MASTER_KEY}"}
_SEQ = itertools.count(1)


def key(label: str) -> str:
    """The upstream key whose label (as the fake reports it in `system_fingerprint`) is `label`."""
    return f"sk-prog-{label}"


def label_of(upstream_key: str) -> str:
    return upstream_key.removeprefix("sk-prog-")


def provider(
    name: str, base_url: str, labels: Sequence[str], models: Sequence[str | dict[str, Any]], **extra: Any
) -> dict[str, Any]:
    return {
        "name": name,
        "type": "openai-compatible",
        "base_url": base_url + "/v1",
        "api_keys": [key(label) for label in labels],
        "models": list(models),
        **extra,
    }


@contextmanager
def running_fake() -> Iterator[ProgrammableState]:
    state = ProgrammableState()
    with ServerThread(create_programmable(state)) as server:
        state.base_url = server.base_url
        yield state


@contextmanager
def running_gateway(raw: dict[str, Any], data_dir: Path) -> Iterator[Gateway]:
    config = Config.model_validate(
        {"master_key": MASTER_KEY, "usage": {"flush_interval_seconds": 0.05}, **raw}
    )
    with ServerThread(create_app(config, data_dir), lifespan="on") as server:
        yield Gateway(server, data_dir)


def label_everything(state: ProgrammableState, raw: dict[str, Any]) -> None:
    """Label every configured key in the fake by its short name."""
    for prov in raw.get("providers", []):
        for upstream_key in prov.get("api_keys", []):
            state.labels[upstream_key] = label_of(upstream_key)


def client(gateway: Gateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.base_url + "/v1", api_key=MASTER_KEY, max_retries=0, timeout=10)


def async_client(gateway: Gateway) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(
        base_url=gateway.base_url + "/v1", api_key=MASTER_KEY, max_retries=0, timeout=10
    )


def unique(prefix: str = "q") -> str:
    """A fresh first message, so no two requests share a conversation (and stickiness)."""
    return f"{prefix}-{next(_SEQ)}-{time.monotonic_ns() % 1_000_000}"


@dataclass(frozen=True, slots=True)
class Answer:
    text: str
    served_by: str  # the label of the key that served (from the fake's system_fingerprint)
    provider: str  # x-omnirelay-provider: <provider>/<upstream model>
    attempts: int  # x-omnirelay-attempts (absent means 1)
    request_id: str
    elapsed: float


def _answer(raw: Any, started: float) -> Answer:
    completion = raw.parse()
    return Answer(
        text=completion.choices[0].message.content or "",
        served_by=completion.system_fingerprint or "",
        provider=raw.headers.get("x-omnirelay-provider", ""),
        attempts=int(raw.headers.get("x-omnirelay-attempts", "1")),
        request_id=raw.headers.get("x-request-id", ""),
        elapsed=time.monotonic() - started,
    )


def _messages(text: str | None, messages: list[dict[str, Any]] | None) -> Any:
    """The messages to send (typed loosely: the SDK wants its TypedDicts)."""
    return messages if messages is not None else [{"role": "user", "content": text or unique()}]


def ask(
    api: openai.OpenAI,
    model: str,
    text: str | None = None,
    messages: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
) -> Answer:
    started = time.monotonic()
    raw = api.chat.completions.with_raw_response.create(
        model=model,
        messages=_messages(text, messages),
        extra_headers=headers,
    )
    return _answer(raw, started)


async def aask(api: openai.AsyncOpenAI, model: str, text: str | None = None) -> Answer:
    started = time.monotonic()
    raw = await api.chat.completions.with_raw_response.create(
        model=model,
        messages=_messages(text, None),
    )
    return _answer(raw, started)


def deployments(gateway: Gateway) -> dict[str, dict[str, Any]]:
    """`GET /admin/deployments`, by deployment id (`<provider>/<key index>/<upstream model>`)."""
    resp = httpx.get(gateway.base_url + "/admin/deployments", headers=ADMIN, timeout=10)
    assert resp.status_code == 200, resp.text
    return {d["id"]: d for d in resp.json()["data"]}


def clear_of_window_edge(length: float, margin: float = 2.0) -> None:
    """Sleep past the end of the current epoch-aligned window (minute, UTC day) if it ends within
    `margin` seconds, so a burst lands inside one window of the gateway's fixed-window counters."""
    left = length - math.fmod(time.time(), length)
    if left < margin:
        time.sleep(left + 0.05)


def per_window(times: Sequence[float], length: float) -> dict[int, int]:
    counts: dict[int, int] = {}
    for t in times:
        index = math.floor(t / length)
        counts[index] = counts.get(index, 0) + 1
    return counts
