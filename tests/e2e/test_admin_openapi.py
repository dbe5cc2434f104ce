"""The admin API's OpenAPI document: valid OpenAPI 3.1, covering every admin route, and accurate enough
for schemathesis to drive every operation against a running gateway without a single 500.

Schemathesis runs against a gateway of its own (same config as the shared `gateway` fixture): it creates
keys by the dozen, and a key with an out-of-range expiry would break key listing for every later test."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from openapi_spec_validator import validate
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error

from omnirelay.admin.openapi import OPERATIONS, openapi_document
from omnirelay.app import ADMIN_ROUTES, create_app
from tests.conftest import MASTER_KEY, Gateway, gateway_config
from tests.fakes import FakeState, ServerThread
from tests.fakes.anthropic_upstream import FakeAnthropicState
from tests.fakes.gemini_upstream import FakeGeminiState

ADMIN = {"Authorization": f"Bearer {MASTER_KEY}"}
DOCUMENT = openapi_document(ADMIN_ROUTES)
SCHEMA = schemathesis.openapi.from_dict(DOCUMENT)
MAX_EXAMPLES = 25


@pytest.fixture(scope="module")
def admin_gateway(
    fake: FakeState,
    anthropic_fake: FakeAnthropicState,
    gemini_fake: FakeGeminiState,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Gateway]:
    data_dir = tmp_path_factory.mktemp("admin-openapi-gateway")
    config = gateway_config(fake.base_url, anthropic_fake.base_url, gemini_fake.base_url)  # type: ignore[attr-defined]
    with ServerThread(create_app(config, data_dir), lifespan="on") as server:
        yield Gateway(server, data_dir)


def _openapi_path(path: str) -> str:
    return re.sub(r"\{(\w+)(?::\w+)?\}", r"{\1}", path)


def test_document_is_valid_openapi_3_1() -> None:
    assert DOCUMENT["openapi"].startswith("3.1")
    validate(DOCUMENT)  # openapi-spec-validator picks the 3.1 validator from the version field
    assert DOCUMENT["info"]["title"] == "OmniRelay admin API"
    assert DOCUMENT["components"]["securitySchemes"]["masterKey"] == {
        "type": "http",
        "scheme": "bearer",
        "description": "The master key or a gateway key (see the document description).",
    }
    assert DOCUMENT["security"] == [{"masterKey": []}]
    for name in ("KeyCreate", "KeyUpdate", "Key", "KeyWithSecret", "KeyList", "DeploymentList", "Error"):
        assert name in DOCUMENT["components"]["schemas"], name


def test_every_admin_route_is_documented_by_a_table_row() -> None:
    operation_ids = []
    for method, path, _name, _handler in ADMIN_ROUTES:
        assert (method, path) in OPERATIONS, f"add a row for {method} {path} to admin/openapi.py OPERATIONS"
        op = DOCUMENT["paths"][_openapi_path(path)][method.lower()]
        assert "x-omnirelay-generic" not in op
        operation_ids.append(op["operationId"])
        declared = {p["name"] for p in op.get("parameters", []) if p["in"] == "path"}
        assert declared == set(re.findall(r"\{(\w+)", path))
        assert "401" in op["responses"] and "403" in op["responses"]
    assert len(operation_ids) == len(set(operation_ids))
    keys = DOCUMENT["paths"]["/admin/api/keys"]
    assert keys["post"]["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/KeyCreate"
    }
    assert keys["post"]["responses"]["201"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/KeyWithSecret"
    }
    assert {p["name"] for p in keys["get"]["parameters"]} == {"limit", "offset", "user_id"}


def test_a_route_without_a_table_row_is_listed_with_a_generic_response() -> None:
    doc = openapi_document([*ADMIN_ROUTES, ("POST", "/admin/things/{thing_id}", "admin.things", None)])
    validate(doc)
    op = doc["paths"]["/admin/things/{thing_id}"]["post"]
    assert op["x-omnirelay-generic"] is True and "200" in op["responses"]
    assert op["parameters"][0]["name"] == "thing_id"


def test_real_responses_match_the_documented_schemas(gateway: Gateway) -> None:
    """The documented response schemas are not just valid, they describe what the handlers return."""
    base = gateway.base_url
    made = httpx.post(base + "/admin/api/keys", json={"name": "openapi"}, headers=ADMIN, timeout=10)
    checks: list[tuple[str, str, httpx.Response]] = [
        ("POST", "/admin/api/keys", made),
        ("GET", "/admin/api/keys", httpx.get(base + "/admin/api/keys", headers=ADMIN, timeout=10)),
        ("GET", "/admin/deployments", httpx.get(base + "/admin/deployments", headers=ADMIN, timeout=10)),
        (
            "PATCH",
            "/admin/api/keys/{key_id}",
            httpx.patch(
                f"{base}/admin/api/keys/{made.json()['id']}", json={"rpm": 5}, headers=ADMIN, timeout=10
            ),
        ),
        ("GET", "/admin/api/keys/{key_id}", httpx.get(f"{base}/admin/api/keys/nope", headers=ADMIN)),
        ("GET", "/admin/api/keys", httpx.get(base + "/admin/api/keys")),
    ]
    for method, path, resp in checks:
        SCHEMA[path][method].validate_response(resp)


def _no_server_error(gateway: Gateway, method: str, path: str) -> None:
    operation = SCHEMA[path][method]
    cases = st.one_of(
        operation.as_strategy(GenerationMode.POSITIVE), operation.as_strategy(GenerationMode.NEGATIVE)
    )

    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=cases)
    def run(case: Any) -> None:
        response = case.call(base_url=gateway.base_url, headers=ADMIN, timeout=10)
        case.validate_response(response, checks=[not_a_server_error])

    run()


# Operations where schemathesis found a real 500 (src/ is not this test's to fix; reported to its owner).
KNOWN_500: dict[tuple[str, str], str] = {}  # (method, path) → the 500 it still gives; none today

OPERATIONS_UNDER_TEST = [
    pytest.param(
        method,
        _openapi_path(path),
        id=f"{method} {_openapi_path(path)}",
        marks=[pytest.mark.xfail(strict=True, reason=KNOWN_500[(method, path)])]
        if (method, path) in KNOWN_500
        else [],
    )
    for method, path, _name, _handler in ADMIN_ROUTES
]


@pytest.mark.timeout(60)
@pytest.mark.parametrize(("method", "path"), OPERATIONS_UNDER_TEST)
def test_schemathesis_finds_no_server_error(admin_gateway: Gateway, method: str, path: str) -> None:
    started = time.monotonic()
    _no_server_error(admin_gateway, method, path)
    assert time.monotonic() - started < 30


BIG = 2**63  # one past SQLite's INTEGER range
# 500s found by hand (the same classes of input schemathesis generates, just not within 25 examples).
HAND_FOUND_500 = [
    pytest.param("POST", "/admin/api/keys", {"quota": BIG}, id="create-quota-2**63"),
    pytest.param("POST", "/admin/api/keys", {"rpm": BIG}, id="create-rpm-2**63"),
    pytest.param("PATCH", "/admin/api/keys/{id}", {"tpm": BIG}, id="update-tpm-2**63"),
    pytest.param(
        "POST", "/admin/api/keys", {"expires_at": "9999-12-31T23:59:59-23:59"}, id="create-expiry-year-10000"
    ),
]


@pytest.mark.parametrize(("method", "path", "body"), HAND_FOUND_500)
def test_out_of_range_key_fields_are_400_not_500(
    admin_gateway: Gateway, method: str, path: str, body: dict[str, Any]
) -> None:
    base = admin_gateway.base_url
    if "{id}" in path:
        made = httpx.post(base + "/admin/api/keys", json={}, headers=ADMIN, timeout=10).json()
        path = path.replace("{id}", made["id"])
    resp = httpx.request(method, base + path, json=body, headers=ADMIN, timeout=10)
    assert resp.status_code == 400, resp.text
