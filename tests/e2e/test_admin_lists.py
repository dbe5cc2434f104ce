"""Every paginated admin list reads `limit` and `offset` alike and answers alike."""

from __future__ import annotations

import httpx
import pytest

from tests.conftest import MASTER_KEY, Gateway

ADMIN = {"Authorization": f"Bearer {MASTER_KEY}"}
LISTS = [
    "/admin/api/keys",
    "/admin/api/users",
    "/admin/api/groups",
    "/admin/api/redemption-codes",
    "/admin/api/logs",
    "/admin/api/ip-audit",
]


@pytest.mark.parametrize("path", LISTS)
def test_lists_page_and_refuse_bad_parameters_alike(gateway: Gateway, path: str) -> None:
    url = gateway.base_url + path
    page = httpx.get(url, params={"limit": 5000, "offset": -3}, headers=ADMIN, timeout=10)
    assert page.status_code == 200, page.text
    body = page.json()
    assert (body["object"], body["limit"], body["offset"]) == ("list", 1000, 0)
    assert isinstance(body["data"], list)
    for name in ("limit", "offset"):
        bad = httpx.get(url, params={name: "many"}, headers=ADMIN, timeout=10)
        assert bad.status_code == 400
        error = bad.json()["error"]
        assert (error["param"], error["code"]) == (name, "invalid_value")
        assert error["type"] == "invalid_request_error"
        assert name in error["message"]
