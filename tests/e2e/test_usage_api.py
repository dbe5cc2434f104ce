"""The admin API's usage summaries, request-log search, IP audit and opt-in body logging, driven with
real traffic from the official `openai` SDK against gateways of this module's own.

The mock provider answers "echo: <prompt>" and counts words as tokens: "one two three four" is 4 input
and 5 output tokens. `alpha` costs 1 micro-unit per input and 2 per output token (14 a request);
`beta` has no price."""

from __future__ import annotations

import math
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import schemathesis

from omnirelay.admin.openapi import openapi_document
from omnirelay.app import ADMIN_ROUTES, create_app
from omnirelay.config import Config
from tests.conftest import MASTER_KEY, Gateway
from tests.fakes import ServerThread

ADMIN = {"Authorization": f"Bearer {MASTER_KEY}"}
SCHEMA = schemathesis.openapi.from_dict(openapi_document(ADMIN_ROUTES))
PROMPT = "one two three four"
ALPHA_COST = 4 * 1 + 5 * 2


def config(**extra: Any) -> Config:
    return Config.model_validate(
        {
            "master_key": MASTER_KEY,
            "usage": {"flush_interval_seconds": 0.05},
            "providers": [{"name": "m", "type": "mock", "models": ["alpha", "beta"]}],
            "prices": {"alpha": {"input": "1", "output": "2"}},
            **extra,
        }
    )


def admin(gateway: Gateway, method: str, path: str, key: str = MASTER_KEY, **kw: Any) -> httpx.Response:
    return httpx.request(
        method, gateway.base_url + path, headers={"Authorization": f"Bearer {key}"}, timeout=10, **kw
    )


def new_user(gateway: Gateway, name: str) -> str:
    made = admin(gateway, "POST", "/admin/api/users", json={"name": name})
    assert made.status_code == 201, made.text
    user_id: str = made.json()["id"]
    topup = admin(gateway, "POST", f"/admin/api/users/{user_id}/topup", json={"amount": 10**9})
    assert topup.status_code == 200, topup.text
    return user_id


def new_key(gateway: Gateway, **fields: Any) -> dict[str, Any]:
    made = admin(gateway, "POST", "/admin/api/keys", json=fields)
    assert made.status_code == 201, made.text
    return made.json()  # type: ignore[no-any-return]


def ask(
    gateway: Gateway,
    key: str,
    model: str,
    stream: bool = False,
    ip: str | None = None,
    prompt: str = PROMPT,
) -> str:
    """One chat completion; returns its request id."""
    api = openai.OpenAI(base_url=gateway.base_url + "/v1", api_key=key, max_retries=0, timeout=10)
    headers = {"X-Forwarded-For": ip} if ip else None
    messages: Any = [{"role": "user", "content": prompt}]
    if stream:
        with api.chat.completions.with_streaming_response.create(
            model=model, messages=messages, stream=True, extra_headers=headers
        ) as r:
            list(r.iter_lines())
            return str(r.headers["x-request-id"])
    raw = api.chat.completions.with_raw_response.create(model=model, messages=messages, extra_headers=headers)
    return str(raw.headers["x-request-id"])


def logs(gateway: Gateway, key: str = MASTER_KEY, **params: Any) -> dict[str, Any]:
    resp = admin(gateway, "GET", "/admin/api/logs", key=key, params=params)
    assert resp.status_code == 200, resp.text
    return resp.json()  # type: ignore[no-any-return]


def wait_for_logs(gateway: Gateway, expected: int, **params: Any) -> dict[str, Any]:
    """The background writer flushes every 0.05 s: wait until `expected` records match."""
    deadline = time.monotonic() + 5
    while True:
        page = logs(gateway, **params)
        if page["total"] >= expected or time.monotonic() > deadline:
            assert page["total"] == expected, page
            return page
        time.sleep(0.05)


def usage(gateway: Gateway, key: str = MASTER_KEY, **params: Any) -> dict[str, Any]:
    resp = admin(gateway, "GET", "/admin/api/usage", key=key, params=params)
    assert resp.status_code == 200, resp.text
    return resp.json()  # type: ignore[no-any-return]


@dataclass
class Traffic:
    gateway: Gateway
    since: float
    until: float
    alice: str
    bob: str
    keys: dict[str, dict[str, Any]]
    ids: dict[str, list[str]] = field(default_factory=dict)

    @property
    def window(self) -> dict[str, Any]:
        """The traffic's time range: admin calls (recorded too) made by later tests fall outside."""
        return {"from": self.since, "to": self.until}


@pytest.fixture(scope="module")
def traffic(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Traffic]:
    data = tmp_path_factory.mktemp("usage-api")
    with ServerThread(create_app(config(), data), lifespan="on") as server:
        gateway = Gateway(server, data)
        alice, bob = new_user(gateway, "alice"), new_user(gateway, "bob")
        keys = {
            "a1": new_key(gateway, name="a1", user_id=alice),
            "a2": new_key(gateway, name="a2", user_id=alice),
            "b1": new_key(gateway, name="b1", user_id=bob),
            "loose": new_key(gateway, name="no owner"),
        }
        since = time.time()
        t = Traffic(gateway, since, 0.0, alice, bob, keys)
        t.ids["a1"] = [
            ask(gateway, keys["a1"]["key"], "alpha"),
            ask(gateway, keys["a1"]["key"], "alpha", stream=True),
            ask(gateway, keys["a1"]["key"], "beta"),
        ]
        t.ids["a2"] = [ask(gateway, keys["a2"]["key"], "alpha", ip="10.0.0.2")]
        t.ids["b1"] = [ask(gateway, keys["b1"]["key"], "beta", ip="10.0.0.3") for _ in range(3)]
        with pytest.raises(openai.NotFoundError):
            ask(gateway, keys["b1"]["key"], "no-such-model")
        t.ids["loose"] = [ask(gateway, keys["loose"]["key"], "beta")]
        wait_for_logs(gateway, 8, provider="m", **{"from": since})  # the unknown model has none
        t.until = time.time()
        yield t


def rows_by(summary: dict[str, Any], *columns: str) -> dict[tuple[Any, ...], dict[str, Any]]:
    return {tuple(row[c] for c in columns): row for row in summary["data"]}


def test_summary_totals_per_user_and_model_are_exact(traffic: Traffic) -> None:
    window = traffic.window
    by_user_model = rows_by(usage(traffic.gateway, group_by="user,model", **window), "user_id", "model")
    a_alpha = by_user_model[(traffic.alice, "alpha")]
    assert a_alpha["requests"] == 3 and a_alpha["errors"] == 0
    assert (a_alpha["input_tokens"], a_alpha["output_tokens"], a_alpha["cost"]) == (12, 15, 3 * ALPHA_COST)
    a_beta = by_user_model[(traffic.alice, "beta")]
    assert (a_beta["requests"], a_beta["cost"], a_beta["output_tokens"]) == (1, 0, 5)
    b_beta = by_user_model[(traffic.bob, "beta")]
    assert (b_beta["requests"], b_beta["input_tokens"]) == (3, 12)
    b_missing = by_user_model[(traffic.bob, "no-such-model")]
    assert (b_missing["requests"], b_missing["errors"], b_missing["input_tokens"]) == (1, 1, 0)
    assert by_user_model[(None, "beta")]["requests"] == 1  # the key without an owner

    by_key = rows_by(usage(traffic.gateway, group_by="key", model="alpha", **window), "key_id")
    assert {k: r["requests"] for k, r in by_key.items()} == {
        (traffic.keys["a1"]["id"],): 2,
        (traffic.keys["a2"]["id"],): 1,
    }
    one = usage(traffic.gateway, user_id=traffic.alice, provider="m", **window)
    assert one["data"] == [one["totals"]] and one["group_by"] == [] and one["bucket"] is None
    assert one["totals"]["requests"] == 4 and one["totals"]["cost"] == 3 * ALPHA_COST
    # Nothing before the traffic started.
    empty = usage(traffic.gateway, to=traffic.since, model="alpha")
    assert empty["data"][0]["requests"] == 0 and empty["totals"]["cost"] == 0


def test_summary_counts_model_traffic_unless_admin_calls_are_asked_for(traffic: Traffic) -> None:
    g, mine = traffic.gateway, traffic.keys["a2"]["key"]
    admin(g, "GET", "/admin/api/me", key=mine)  # a self-service call: in the log, not in usage
    time.sleep(0.3)
    plain = usage(g, key=mine, group_by="model")
    assert "" not in {row["model"] for row in plain["data"]}
    with_admin = usage(g, key=mine, group_by="model", include_admin="true")
    assert with_admin["totals"]["requests"] > plain["totals"]["requests"]
    assert "" in {row["model"] for row in with_admin["data"]}
    assert admin(g, "GET", "/admin/api/usage", params={"include_admin": "maybe"}).status_code == 400


def test_summary_buckets_by_utc_hour_and_day(traffic: Traffic) -> None:
    window = {**traffic.window, "model": "alpha"}
    for bucket, seconds in (("hour", 3600), ("day", 86400)):
        summary = usage(traffic.gateway, bucket=bucket, group_by="model", **window)
        assert summary["bucket"] == bucket
        starts = {
            math.floor(traffic.since / seconds) * seconds,
            math.floor(traffic.until / seconds) * seconds,
        }
        assert {row["bucket_ts"] for row in summary["data"]} <= starts
        assert sum(row["requests"] for row in summary["data"]) == 3
        for row in summary["data"]:
            assert row["bucket"].endswith(":00:00Z") and row["model"] == "alpha"
        assert summary["totals"]["requests"] == 3 and "bucket" not in summary["totals"]


def test_log_search_filters(traffic: Traffic) -> None:
    g, window = traffic.gateway, traffic.window
    a1 = logs(g, key_id=traffic.keys["a1"]["id"], **window)
    assert a1["total"] == 3 and {r["request_id"] for r in a1["data"]} == set(traffic.ids["a1"])
    assert [r["stream"] for r in a1["data"] if r["request_id"] == traffic.ids["a1"][1]] == [True]
    assert logs(g, user_id=traffic.alice, model="alpha", **window)["total"] == 3
    failed = logs(g, status="4xx", **window)
    assert failed["total"] == 1 and failed["data"][0]["model"] == "no-such-model"
    assert failed["data"][0]["status"] == 404 and failed["data"][0]["user_id"] == traffic.bob
    assert logs(g, status="error", **window)["total"] == 1
    assert logs(g, status="404", **window)["total"] == 1
    assert logs(g, status="success", provider="m", **window)["total"] == 8
    from_ip = logs(g, client_ip="10.0.0.3", **window)
    assert from_ip["total"] == 3 and {r["key_id"] for r in from_ip["data"]} == {traffic.keys["b1"]["id"]}
    record = from_ip["data"][0]
    assert record["object"] == "request_log" and record["time"].endswith("Z") and record["provider"] == "m"
    assert logs(g, provider="nobody", **window)["total"] == 0
    rfc = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(traffic.since - 1))
    assert logs(g, model="beta", to=traffic.until, **{"from": rfc})["total"] == 5


def test_log_search_pages_newest_first(traffic: Traffic) -> None:
    g = traffic.gateway
    everything = logs(g, provider="m", **traffic.window)
    assert everything["total"] == 8
    seen: list[dict[str, Any]] = []
    for offset in range(0, 8, 3):
        page = logs(g, provider="m", limit=3, offset=offset, **traffic.window)
        assert page["total"] == 8 and (page["limit"], page["offset"]) == (3, offset)
        seen += page["data"]
    assert [r["request_id"] for r in seen] == [r["request_id"] for r in everything["data"]]
    assert len({r["request_id"] for r in seen}) == 8
    stamps = [r["ts"] for r in seen]
    assert stamps == sorted(stamps, reverse=True)
    assert logs(g, limit=0)["limit"] == 1 and logs(g, limit=5000)["limit"] == 1000


def test_ip_audit_lists_each_key_and_address(traffic: Traffic) -> None:
    resp = admin(traffic.gateway, "GET", "/admin/api/ip-audit", params=traffic.window)
    assert resp.status_code == 200, resp.text
    pairs = {(p["key_id"], p["client_ip"]): p for p in resp.json()["data"]}
    keys = traffic.keys
    assert pairs[(keys["b1"]["id"], "10.0.0.3")]["requests"] == 3
    assert pairs[(keys["b1"]["id"], "127.0.0.1")]["requests"] == 1  # the unknown model
    assert pairs[(keys["a2"]["id"], "10.0.0.2")]["requests"] == 1
    assert pairs[(keys["a1"]["id"], "127.0.0.1")]["requests"] == 3
    b1 = pairs[(keys["b1"]["id"], "10.0.0.3")]
    assert b1["first_seen"] <= b1["last_seen"] and b1["last_seen"].endswith("Z")
    only = admin(
        traffic.gateway, "GET", "/admin/api/ip-audit", params={"client_ip": "10.0.0.2", **traffic.window}
    ).json()
    assert only["total"] == 1 and only["data"][0]["key_id"] == keys["a2"]["id"]


def test_a_users_key_sees_only_its_own_records(traffic: Traffic) -> None:
    g, mine = traffic.gateway, traffic.keys["a2"]["key"]
    window = traffic.window
    own = usage(g, key=mine, group_by="user,key,model", **window)
    assert {row["user_id"] for row in own["data"]} == {traffic.alice}
    assert sum(r["requests"] for r in own["data"] if r["model"] in ("alpha", "beta")) == 4
    listed = logs(g, key=mine, **window)
    assert listed["total"] == 4 and {r["user_id"] for r in listed["data"]} == {traffic.alice}
    refused = admin(g, "GET", "/admin/api/logs", key=mine, params={"user_id": traffic.bob})
    assert refused.status_code == 403 and refused.json()["error"]["param"] == "user_id"
    assert logs(g, key=mine, key_id=traffic.keys["b1"]["id"])["total"] == 0
    bobs = admin(g, "GET", f"/admin/api/logs/{traffic.ids['b1'][0]}", key=mine)
    assert bobs.status_code == 404
    # Exactly what an id that does not exist gets: another tenant's ids cannot be probed.
    nope = admin(g, "GET", "/admin/api/logs/req_nope", key=mine).json()["error"]
    assert bobs.json()["error"] == {
        **nope,
        "message": nope["message"].replace("req_nope", traffic.ids["b1"][0]),
    }
    alices = admin(g, "GET", f"/admin/api/logs/{traffic.ids['a1'][0]}", key=mine)
    assert alices.status_code == 200 and alices.json()["key_id"] == traffic.keys["a1"]["id"]
    audit = admin(g, "GET", "/admin/api/ip-audit", key=mine, params=window).json()
    assert {p["key_id"] for p in audit["data"]} <= {traffic.keys["a1"]["id"], traffic.keys["a2"]["id"]}
    # A key that belongs to no user may not call the self-service operations at all.
    loose = admin(g, "GET", "/admin/api/usage", key=traffic.keys["loose"]["key"])
    assert loose.status_code == 403
    # The master key sees everyone and may narrow to one user.
    assert logs(g, user_id=traffic.bob, **window)["total"] == 4


@pytest.mark.parametrize(
    ("path", "params", "param"),
    [
        ("/admin/api/usage", {"from": "yesterday"}, "from"),
        ("/admin/api/usage", {"to": "2026-01-01T00:00:00"}, "to"),
        ("/admin/api/usage", {"from": "nan"}, "from"),
        ("/admin/api/usage", {"group_by": "user,colour"}, "group_by"),
        ("/admin/api/usage", {"bucket": "week"}, "bucket"),
        ("/admin/api/logs", {"status": "teapot"}, "status"),
        ("/admin/api/logs", {"limit": "ten"}, "limit"),
        ("/admin/api/logs", {"offset": "-x"}, "offset"),
        ("/admin/api/ip-audit", {"to": "1e400"}, "to"),
    ],
)
def test_bad_parameters_are_400_naming_the_parameter(
    traffic: Traffic, path: str, params: dict[str, str], param: str
) -> None:
    resp = admin(traffic.gateway, "GET", path, params=params)
    assert resp.status_code == 400, resp.text
    assert resp.json()["error"]["param"] == param


def test_responses_match_the_documented_schemas(traffic: Traffic) -> None:
    g, window = traffic.gateway, traffic.window
    checks = [
        ("/admin/api/usage", {"group_by": "user,key,model,provider", "bucket": "hour", **window}),
        ("/admin/api/usage", {}),
        ("/admin/api/usage", {"bucket": "fortnight"}),
        ("/admin/api/logs", window),
        ("/admin/api/logs", {"status": "nope"}),
        ("/admin/api/ip-audit", window),
        (f"/admin/api/logs/{traffic.ids['a1'][1]}", {}),
        ("/admin/api/logs/req_nope", {}),
    ]
    for path, params in checks:
        documented = "/admin/api/logs/{request_id}" if path.startswith("/admin/api/logs/") else path
        SCHEMA[documented]["GET"].validate_response(admin(g, "GET", path, params=params))


def test_unknown_request_id_is_404(traffic: Traffic) -> None:
    resp = admin(traffic.gateway, "GET", "/admin/api/logs/req_nope")
    assert resp.status_code == 404 and resp.json()["error"]["code"] == "not_found"


# --- body logging ------------------------------------------------------------------------------


def detail(gateway: Gateway, request_id: str, settle: float = 0.5) -> dict[str, Any]:
    """`GET /admin/api/logs/{id}`, once the record is written (and its bodies, for `settle` s more)."""
    path = f"/admin/api/logs/{request_id}"
    deadline = time.monotonic() + 5
    while (resp := admin(gateway, "GET", path)).status_code == 404 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert resp.status_code == 200, resp.text
    deadline = time.monotonic() + settle
    while resp.json()["bodies"] is None and time.monotonic() < deadline:
        time.sleep(0.05)
        resp = admin(gateway, "GET", path)
    body: dict[str, Any] = resp.json()
    return body


def stored_bodies(data_dir: Path) -> list[bytes]:
    conn = sqlite3.connect(data_dir / "omnirelay.db")
    try:
        return [bytes(a) + bytes(b) for a, b in conn.execute("SELECT request, response FROM request_bodies")]
    finally:
        conn.close()


def test_bodies_are_not_logged_by_default(traffic: Traffic) -> None:
    assert detail(traffic.gateway, traffic.ids["a1"][0])["bodies"] is None
    assert stored_bodies(traffic.gateway.data_dir) == []


def test_a_key_can_opt_in_to_body_logging(traffic: Traffic) -> None:
    g = traffic.gateway
    key = new_key(g, name="logged", log_bodies=True)
    assert key["log_bodies"] is True
    plain = ask(g, key["key"], "alpha")
    streamed = ask(g, key["key"], "alpha", stream=True)
    logged = detail(g, plain)["bodies"]
    assert logged is not None
    assert PROMPT in logged["request"]["body"] and '"model":"alpha"' in logged["request"]["body"].replace(
        " ", ""
    )
    assert logged["request"]["encoding"] == "utf-8" and logged["request"]["truncated"] is False
    assert "echo: one two three four" in logged["response"]["body"]
    assert logged["response"]["content_type"].startswith("application/json")
    assert logged["response"]["bytes"] == len(logged["response"]["body"].encode())
    SCHEMA["/admin/api/logs/{request_id}"]["GET"].validate_response(
        admin(g, "GET", f"/admin/api/logs/{streamed}")
    )
    stream = detail(g, streamed)["bodies"]["response"]
    assert stream["content_type"].startswith("text/event-stream")
    assert "data: [DONE]" in stream["body"] and "echo" in stream["body"]
    # Never a key: the headers are not logged and the bodies carry none.
    for blob in stored_bodies(g.data_dir):
        assert key["key"].encode() not in blob and MASTER_KEY.encode() not in blob
    # Only an admin turns logging on or off for a key.
    mine = traffic.keys["a1"]
    refused = admin(g, "PATCH", f"/admin/api/keys/{mine['id']}", key=mine["key"], json={"log_bodies": True})
    assert refused.status_code == 403 and refused.json()["error"]["param"] == "log_bodies"


@pytest.fixture(scope="module")
def logging_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    data = tmp_path_factory.mktemp("usage-bodies")
    cfg = config(logging={"bodies": True, "max_body_bytes": 120, "body_retention_days": 2 / 86400})
    with ServerThread(create_app(cfg, data), lifespan="on") as server:
        yield Gateway(server, data)


def test_global_logging_caps_bodies_and_a_key_can_opt_out(logging_gateway: Gateway) -> None:
    g = logging_gateway
    long_prompt = " ".join(["word"] * 100)
    rid = ask(g, MASTER_KEY, "beta", prompt=long_prompt)
    request = detail(g, rid)["bodies"]["request"]
    assert request["truncated"] is True and request["bytes"] > 500
    assert len(request["body"].encode()) == 120
    quiet = new_key(g, log_bodies=False)
    assert detail(g, ask(g, quiet["key"], "beta"))["bodies"] is None


def test_bodies_are_purged_after_the_retention_period(logging_gateway: Gateway) -> None:
    rid = ask(logging_gateway, MASTER_KEY, "beta")
    assert detail(logging_gateway, rid)["bodies"] is not None
    deadline = time.monotonic() + 10
    while detail(logging_gateway, rid)["bodies"] is not None:
        assert time.monotonic() < deadline, "the body outlived its 2 s retention"
        time.sleep(0.25)
    assert detail(logging_gateway, rid)["status"] == 200  # the usage record stays


def test_old_bodies_are_purged_at_start(tmp_path: Path) -> None:
    cfg = config(logging={"bodies": True})
    with ServerThread(create_app(cfg, tmp_path), lifespan="on") as server:
        g = Gateway(server, tmp_path)
        old, fresh = ask(g, MASTER_KEY, "beta"), ask(g, MASTER_KEY, "beta")
        assert detail(g, old)["bodies"] is not None and detail(g, fresh)["bodies"] is not None
    conn = sqlite3.connect(tmp_path / "omnirelay.db")
    with conn:
        conn.execute("UPDATE request_bodies SET ts = ts - 8 * 86400 WHERE request_id = ?", (old,))
    conn.close()
    with ServerThread(create_app(cfg, tmp_path), lifespan="on") as server:
        g = Gateway(server, tmp_path)
        deadline = time.monotonic() + 5
        while detail(g, old)["bodies"] is not None:
            assert time.monotonic() < deadline, "a body past its retention survived the start"
            time.sleep(0.05)
        assert detail(g, fresh)["bodies"] is not None
