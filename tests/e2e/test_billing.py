"""Prices: every usage record carries the exact cost of the request, in integer micro-units."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Iterator
from typing import Any

import openai
import pytest

from omnirelay.app import create_app
from omnirelay.config import Config
from tests.conftest import MASTER_KEY, Gateway
from tests.fakes import ServerThread


def start(tmp_path_factory: pytest.TempPathFactory, **extra: Any) -> Iterator[Gateway]:
    config = Config.model_validate(
        {
            "master_key": MASTER_KEY,
            "usage": {"flush_interval_seconds": 0.05},
            "providers": [{"name": "m", "type": "mock", "models": ["priced", "mystery"]}],
            "prices": {"priced": {"input": "1", "output": "2.5", "per_request": "0.000003"}},
            **extra,
        }
    )
    data = tmp_path_factory.mktemp("billing")
    with ServerThread(create_app(config, data), lifespan="on") as server:
        yield Gateway(server, data)


@pytest.fixture(scope="module")
def free_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    yield from start(tmp_path_factory)


@pytest.fixture(scope="module")
def strict_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    yield from start(tmp_path_factory, billing={"unpriced_models": "refuse"})


def ask(gateway: Gateway, model: str, stream: bool = False) -> str:
    api = openai.OpenAI(base_url=gateway.base_url + "/v1", api_key=MASTER_KEY, max_retries=0, timeout=10)
    messages = [{"role": "user", "content": "one two three four"}]
    if stream:
        with api.chat.completions.with_streaming_response.create(
            model=model, messages=messages, stream=True
        ) as r:
            list(r.iter_lines())
            return str(r.headers["x-request-id"])
    raw = api.chat.completions.with_raw_response.create(model=model, messages=messages)  # type: ignore[arg-type]
    return str(raw.headers["x-request-id"])


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_cost_is_price_times_usage_exactly(free_gateway: Gateway, stream: bool) -> None:
    record = free_gateway.usage(ask(free_gateway, "priced", stream))[0]
    # The mock counts words: 4 in, 5 out ("echo: one two three four"). At 1 and 2.5 credits per 1M
    # tokens (1 and 2.5 micro-units a token) plus 3 micro-units a request: 4 + 12.5 + 3 = 19.5 → 20.
    assert (record["input_tokens"], record["output_tokens"]) == (4, 5)
    assert record["cost"] == 20
    assert record["unpriced"] == 0


def test_unpriced_model_is_served_free_and_flagged(free_gateway: Gateway) -> None:
    record = free_gateway.usage(ask(free_gateway, "mystery"))[0]
    assert record["status"] == 200 and record["cost"] == 0 and record["unpriced"] == 1


def test_unpriced_model_is_refused_under_refuse(strict_gateway: Gateway) -> None:
    with pytest.raises(openai.PermissionDeniedError) as info:
        ask(strict_gateway, "mystery")
    assert info.value.code == "model_not_priced" and "mystery" in info.value.message
    assert strict_gateway.usage(ask(strict_gateway, "priced"))[0]["cost"] > 0


def new_key(gateway: Gateway, **fields: Any) -> dict[str, Any]:
    import httpx

    resp = httpx.post(
        gateway.base_url + "/admin/api/keys",
        json=fields,
        timeout=10,
        headers={"Authorization": f"Bearer {MASTER_KEY}"},
    )
    assert resp.status_code == 201, resp.text
    return resp.json()  # type: ignore[no-any-return]


def key_costs(gateway: Gateway, key_id: str) -> list[int]:
    time.sleep(0.3)  # the background writer flushes every 0.05 s
    return [r["cost"] for r in gateway.usage() if r["key_id"] == key_id and r["status"] == 200]


def stored_spent(gateway: Gateway, key_id: str) -> int:
    conn = sqlite3.connect(gateway.data_dir / "omnirelay.db")
    try:
        return int(conn.execute("SELECT spent FROM api_keys WHERE id = ?", (key_id,)).fetchone()[0])
    finally:
        conn.close()


def test_quota_is_enforced_and_spending_persisted(free_gateway: Gateway) -> None:
    key = new_key(free_gateway, quota=400)
    api = openai.OpenAI(base_url=free_gateway.base_url + "/v1", api_key=key["key"], max_retries=0, timeout=10)
    served = 0
    with pytest.raises(openai.RateLimitError) as info:
        for _ in range(50):
            api.chat.completions.create(
                model="priced", max_tokens=5, messages=[{"role": "user", "content": "one two three four"}]
            )
            served += 1
    assert info.value.code == "insufficient_quota" and "quota" in info.value.message
    costs = key_costs(free_gateway, key["id"])
    assert served == len(costs) >= 1 and sum(costs) <= 400
    assert stored_spent(free_gateway, key["id"]) == sum(costs)


def test_concurrent_requests_cannot_overspend(free_gateway: Gateway) -> None:
    key = new_key(free_gateway, quota=300)
    api = openai.AsyncOpenAI(
        base_url=free_gateway.base_url + "/v1", api_key=key["key"], max_retries=0, timeout=10
    )

    async def one(i: int) -> str:
        try:
            await api.chat.completions.create(
                model="priced", max_tokens=8, messages=[{"role": "user", "content": f"parallel {i}"}]
            )
        except openai.RateLimitError as exc:
            assert exc.code == "insufficient_quota"
            return "refused"
        return "ok"

    async def burst() -> list[str]:
        return list(await asyncio.gather(*(one(i) for i in range(40))))

    outcomes = asyncio.run(burst())
    costs = key_costs(free_gateway, key["id"])
    assert outcomes.count("ok") == len(costs) and "refused" in outcomes
    assert sum(costs) <= 300
    assert stored_spent(free_gateway, key["id"]) == sum(costs)


def test_balance_is_reserved_charged_and_ledgered(free_gateway: Gateway) -> None:
    import httpx

    admin = {"Authorization": f"Bearer {MASTER_KEY}"}
    user = httpx.post(free_gateway.base_url + "/admin/api/users", json={"name": "acme"}, headers=admin).json()
    topped = httpx.post(
        f"{free_gateway.base_url}/admin/api/users/{user['id']}/topup",
        json={"amount": 300, "note": "welcome"},
        headers=admin,
    )
    assert topped.status_code == 200 and topped.json()["balance"] == 300
    key = new_key(free_gateway, user_id=user["id"])
    api = openai.OpenAI(base_url=free_gateway.base_url + "/v1", api_key=key["key"], max_retries=0, timeout=10)
    served = 0
    with pytest.raises(openai.RateLimitError) as info:
        for _ in range(50):
            api.chat.completions.create(
                model="priced", max_tokens=5, messages=[{"role": "user", "content": "one two three four"}]
            )
            served += 1
    assert info.value.code == "insufficient_quota" and "balance" in info.value.message
    costs = key_costs(free_gateway, key["id"])
    assert served == len(costs) >= 1
    balance = httpx.get(f"{free_gateway.base_url}/admin/api/users/{user['id']}", headers=admin).json()[
        "balance"
    ]
    assert balance == 300 - sum(costs) >= 0
    conn = sqlite3.connect(free_gateway.data_dir / "omnirelay.db")
    try:
        (ledger_sum,) = conn.execute(
            "SELECT SUM(amount) FROM ledger WHERE user_id = ?", (user["id"],)
        ).fetchone()
    finally:
        conn.close()
    assert ledger_sum == balance


def test_users_topup_and_usage_commands(free_gateway: Gateway, capsys: pytest.CaptureFixture[str]) -> None:
    from omnirelay.cli import main

    base = ["--url", free_gateway.base_url, "--key", MASTER_KEY]
    assert main(["users", "create", "cli-user", *base]) == 0
    user_id = capsys.readouterr().out.split()[0]
    assert main(["topup", user_id, "2500000", "--note", "cli", *base]) == 0
    assert "balance=2500000" in capsys.readouterr().out
    assert main(["users", "show", user_id, *base]) == 0
    assert "balance=2500000" in capsys.readouterr().out
    ask(free_gateway, "priced")
    time.sleep(0.3)
    assert main(["usage", "--data-dir", str(free_gateway.data_dir)]) == 0
    out = capsys.readouterr().out
    assert "priced" in out and "master" in out
