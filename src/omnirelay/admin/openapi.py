"""An OpenAPI 3.1 document for the admin API, built from the admin route table.

Each admin operation is one row of `OPERATIONS`, keyed by (method, path) as the path is written in
`omnirelay.app.ADMIN_ROUTES`; adding an admin route means adding one row here. A route that has no
row is still listed, with a generic 200 response and `x-omnirelay-generic: true`, so the document
never silently drops an endpoint (the tests insist that every route has a row)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from types import ModuleType
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

import omnirelay
from omnirelay.admin import channels as admin_channels
from omnirelay.admin import groups as admin_groups
from omnirelay.admin import me as admin_me
from omnirelay.admin import prices as admin_prices
from omnirelay.admin import redemption as admin_redemption
from omnirelay.admin import usage as admin_usage
from omnirelay.admin import users as admin_users
from omnirelay.admin.keys import KeyFields, KeyUpdate
from omnirelay.admin.spec import Operation, QueryParam, model_schema, nullable, ref
from omnirelay.admin.users import TopUp, UserCreate
from omnirelay.call import Call
from omnirelay.runtime import Runtime
from omnirelay.transport import json

OPENAPI_VERSION = "3.1.0"
TITLE = "OmniRelay admin API"
SECURITY_SCHEME = "masterKey"


_KEY_LIST_QUERY = (
    QueryParam(
        "limit",
        {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100},
        "Page size (values outside 1..1000 are clamped).",
    ),
    QueryParam("offset", {"type": "integer", "minimum": 0, "default": 0}, "Keys to skip."),
    QueryParam("user_id", {"type": "string"}, "Only keys of this user."),
)

OPERATIONS: dict[tuple[str, str], Operation] = {
    ("GET", "/admin/deployments"): Operation(
        "listDeployments",
        "Every deployment's health, cool-down, usage against limits, breaker state and last error.",
        "deployments",
        "DeploymentList",
    ),
    ("POST", "/admin/deployments/{dep_id:path}/enable"): Operation(
        "enableDeployment",
        "Put a deployment back into rotation: clear its cool-down, invalid mark and breaker.",
        "deployments",
        "Deployment",
    ),
    ("POST", "/admin/deployments/{dep_id:path}/test"): Operation(
        "testDeployment", "Probe one deployment upstream now.", "deployments", "DeploymentProbe"
    ),
    ("POST", "/admin/providers/{name}/test"): Operation(
        "testProvider", "Probe every deployment of a provider now.", "deployments", "ProviderProbe"
    ),
    ("POST", "/admin/api/keys"): Operation(
        "createKey",
        "Create a gateway key. The secret (`key`) is returned once, only in this response.",
        "keys",
        "KeyWithSecret",
        status=201,
        body="KeyCreate",
    ),
    ("GET", "/admin/api/keys"): Operation(
        "listKeys", "List gateway keys in creation order.", "keys", "KeyList", query=_KEY_LIST_QUERY
    ),
    ("GET", "/admin/api/keys/{key_id}"): Operation("getKey", "Read one gateway key.", "keys", "Key"),
    ("PATCH", "/admin/api/keys/{key_id}"): Operation(
        "updateKey", "Change a key's fields; omitted fields are unchanged.", "keys", "Key", body="KeyUpdate"
    ),
    ("DELETE", "/admin/api/keys/{key_id}"): Operation(
        "revokeKey", "Revoke a key (its status becomes `disabled`).", "keys", "Key"
    ),
    ("POST", "/admin/api/users"): Operation(
        "createUser", "Create a user (balance 0).", "users", "User", status=201, body="UserCreate"
    ),
    ("GET", "/admin/api/users/{user_id}"): Operation(
        "getUser", "Read a user and its balance.", "users", "User"
    ),
    ("POST", "/admin/api/users/{user_id}/topup"): Operation(
        "topUpUser", "Add credit to a user's balance (a ledger entry).", "users", "User", body="TopUp"
    ),
    ("GET", "/admin/api/openapi.json"): Operation(
        "getOpenAPIDocument", "This OpenAPI document.", "meta", None
    ),
}

# Admin modules that describe their own operations: each has `OPERATIONS` and `schemas()`
# (see omnirelay.admin.spec). A new admin module is one import and one entry here.
EXTENSIONS: tuple[ModuleType, ...] = (
    admin_users,
    admin_me,
    admin_redemption,
    admin_usage,
    admin_channels,
    admin_prices,
    admin_groups,
)
for _module in EXTENSIONS:
    OPERATIONS.update(_module.OPERATIONS)

# Starlette's `{name}` / `{name:convertor}` placeholders.
_PARAM = re.compile(r"\{(\w+)(?::\w+)?\}")

_ERROR_DESCRIPTIONS = {
    400: "Invalid request (body, query or field value).",
    401: "Missing or unknown API key.",
    403: "The key is not the master key.",
    404: "No such object.",
    413: "The request body is too large.",
}


def _limits_object() -> dict[str, Any]:
    return {"type": "object", "additionalProperties": True}


def _probe_result() -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {
            "status": {"enum": ["healthy", "rate_limited", "invalid", "error"]},
            "detail": {"type": "string"},
            "checked_at": {"type": "number", "description": "Unix time."},
        },
        "required": ["status", "detail", "checked_at"],
    }


def component_schemas() -> dict[str, Any]:
    defs: dict[str, Any] = {}
    nullable_int = nullable({"type": "integer"})
    nullable_strings = nullable({"type": "array", "items": {"type": "string"}})
    key: dict[str, Any] = {
        "type": "object",
        "properties": {
            "id": {"type": "string"},
            "object": {"const": "api_key"},
            "prefix": {"type": "string", "description": "The start of the secret, for display."},
            "name": nullable({"type": "string"}),
            "user_id": nullable({"type": "string"}),
            "status": {"enum": ["active", "disabled", "expired"]},
            "created_at": {"type": "string", "format": "date-time"},
            "expires_at": nullable({"type": "string", "format": "date-time"}),
            "quota": {**nullable_int, "description": "Credits in micro-units; null = unlimited."},
            "allowed_models": nullable_strings,
            "allowed_ips": nullable_strings,
            "rpm": nullable_int,
            "rpd": nullable_int,
            "tpm": nullable_int,
            "metadata": {"type": "object", "additionalProperties": True},
            "log_bodies": {
                **nullable({"type": "boolean"}),
                "description": "Log this key's request/response bodies; null = the gateway's setting.",
            },
            "price_multiplier": {
                **nullable({"type": "string"}),
                "description": "Exact decimal, times the user's group multiplier; null = 1.",
            },
        },
        "required": [
            "id",
            "object",
            "prefix",
            "name",
            "user_id",
            "status",
            "created_at",
            "expires_at",
            "quota",
            "allowed_models",
            "allowed_ips",
            "rpm",
            "rpd",
            "tpm",
            "metadata",
        ],
    }
    deployment: dict[str, Any] = {
        "type": "object",
        "properties": {
            "id": {"type": "string"},
            "provider": {"type": "string"},
            "model": {"type": "string"},
            "upstream_model": {"type": "string"},
            "key": nullable({"type": "string", "description": "The upstream key, masked."}),
            "priority": {"type": "integer"},
            "weight": {"type": "number"},
            "limits": _limits_object(),
            "learned_limits": _limits_object(),
            "usage": _limits_object(),
            "cooldown": nullable(_limits_object()),
            "invalid": nullable({"type": "string", "description": "Why the key was marked invalid."}),
            "breaker": _limits_object(),
            "in_flight": {"type": "integer"},
            "latency_ms": nullable({"type": "number"}),
            "last_error": nullable(_limits_object()),
            "health": nullable(ref("ProbeResult")),
        },
        "required": ["id", "provider", "model"],
    }
    schemas: dict[str, Any] = {
        "KeyCreate": model_schema(KeyFields, "KeyCreate", defs),
        "UserCreate": model_schema(UserCreate, "UserCreate", defs),
        "TopUp": model_schema(TopUp, "TopUp", defs),
        "User": {
            "type": "object",
            "properties": {
                "id": {"type": "string"},
                "object": {"const": "user"},
                "name": {"type": "string"},
                "role": {"enum": ["admin", "user"]},
                "group_id": nullable({"type": "string"}),
                "balance": {"type": "integer", "description": "Micro-units of credit."},
                "status": {"type": "string"},
                "created_at": {"type": "number"},
            },
            "required": ["id", "object", "name", "role", "balance"],
        },
        "KeyUpdate": model_schema(KeyUpdate, "KeyUpdate", defs),
        "Key": key,
        "KeyWithSecret": {
            "allOf": [
                ref("Key"),
                {
                    "type": "object",
                    "properties": {"key": {"type": "string", "description": "The secret, shown once."}},
                    "required": ["key"],
                },
            ]
        },
        "KeyList": {
            "type": "object",
            "properties": {
                "object": {"const": "list"},
                "data": {"type": "array", "items": ref("Key")},
                "limit": {"type": "integer"},
                "offset": {"type": "integer"},
            },
            "required": ["object", "data", "limit", "offset"],
        },
        "Deployment": deployment,
        "DeploymentList": {
            "type": "object",
            "properties": {
                "object": {"const": "list"},
                "data": {"type": "array", "items": ref("Deployment")},
            },
            "required": ["object", "data"],
        },
        "ProbeResult": _probe_result(),
        "DeploymentProbe": {
            "allOf": [
                {"type": "object", "properties": {"id": {"type": "string"}}, "required": ["id"]},
                ref("ProbeResult"),
            ]
        },
        "ProviderProbe": {
            "type": "object",
            "properties": {
                "provider": {"type": "string"},
                "results": {"type": "object", "additionalProperties": ref("ProbeResult")},
            },
            "required": ["provider", "results"],
        },
        "Error": {
            "type": "object",
            "properties": {
                "error": {
                    "type": "object",
                    "properties": {
                        "message": {"type": "string"},
                        "type": {"type": "string"},
                        "param": nullable({"type": "string"}),
                        "code": nullable({"type": "string"}),
                    },
                    "required": ["message", "type", "param", "code"],
                }
            },
            "required": ["error"],
        },
    }
    for module in EXTENSIONS:
        schemas.update(module.schemas())
    return {**defs, **schemas}


def _json_content(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def _error(status: int) -> dict[str, Any]:
    return {"description": _ERROR_DESCRIPTIONS[status], "content": _json_content(ref("Error"))}


def _operation(method: str, path: str, name: str, row: Operation | None) -> dict[str, Any]:
    path_params = _PARAM.findall(path)
    parameters: list[dict[str, Any]] = [
        {"name": p, "in": "path", "required": True, "schema": {"type": "string", "minLength": 1}}
        for p in path_params
    ]
    if row is None:
        return {
            "operationId": f"{method.lower()}_{re.sub(r'[^A-Za-z0-9]+', '_', path).strip('_')}",
            "summary": f"{method} {path} (not described in omnirelay.admin.openapi.OPERATIONS).",
            "tags": [name],
            "x-omnirelay-generic": True,
            **({"parameters": parameters} if parameters else {}),
            "responses": {
                "200": {"description": "OK"},
                **{str(s): _error(s) for s in (401, 403)},
            },
        }
    parameters += [
        {"name": q.name, "in": "query", "required": False, "description": q.description, "schema": q.schema}
        for q in row.query
    ]
    response_schema = ref(row.response) if row.response else {"type": "object"}
    responses: dict[str, Any] = {
        str(row.status): {"description": row.summary, "content": _json_content(response_schema)}
    }
    errors = [401, 403]
    if row.body or row.query:
        errors.append(400)
    if path_params:
        errors.append(404)
    if row.body:
        errors.append(413)
    responses.update({str(s): _error(s) for s in sorted(errors)})
    op: dict[str, Any] = {"operationId": row.operation_id, "summary": row.summary, "tags": [row.tag]}
    if parameters:
        op["parameters"] = parameters
    if row.body:
        op["requestBody"] = {
            # An empty body is read as `{}`.
            "required": False,
            "content": _json_content(ref(row.body)),
        }
    op["responses"] = responses
    return op


def openapi_document(routes: Sequence[tuple[str, str, str, Any]]) -> dict[str, Any]:
    """The OpenAPI 3.1 document for `routes` (method, Starlette path, name, handler), normally
    `omnirelay.app.ADMIN_ROUTES`. Operations come from `OPERATIONS`; a route without a row there is
    included with a generic 200 response and `x-omnirelay-generic: true`."""
    paths: dict[str, dict[str, Any]] = {}
    for method, path, name, _handler in routes:
        openapi_path = _PARAM.sub(r"{\1}", path)
        row = OPERATIONS.get((method.upper(), path))
        paths.setdefault(openapi_path, {})[method.lower()] = _operation(method.upper(), path, name, row)
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": TITLE,
            "version": omnirelay.__version__,
            "description": (
                "Send `Authorization: Bearer <key>`: the gateway's master key or the key of an admin "
                "user. The self-service operations (keys, usage, request logs, IP audit, `me`) also "
                "accept a key that belongs to a user with the role `user`; they show and change only "
                "that user's own objects."
            ),
        },
        "security": [{SECURITY_SCHEME: []}],
        "tags": [{"name": t} for t in sorted({op.tag for op in OPERATIONS.values()})],
        "paths": paths,
        "components": {
            "securitySchemes": {
                SECURITY_SCHEME: {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "The master key or a gateway key (see the document description).",
                }
            },
            "schemas": component_schemas(),
        },
    }


async def openapi_endpoint(request: Request) -> Response:
    """The document for the app's admin routes as JSON. A plain Starlette endpoint: it does no
    authentication of its own (mount it through the admin wrapper, see `openapi_handler`)."""
    from omnirelay.app import ADMIN_ROUTES  # the app module imports this one

    return Response(json.dumps(openapi_document(ADMIN_ROUTES)), media_type="application/json")


async def openapi_handler(rt: Runtime, request: Request, call: Call) -> Response:
    """`openapi_endpoint` in the admin handler shape, for `ADMIN_ROUTES` (master key required)."""
    response = await openapi_endpoint(request)
    response.headers["x-request-id"] = call.request_id
    return response
