"""Tenancy end to end: users' own keys on the admin API (self-service), `me`, redemption codes, user
administration, and price multipliers (a user's group times a key's own) on real requests."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import openai
import pytest

from omnirelay.storage.billing import hash_code
from tests.conftest import MASTER_KEY, Gateway, serve

ADMIN = {"Authorization": f"Bearer {MASTER_KEY}"}
WORDS = [{"role": "user", "content": "one two three four"}]


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    yield from serve(
        tmp_path_factory,
        "self-service",
        {
            "providers": [{"name": "m", "type": "mock", "models": ["priced", "mock"]}],
            # The mock counts words: "one two three four" is 4 tokens in, 5 out. At 1 and 2.5 micro-units
            # a token plus 3 a request, one such request costs 4 + 12.5 + 3 = 19.5 micro-units.
            "prices": {"priced": {"input": "1", "output": "2.5", "per_request": "0.000003"}},
        },
    )


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def call(gw: Gateway, method: str, path: str, key: str = MASTER_KEY, **kwargs: Any) -> httpx.Response:
    return httpx.request(method, gw.base_url + path, headers=bearer(key), timeout=10, **kwargs)


def new_user(gw: Gateway, name: str, role: str = "user", balance: int = 0) -> dict[str, Any]:
    made = call(gw, "POST", "/admin/api/users", json={"name": name, "role": role})
    assert made.status_code == 201, made.text
    if balance:
        topped = call(gw, "POST", f"/admin/api/users/{made.json()['id']}/topup", json={"amount": balance})
        assert topped.status_code == 200, topped.text
    return made.json()  # type: ignore[no-any-return]


def new_key(gw: Gateway, key: str = MASTER_KEY, **fields: Any) -> dict[str, Any]:
    made = call(gw, "POST", "/admin/api/keys", key, json=fields)
    assert made.status_code == 201, made.text
    return made.json()  # type: ignore[no-any-return]


def new_group(gw: Gateway, name: str, multiplier: str) -> str:
    made = call(gw, "POST", "/admin/api/groups", json={"name": name, "multiplier": multiplier})
    assert made.status_code == 201, made.text
    return str(made.json()["id"])


def costs_of(gw: Gateway, key_id: str) -> list[int]:
    time.sleep(0.3)  # the background writer flushes every 0.05 s
    return [r["cost"] for r in gw.usage() if r["key_id"] == key_id and r["status"] == 200]


def chat(gw: Gateway, key: str, model: str = "priced") -> str:
    api = openai.OpenAI(base_url=gw.base_url + "/v1", api_key=key, max_retries=0, timeout=10)
    raw = api.chat.completions.with_raw_response.create(model=model, messages=WORDS, max_tokens=5)  # type: ignore[arg-type]
    return str(raw.headers["x-request-id"])


# --- self-service keys ----------------------------------------------------------------------------


def test_a_users_key_manages_only_its_own_keys(gw: Gateway) -> None:
    alice, bob = new_user(gw, "alice"), new_user(gw, "bob")
    alice_key = new_key(gw, user_id=alice["id"], name="alice-main")["key"]
    bobs = new_key(gw, user_id=bob["id"], name="bob-main")

    made = new_key(gw, alice_key, name="alice-ci")  # user_id forced to the caller's user
    assert made["user_id"] == alice["id"] and made["key"].startswith("sk-or-")
    assert new_key(gw, alice_key, user_id=alice["id"])["user_id"] == alice["id"]
    for body in ({"user_id": bob["id"]}, {"price_multiplier": "0"}):
        refused = call(gw, "POST", "/admin/api/keys", alice_key, json=body)
        assert refused.status_code == 403, (body, refused.text)
    listed = call(gw, "GET", "/admin/api/keys", alice_key, params={"user_id": bob["id"]}).json()["data"]
    assert listed and {k["user_id"] for k in listed} == {alice["id"]}
    # Another user's key is absent to it: read, change, revoke all answer 404.
    for method, change in (("GET", None), ("PATCH", {"name": "mine"}), ("DELETE", None)):
        resp = call(gw, method, f"/admin/api/keys/{bobs['id']}", alice_key, json=change)
        assert resp.status_code == 404, (method, resp.text)
    assert call(gw, "GET", f"/admin/api/keys/{bobs['id']}").json()["status"] == "active"
    # Its own key: readable and changeable, not to another user and not its price.
    own = f"/admin/api/keys/{made['id']}"
    assert call(gw, "PATCH", own, alice_key, json={"rpm": 9}).json()["rpm"] == 9
    assert call(gw, "PATCH", own, alice_key, json={"user_id": bob["id"]}).status_code == 403
    assert call(gw, "PATCH", own, alice_key, json={"price_multiplier": "0.1"}).status_code == 403
    assert call(gw, "DELETE", own, alice_key).json()["status"] == "disabled"
    # Admin-only endpoints: 403.
    for method, path in (
        ("GET", "/admin/api/users"),
        ("POST", "/admin/api/users"),
        ("GET", f"/admin/api/users/{alice['id']}"),
        ("POST", f"/admin/api/users/{alice['id']}/topup"),
        ("GET", f"/admin/api/users/{alice['id']}/ledger"),
        ("PATCH", f"/admin/api/users/{alice['id']}"),
        ("GET", "/admin/api/redemption-codes"),
        ("POST", "/admin/api/redemption-codes"),
        ("GET", "/admin/deployments"),
    ):
        resp = call(gw, method, path, alice_key, json={} if method in ("POST", "PATCH") else None)
        assert resp.status_code == 403, (method, path, resp.text)
        assert resp.json()["error"]["code"] == "admin_required"


def test_a_key_without_a_user_may_not_use_the_admin_api(gw: Gateway) -> None:
    loose = new_key(gw)["key"]
    for path in ("/admin/api/keys", "/admin/api/me", "/admin/api/users"):
        assert call(gw, "GET", path, loose).status_code == 403, path


def test_an_admin_users_key_calls_admin_endpoints(gw: Gateway) -> None:
    boss = new_user(gw, "boss", role="admin")
    boss_key = new_key(gw, user_id=boss["id"])["key"]
    other = new_user(gw, "carol")
    others = new_key(gw, user_id=other["id"])
    assert call(gw, "GET", "/admin/api/users", boss_key).status_code == 200
    assert call(gw, "GET", f"/admin/api/keys/{others['id']}", boss_key).status_code == 200
    assert call(gw, "POST", "/admin/api/keys", boss_key, json={"user_id": other["id"]}).status_code == 201
    minted = call(gw, "POST", "/admin/api/redemption-codes", boss_key, json={"value": 5})
    assert minted.status_code == 201
    topped = call(gw, "POST", f"/admin/api/users/{other['id']}/topup", boss_key, json={"amount": 7})
    assert topped.json()["balance"] == 7


# --- me -------------------------------------------------------------------------------------------


def test_me_and_my_ledger(gw: Gateway) -> None:
    dave = new_user(gw, "dave", balance=1000)
    key = new_key(gw, user_id=dave["id"])["key"]
    call(gw, "POST", f"/admin/api/users/{dave['id']}/topup", json={"amount": 500, "note": "second"})
    chat(gw, key)
    me = call(gw, "GET", "/admin/api/me", key).json()
    assert me["id"] == dave["id"] and me["role"] == "user" and me["group"] is None
    assert me["balance"] == 1500 - 20 and me["key"]["effective_multiplier"] == "1"
    time.sleep(0.3)  # the charge reaches the ledger in the background
    page = call(gw, "GET", "/admin/api/me/ledger", key, params={"limit": 2}).json()
    assert [e["kind"] for e in page["data"]] == ["charge", "topup"] and page["limit"] == 2
    assert page["data"][0]["amount"] == -20 and page["data"][1]["note"] == "second"
    rest = call(gw, "GET", "/admin/api/me/ledger", key, params={"limit": 2, "offset": 2}).json()["data"]
    assert [e["amount"] for e in rest] == [1000]
    assert call(gw, "GET", f"/admin/api/users/{dave['id']}/ledger").json()["data"][0]["kind"] == "charge"
    master_me = call(gw, "GET", "/admin/api/me")
    assert master_me.status_code == 404 and master_me.json()["error"]["code"] == "no_user"


# --- redemption codes ------------------------------------------------------------------------------


def test_codes_are_shown_once_and_redeem_into_the_wallet(gw: Gateway) -> None:
    erin = new_user(gw, "erin")
    key = new_key(gw, user_id=erin["id"])["key"]
    api = openai.OpenAI(base_url=gw.base_url + "/v1", api_key=key, max_retries=0, timeout=10)
    with pytest.raises(openai.RateLimitError) as info:  # a balance of 0: refused
        api.chat.completions.create(model="priced", messages=WORDS, max_tokens=5)  # type: ignore[arg-type]
    assert info.value.code == "insufficient_quota"

    minted = call(
        gw, "POST", "/admin/api/redemption-codes", json={"count": 3, "value": 1000, "batch": "promo"}
    ).json()
    codes = minted["codes"]
    assert len(codes) == 3 == len(set(codes)) and minted["batch"] == "promo"
    listed = call(gw, "GET", "/admin/api/redemption-codes", params={"batch": "promo"})
    assert len(listed.json()["data"]) == 3 and {c["status"] for c in listed.json()["data"]} == {"active"}
    assert not any(code in listed.text for code in codes)
    assert not any(code.encode() in (gw.data_dir / "omnirelay.db").read_bytes() for code in codes)

    redeemed = call(gw, "POST", "/admin/api/me/redeem", key, json={"code": codes[0]})
    assert redeemed.status_code == 200 and redeemed.json() == {
        "object": "redemption",
        "amount": 1000,
        "balance": 1000,
    }
    api.chat.completions.create(model="priced", messages=WORDS, max_tokens=5)  # type: ignore[arg-type]
    again = call(gw, "POST", "/admin/api/me/redeem", key, json={"code": codes[0]})
    assert again.status_code == 400 and again.json()["error"]["code"] == "redemption_code_redeemed"
    assert codes[0] not in again.text
    unknown = call(gw, "POST", "/admin/api/me/redeem", key, json={"code": "rc-" + "x" * 24})
    assert unknown.json()["error"]["code"] == "redemption_code_invalid"
    past = call(
        gw,
        "POST",
        "/admin/api/redemption-codes",
        json={"value": 5, "expires_at": "2020-01-01T00:00:00Z"},
    ).json()["codes"][0]
    expired = call(gw, "POST", "/admin/api/me/redeem", key, json={"code": past})
    assert expired.json()["error"]["code"] == "redemption_code_expired"
    after = call(gw, "GET", "/admin/api/redemption-codes", params={"batch": "promo"}).json()["data"]
    assert sorted(c["status"] for c in after) == ["active", "active", "redeemed"]
    assert call(gw, "POST", "/admin/api/me/redeem", json={"code": codes[1]}).status_code == 404  # master


def test_twenty_parallel_redemptions_of_one_code_succeed_once(gw: Gateway) -> None:
    users = [new_user(gw, f"racer-{i}") for i in range(5)]
    keys = [new_key(gw, user_id=u["id"])["key"] for u in users]
    code = call(gw, "POST", "/admin/api/redemption-codes", json={"value": 777}).json()["codes"][0]

    async def race() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=gw.base_url, timeout=20) as client:
            return list(
                await asyncio.gather(
                    *(
                        client.post("/admin/api/me/redeem", json={"code": code}, headers=bearer(keys[i % 5]))
                        for i in range(20)
                    )
                )
            )

    results = asyncio.run(race())
    assert sorted(r.status_code for r in results) == [200] + [400] * 19
    assert {r.json()["error"]["code"] for r in results if r.status_code == 400} == {
        "redemption_code_redeemed"
    }
    balances = [call(gw, "GET", f"/admin/api/users/{u['id']}").json()["balance"] for u in users]
    assert sorted(balances) == [0, 0, 0, 0, 777]


# --- user administration ---------------------------------------------------------------------------


def test_list_patch_and_disable_users(gw: Gateway) -> None:
    gold = new_group(gw, "gold", "0.5")
    frank = new_user(gw, "frank", balance=10_000)
    key = new_key(gw, user_id=frank["id"])["key"]
    patched = call(gw, "PATCH", f"/admin/api/users/{frank['id']}", json={"group_id": gold, "name": "franky"})
    assert patched.status_code == 200 and patched.json()["group_id"] == gold
    assert patched.json()["name"] == "franky"
    in_gold = call(gw, "GET", "/admin/api/users", params={"group_id": gold}).json()["data"]
    assert [u["id"] for u in in_gold] == [frank["id"]]
    assert len(call(gw, "GET", "/admin/api/users", params={"limit": 1}).json()["data"]) == 1
    for body, code in (
        ({"group_id": "no-such-group"}, "group_not_found"),
        ({"role": "owner"}, "invalid_value"),
        ({"name": "alice"}, "duplicate_name"),
        ({"balance": 5}, "invalid_value"),
    ):
        resp = call(gw, "PATCH", f"/admin/api/users/{frank['id']}", json=body)
        assert resp.status_code == 400 and resp.json()["error"]["code"] == code, (body, resp.text)
    assert call(gw, "PATCH", "/admin/api/users/usr_missing", json={}).status_code == 404
    me = call(gw, "GET", "/admin/api/me", key).json()
    assert me["group"] == {"id": gold, "name": "gold", "multiplier": "0.5"}

    chat(gw, key)
    assert (
        call(gw, "PATCH", f"/admin/api/users/{frank['id']}", json={"status": "disabled"}).status_code == 200
    )
    with pytest.raises(openai.AuthenticationError) as info:  # at once, not after a cache expiry
        chat(gw, key)
    assert info.value.code == "user_disabled"
    call(gw, "PATCH", f"/admin/api/users/{frank['id']}", json={"status": "active"})
    chat(gw, key)


# --- multipliers and 402 ---------------------------------------------------------------------------


def test_group_and_key_multipliers_apply_exactly_once(gw: Gateway) -> None:
    reseller = new_group(gw, "reseller", "1.5")
    grace = new_user(gw, "grace", balance=1_000_000)
    call(gw, "PATCH", f"/admin/api/users/{grace['id']}", json={"group_id": reseller})
    plain = new_key(gw, user_id=grace["id"])
    doubled = new_key(gw, user_id=grace["id"], price_multiplier="2")
    assert doubled["price_multiplier"] == "2"
    bad = call(gw, "POST", "/admin/api/keys", json={"price_multiplier": 1.5})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "price_multiplier"
    assert call(gw, "POST", "/admin/api/keys", json={"price_multiplier": "-1"}).status_code == 400
    chat(gw, plain["key"])
    chat(gw, doubled["key"])
    assert costs_of(gw, plain["id"]) == [29]  # 19.5 x 1.5 = 29.25 → 29
    assert costs_of(gw, doubled["id"]) == [59]  # 19.5 x 1.5 x 2 = 58.5 → 59 (one rounding)
    me = call(gw, "GET", "/admin/api/me", doubled["key"]).json()
    assert me["key"] == {"id": doubled["id"], "price_multiplier": "2", "effective_multiplier": "3"}
    assert me["balance"] == 1_000_000 - 29 - 59
    # A changed group multiplier applies to the very next request (no cache delay).
    assert call(gw, "PATCH", f"/admin/api/groups/{reseller}", json={"multiplier": "1"}).status_code == 200
    chat(gw, plain["key"])
    assert costs_of(gw, plain["id"]) == [29, 20]  # 19.5 → 20
    # A key without a user: its own multiplier only.
    master = new_key(gw, price_multiplier="0.5")
    chat(gw, master["key"])
    assert costs_of(gw, master["id"]) == [10]  # 9.75 → 10


def test_a_burst_cannot_overspend_a_multiplied_balance(gw: Gateway) -> None:
    premium = new_group(gw, "premium", "2.5")
    heidi = new_user(gw, "heidi", balance=600)
    call(gw, "PATCH", f"/admin/api/users/{heidi['id']}", json={"group_id": premium})
    key = new_key(gw, user_id=heidi["id"], price_multiplier="1.25")
    api = openai.AsyncOpenAI(base_url=gw.base_url + "/v1", api_key=key["key"], max_retries=0, timeout=10)

    async def one(i: int) -> str:
        try:
            await api.chat.completions.create(
                model="priced", max_tokens=8, messages=[{"role": "user", "content": f"burst {i}"}]
            )
        except openai.RateLimitError as exc:
            assert exc.code == "insufficient_quota"
            return "refused"
        return "ok"

    async def burst() -> list[str]:
        return list(await asyncio.gather(*(one(i) for i in range(40))))

    outcomes = asyncio.run(burst())
    costs = costs_of(gw, key["id"])
    assert outcomes.count("ok") == len(costs) >= 1 and "refused" in outcomes
    balance = call(gw, "GET", f"/admin/api/users/{heidi['id']}").json()["balance"]
    assert sum(costs) <= 600 and balance == 600 - sum(costs) >= 0


def test_anthropic_clients_get_402_billing_error_when_out_of_credit(gw: Gateway) -> None:
    ivan = new_user(gw, "ivan")
    key = new_key(gw, user_id=ivan["id"])["key"]
    api = anthropic.Anthropic(base_url=gw.base_url, api_key=key, max_retries=0, timeout=10)
    with pytest.raises(anthropic.PaymentRequiredError) as info:
        api.messages.create(model="priced", max_tokens=5, messages=[{"role": "user", "content": "hi"}])
    assert info.value.status_code == 402
    assert info.value.body["error"]["type"] == "billing_error"  # type: ignore[index]
    assert "balance" in info.value.message
    record = gw.usage(info.value.response.headers["x-request-id"])[0]
    assert record["status"] == 402  # the usage record says what the client saw
    quota_key = new_key(gw, quota=1)["key"]  # a key quota too small for any request
    capped = anthropic.Anthropic(base_url=gw.base_url, api_key=quota_key, max_retries=0, timeout=10)
    with pytest.raises(anthropic.PaymentRequiredError):
        capped.messages.create(model="priced", max_tokens=5, messages=[{"role": "user", "content": "hi"}])


def test_responses_match_the_documented_schemas(gw: Gateway) -> None:
    import schemathesis

    from omnirelay.admin.openapi import openapi_document
    from omnirelay.app import ADMIN_ROUTES

    schema = schemathesis.openapi.from_dict(openapi_document(ADMIN_ROUTES))
    judy = new_user(gw, "judy", balance=50)
    key = new_key(gw, user_id=judy["id"])["key"]
    minted = call(gw, "POST", "/admin/api/redemption-codes", json={"count": 2, "value": 3})
    checks = [
        ("POST", "/admin/api/redemption-codes", minted),
        ("GET", "/admin/api/redemption-codes", call(gw, "GET", "/admin/api/redemption-codes")),
        (
            "POST",
            "/admin/api/me/redeem",
            call(gw, "POST", "/admin/api/me/redeem", key, json={"code": minted.json()["codes"][0]}),
        ),
        ("POST", "/admin/api/me/redeem", call(gw, "POST", "/admin/api/me/redeem", key, json={"code": "x"})),
        ("GET", "/admin/api/me", call(gw, "GET", "/admin/api/me", key)),
        ("GET", "/admin/api/me/ledger", call(gw, "GET", "/admin/api/me/ledger", key)),
        ("GET", "/admin/api/users", call(gw, "GET", "/admin/api/users")),
        ("PATCH", "/admin/api/users/{user_id}", call(gw, "PATCH", f"/admin/api/users/{judy['id']}", json={})),
        (
            "GET",
            "/admin/api/users/{user_id}/ledger",
            call(gw, "GET", f"/admin/api/users/{judy['id']}/ledger"),
        ),
        ("GET", "/admin/api/keys", call(gw, "GET", "/admin/api/keys", key)),
    ]
    for method, path, resp in checks:
        assert resp.status_code < 500, (method, path, resp.text)
        schema[path][method].validate_response(resp)


# --- deleting: users are disabled, groups only when empty, codes voided ----------------------------


def test_delete_disables_a_user_and_stops_its_keys_at_once(gw: Gateway) -> None:
    kim = new_user(gw, "kim", balance=10_000)
    key = new_key(gw, user_id=kim["id"])["key"]
    chat(gw, key)
    gone = call(gw, "DELETE", f"/admin/api/users/{kim['id']}")
    assert gone.status_code == 200 and gone.json()["status"] == "disabled"
    api = openai.OpenAI(base_url=gw.base_url + "/v1", api_key=key, max_retries=0, timeout=10)
    with pytest.raises(openai.AuthenticationError) as info:
        api.chat.completions.create(model="priced", messages=WORDS)  # type: ignore[arg-type]
    assert info.value.code == "user_disabled"
    ledger = call(gw, "GET", f"/admin/api/users/{kim['id']}/ledger").json()["data"]
    assert {e["kind"] for e in ledger} == {"topup", "charge"}  # the history stays


def test_a_group_is_deleted_only_when_no_user_belongs_to_it(gw: Gateway) -> None:
    team = new_group(gw, "team-to-delete", "0.9")
    lee = new_user(gw, "lee")
    call(gw, "PATCH", f"/admin/api/users/{lee['id']}", json={"group_id": team})
    refused = call(gw, "DELETE", f"/admin/api/groups/{team}")
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "group_in_use"
    call(gw, "PATCH", f"/admin/api/users/{lee['id']}", json={"group_id": None})
    assert call(gw, "DELETE", f"/admin/api/groups/{team}").status_code == 200
    assert call(gw, "GET", f"/admin/api/groups/{team}").status_code == 404
    assert call(gw, "DELETE", f"/admin/api/groups/{team}").status_code == 404


def test_a_voided_code_cannot_be_redeemed(gw: Gateway) -> None:
    mia = new_user(gw, "mia")
    key = new_key(gw, user_id=mia["id"])["key"]
    made = call(gw, "POST", "/admin/api/redemption-codes", json={"count": 2, "value": 7, "batch": "void-me"})
    first, second = made.json()["codes"]
    listed = call(gw, "GET", "/admin/api/redemption-codes", params={"batch": "void-me"}).json()["data"]
    assert {c["code_hash"] for c in listed} == {hash_code(first), hash_code(second)}  # never the codes
    assert call(gw, "POST", "/admin/api/me/redeem", key, json={"code": second}).status_code == 200

    voided = call(gw, "DELETE", f"/admin/api/redemption-codes/{hash_code(first)}")
    assert voided.status_code == 200 and voided.json()["status"] == "expired"
    refused = call(gw, "POST", "/admin/api/me/redeem", key, json={"code": first})
    assert refused.status_code == 400 and "expired" in refused.json()["error"]["code"]
    again = call(gw, "DELETE", f"/admin/api/redemption-codes/{hash_code(second)}")
    assert again.status_code == 400 and again.json()["error"]["code"] == "redemption_code_redeemed"
    assert call(gw, "DELETE", "/admin/api/redemption-codes/" + "0" * 64).status_code == 404
    assert call(gw, "GET", "/admin/api/me", key).json()["balance"] == 7


def test_a_key_past_its_expiry_is_listed_as_expired(gw: Gateway) -> None:
    key = new_key(gw, expires_at="2020-01-01T00:00:00Z")
    assert key["status"] == "expired"
    assert call(gw, "GET", f"/admin/api/keys/{key['id']}").json()["status"] == "expired"


def test_a_user_may_tighten_its_keys_but_not_undo_an_admins_limits(gw: Gateway) -> None:
    nora = new_user(gw, "nora")
    own = new_key(gw, user_id=nora["id"])["key"]
    limited = new_key(
        gw,
        user_id=nora["id"],
        quota=1000,
        rpm=10,
        allowed_models=["priced"],
        expires_at="2099-01-01T00:00:00Z",
    )
    path = f"/admin/api/keys/{limited['id']}"
    for change in (
        {"quota": None},
        {"quota": 5000},
        {"rpm": 11},
        {"allowed_models": None},
        {"allowed_models": ["priced", "mock"]},
        {"expires_at": None},
        {"expires_at": "2100-01-01T00:00:00Z"},
    ):
        refused = call(gw, "PATCH", path, own, json=change)
        assert refused.status_code == 403, change
        assert refused.json()["error"]["param"] == next(iter(change))
    tightened = call(
        gw,
        "PATCH",
        path,
        own,
        json={"quota": 500, "rpm": 5, "expires_at": "2098-01-01T00:00:00Z", "tpm": 100},
    )
    assert tightened.status_code == 200, tightened.text
    assert (tightened.json()["quota"], tightened.json()["rpm"], tightened.json()["tpm"]) == (500, 5, 100)
    # A key an admin revoked stays revoked; the user may disable, not re-enable.
    assert call(gw, "DELETE", path).status_code == 200
    assert call(gw, "PATCH", path, own, json={"status": "active"}).status_code == 403
    assert call(gw, "PATCH", path, own, json={"status": "disabled"}).status_code == 200
    assert call(gw, "PATCH", path, json={"status": "active"}).json()["status"] == "active"  # the admin may


def test_a_user_holds_a_bounded_number_of_keys(gw: Gateway) -> None:
    olga = new_user(gw, "olga")
    own = new_key(gw, user_id=olga["id"])
    cap = gw.runtime.config.billing.max_keys_per_user
    made = [call(gw, "POST", "/admin/api/keys", own["key"], json={}) for _ in range(cap - 1)]
    assert all(r.status_code == 201 for r in made)
    refused = call(gw, "POST", "/admin/api/keys", own["key"], json={})
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "too_many_keys"
    assert call(gw, "DELETE", f"/admin/api/keys/{made[0].json()['id']}", own["key"]).status_code == 200
    assert call(gw, "POST", "/admin/api/keys", own["key"], json={}).status_code == 201


def test_an_empty_user_id_is_refused(gw: Gateway) -> None:
    refused = call(gw, "POST", "/admin/api/keys", json={"user_id": ""})
    assert refused.status_code == 400 and refused.json()["error"]["param"] == "user_id"
    key = new_key(gw)
    patched = call(gw, "PATCH", f"/admin/api/keys/{key['id']}", json={"user_id": ""})
    assert patched.status_code == 400


def test_counting_tokens_needs_no_balance(gw: Gateway) -> None:
    pia = new_user(gw, "pia")  # balance 0
    key = new_key(gw, user_id=pia["id"])["key"]
    api = anthropic.Anthropic(base_url=gw.base_url, api_key=key, max_retries=0, timeout=10)
    counted = api.messages.count_tokens(model="priced", messages=[{"role": "user", "content": "hi"}])
    assert counted.input_tokens > 0
    gemini = httpx.post(
        f"{gw.base_url}/v1beta/models/priced:countTokens",
        json={"contents": [{"role": "user", "parts": [{"text": "hi"}]}]},
        headers={"x-goog-api-key": key},
        timeout=10,
    )
    assert gemini.status_code == 200 and gemini.json()["totalTokens"] > 0
    with pytest.raises(anthropic.PaymentRequiredError):
        api.messages.create(model="priced", max_tokens=5, messages=[{"role": "user", "content": "hi"}])


def test_a_key_cannot_mint_a_key_wider_than_itself(gw: Gateway) -> None:
    quinn = new_user(gw, "quinn")
    limited = new_key(
        gw, user_id=quinn["id"], allowed_models=["priced"], rpm=10, expires_at="2099-01-01T00:00:00Z"
    )["key"]
    child = call(gw, "POST", "/admin/api/keys", limited, json={"name": "child"})
    assert child.status_code == 201, child.text
    made = child.json()
    assert (made["allowed_models"], made["rpm"], made["expires_at"]) == (
        ["priced"],
        10,
        "2099-01-01T00:00:00Z",
    )
    for wider in (
        {"allowed_models": ["priced", "mock"]},
        {"rpm": 20},
        {"expires_at": "2100-01-01T00:00:00Z"},
    ):
        refused = call(gw, "POST", "/admin/api/keys", limited, json=wider)
        assert refused.status_code == 403, wider
    narrower = call(gw, "POST", "/admin/api/keys", limited, json={"rpm": 5, "allowed_ips": ["10.0.0.0/8"]})
    assert narrower.status_code == 201 and narrower.json()["rpm"] == 5


def test_the_key_cap_counts_active_keys_and_holds_under_concurrency(gw: Gateway) -> None:
    rosa = new_user(gw, "rosa")
    own = new_key(gw, user_id=rosa["id"])["key"]
    cap = gw.runtime.config.billing.max_keys_per_user
    first = [call(gw, "POST", "/admin/api/keys", own, json={}).json()["id"] for _ in range(5)]
    for key_id in first[:3]:  # revoked keys free their places
        assert call(gw, "DELETE", f"/admin/api/keys/{key_id}", own).status_code == 200

    async def burst() -> list[int]:
        async with httpx.AsyncClient(base_url=gw.base_url, headers=bearer(own), timeout=20) as client:
            answers = await asyncio.gather(*(client.post("/admin/api/keys", json={}) for _ in range(cap)))
        return [a.status_code for a in answers]

    statuses = asyncio.run(burst())
    listed = call(gw, "GET", "/admin/api/keys", own, params={"limit": 1000}).json()["data"]
    active = [k for k in listed if k["status"] == "active"]
    assert len(active) == cap and statuses.count(403) == 3  # 3 were active before the burst
