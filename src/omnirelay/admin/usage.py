"""`/admin/api/usage`, `/admin/api/logs` and `/admin/api/ip-audit`: usage totals, request-log search
(with the logged bodies of one request) and which client IPs each key was used from.

Self-service: a key that belongs to a user with the role `user` sees only that user's records (a
`user_id` other than its own is refused, another user's request id is reported as absent); the
master key and admin users see everything and may filter by `user_id`. Times in query parameters
are RFC 3339 (`2026-11-25T10:00:00Z`) or unix seconds; `from` is inclusive and `to` exclusive."""

from __future__ import annotations

import base64
import math
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from omnirelay.admin.access import check_owner, own_scope
from omnirelay.admin.params import page, page_json, rfc3339, rfc3339_or_none
from omnirelay.admin.spec import PAGE_QUERY, Operation, QueryParam, nullable, ref
from omnirelay.call import Call
from omnirelay.errors import BadRequest, NotFound, PermissionDenied
from omnirelay.runtime import Runtime
from omnirelay.storage.records import LoggedBody, UsageRecord
from omnirelay.storage.usage_queries import BUCKET_SECONDS, GROUP_COLUMNS, TOTALS, UsageFilter
from omnirelay.transport import json

MAX_TIME = 253402300799.0  # 9999-12-31T23:59:59Z
MAX_TEXT = 256
STATUS_CLASSES = {
    "1xx": (100, 200),
    "2xx": (200, 300),
    "3xx": (300, 400),
    "4xx": (400, 500),
    "5xx": (500, 600),
    "error": (400, 1000),
    "success": (100, 400),
}


def _text(params: Mapping[str, str], name: str) -> str | None:
    value = params.get(name)
    if value is None:
        return None
    if len(value) > MAX_TEXT or "\x00" in value:
        raise BadRequest(f"{name} must be at most {MAX_TEXT} characters, without NUL.", param=name)
    return value


def _time(params: Mapping[str, str], name: str) -> float | None:
    value = params.get(name)
    if value is None or value == "":
        return None
    try:
        ts = float(value)
    except ValueError:
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            raise BadRequest(
                f"{name} must be RFC 3339 (e.g. 2026-11-25T10:00:00Z) or unix seconds.", param=name
            ) from None
        if parsed.tzinfo is None:
            raise BadRequest(f"{name} needs a time zone (e.g. a trailing Z).", param=name) from None
        try:
            ts = parsed.timestamp()
        except (OverflowError, ValueError):
            raise BadRequest(f"{name} is out of range.", param=name) from None
    if not math.isfinite(ts) or not 0 <= ts <= MAX_TIME:
        raise BadRequest(f"{name} is out of range (1970 to 9999).", param=name)
    return ts


def _status(params: Mapping[str, str]) -> tuple[int, int] | None:
    value = params.get("status")
    if value is None or value == "":
        return None
    if value.lower() in STATUS_CLASSES:
        return STATUS_CLASSES[value.lower()]
    if value.isascii() and value.isdigit() and 100 <= int(value) <= 999:
        return int(value), int(value) + 1
    raise BadRequest(
        "status must be an HTTP status (e.g. 429), a class (2xx … 5xx), 'error' or 'success'.",
        param="status",
    )


def _filter(call: Call, params: Mapping[str, str], *names: str) -> UsageFilter:
    """The records this caller asked for and may see: a user's key is kept to its own user."""
    since, until = _time(params, "from"), _time(params, "to")
    flt = UsageFilter(since=since, until=until, user_id=_text(params, "user_id"))
    for name in names:
        setattr(flt, name, _text(params, name))
    scope = own_scope(call)
    if scope is not None:
        if flt.user_id not in (None, scope):
            raise PermissionDenied("A user may see only its own usage.", param="user_id")
        flt.user_id = scope
    return flt


def _group_by(params: Mapping[str, str]) -> list[str]:
    out: list[str] = []
    for part in params.get("group_by", "").split(","):
        name = part.strip()
        if not name:
            continue
        if name not in GROUP_COLUMNS:
            raise BadRequest(
                f"group_by takes a comma-separated list of {', '.join(GROUP_COLUMNS)}; got {name[:40]!r}.",
                param="group_by",
            )
        if name not in out:
            out.append(name)
    return out


def _flag(params: Mapping[str, str], name: str) -> bool:
    value = params.get(name, "false").lower()
    if value not in ("true", "false", "1", "0"):
        raise BadRequest(f"{name} must be true or false.", param=name, code="invalid_value")
    return value in ("true", "1")


async def summary(rt: Runtime, request: Request, call: Call) -> Response:
    params = request.query_params
    flt = _filter(call, params, "key_id", "model", "provider")
    # Usage is model traffic; admin API calls are left out unless asked for (they are in the log).
    flt.include_admin = _flag(params, "include_admin")
    group_by = _group_by(params)
    bucket = params.get("bucket") or None
    if bucket is not None and bucket not in BUCKET_SECONDS:
        raise BadRequest("bucket must be 'hour' or 'day'.", param="bucket")
    rows = await rt.store.usage_summary(flt, group_by, bucket)
    for row in rows:
        if "bucket" in row:
            row["bucket_ts"] = row["bucket"]
            row["bucket"] = rfc3339(row["bucket"])
    totals = rows[0] if not group_by and bucket is None else (await rt.store.usage_summary(flt))[0]
    body = {
        "object": "usage_summary",
        "from": rfc3339_or_none(flt.since),
        "to": rfc3339_or_none(flt.until),
        "group_by": group_by,
        "bucket": bucket,
        "data": rows,
        "totals": totals,
    }
    return call.json_response(json.dumps(body))


def record_json(rec: UsageRecord) -> dict[str, Any]:
    return {
        "object": "request_log",
        "request_id": rec.request_id,
        "time": rfc3339(rec.ts),
        "ts": rec.ts,
        "key_id": rec.key_id,
        "user_id": rec.user_id,
        "endpoint": rec.endpoint,
        "model": rec.model,
        "provider": rec.provider,
        "upstream_model": rec.upstream_model,
        "status": rec.status,
        "stream": bool(rec.stream),
        "ttfb_ms": rec.ttfb_ms,
        "latency_ms": rec.latency_ms,
        "input_tokens": rec.input_tokens,
        "output_tokens": rec.output_tokens,
        "cached_input_tokens": rec.cached_input_tokens,
        "cache_write_tokens": rec.cache_write_tokens,
        "reasoning_tokens": rec.reasoning_tokens,
        "usage_estimated": bool(rec.usage_estimated),
        "cost": rec.cost,
        "unpriced": bool(rec.unpriced),
        "client_ip": rec.client_ip,
        "error": rec.error,
    }


async def search(rt: Runtime, request: Request, call: Call) -> Response:
    params = request.query_params
    flt = _filter(call, params, "key_id", "model", "provider", "client_ip")
    flt.status = _status(params)
    limit, offset = page(params)
    records, total = await rt.store.search_usage(flt, limit, offset)
    return call.json_response(page_json([record_json(r) for r in records], limit, offset, total=total))


def _body_json(data: bytes, size: int, content_type: str | None = None) -> dict[str, Any]:
    try:
        text, encoding = data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        text, encoding = base64.b64encode(data).decode("ascii"), "base64"
    out: dict[str, Any] = {"body": text, "encoding": encoding, "bytes": size, "truncated": len(data) < size}
    if content_type is not None:
        out["content_type"] = content_type
    return out


def bodies_json(logged: LoggedBody) -> dict[str, Any]:
    return {
        "request": _body_json(logged.request, logged.request_bytes),
        "response": _body_json(logged.response, logged.response_bytes, logged.response_content_type),
    }


async def get_log(rt: Runtime, request: Request, call: Call) -> Response:
    request_id = request.path_params["request_id"]
    valid = len(request_id) <= 64 and "\x00" not in request_id
    record = await rt.store.get_usage(request_id) if valid else None
    if record is None:
        raise NotFound(f"No request {request_id[:64]!r} in the log.", code="not_found")
    check_owner(call, record.user_id, f"request {request_id!r} in the log")
    logged = await rt.store.get_bodies(request_id)
    body = {**record_json(record), "bodies": bodies_json(logged) if logged is not None else None}
    return call.json_response(json.dumps(body))


async def ip_audit(rt: Runtime, request: Request, call: Call) -> Response:
    params = request.query_params
    flt = _filter(call, params, "key_id", "client_ip")
    limit, offset = page(params)
    pairs, total = await rt.store.ip_audit(flt, limit, offset)
    for pair in pairs:
        pair["first_seen"], pair["last_seen"] = rfc3339(pair["first_seen"]), rfc3339(pair["last_seen"])
    return call.json_response(page_json(pairs, limit, offset, total=total))


# --- OpenAPI description (see omnirelay.admin.spec) ------------------------------------------------

_STR = {"type": "string", "maxLength": MAX_TEXT}
_TIME_QUERY = (
    QueryParam("from", {"type": "string"}, "Only requests at or after this time (RFC 3339 or unix seconds)."),
    QueryParam("to", {"type": "string"}, "Only requests before this time (RFC 3339 or unix seconds)."),
)
_KEY = QueryParam("key_id", _STR, "Only requests made with this key.")
_USER = QueryParam("user_id", _STR, "Only requests of this user's keys (a user's own key: itself only).")
_MODEL = QueryParam("model", _STR, "Only requests for this model (as the client named it).")
_PROVIDER = QueryParam("provider", _STR, "Only requests served by this provider.")
_IP = QueryParam("client_ip", _STR, "Only requests from this client IP.")

OPERATIONS: dict[tuple[str, str], Operation] = {
    ("GET", "/admin/api/usage"): Operation(
        "getUsageSummary",
        "Usage totals (requests, errors, tokens, cost in micro-units), grouped and bucketed as asked.",
        "usage",
        "UsageSummary",
        query=(
            *_TIME_QUERY,
            _KEY,
            _USER,
            _MODEL,
            _PROVIDER,
            QueryParam(
                "group_by",
                {"type": "string"},
                "Comma-separated: any of key, user, model, provider (e.g. `user,model`).",
            ),
            QueryParam("bucket", {"enum": ["hour", "day"]}, "Also group by UTC hour or day."),
            QueryParam(
                "include_admin",
                {"type": "boolean", "default": False},
                "Count admin API calls too (left out by default; they are in the request log).",
            ),
        ),
    ),
    ("GET", "/admin/api/logs"): Operation(
        "searchRequestLogs",
        "Search the request log, newest first.",
        "usage",
        "RequestLogList",
        query=(
            *_TIME_QUERY,
            _KEY,
            _USER,
            _MODEL,
            _PROVIDER,
            _IP,
            QueryParam(
                "status",
                {"type": "string"},
                "An HTTP status (429), a class (2xx, 4xx, 5xx), `error` (>= 400) or `success` (< 400).",
            ),
            *PAGE_QUERY,
        ),
    ),
    ("GET", "/admin/api/logs/{request_id}"): Operation(
        "getRequestLog",
        "One request's log record, with its request and response bodies when they were logged.",
        "usage",
        "RequestLogDetail",
    ),
    ("GET", "/admin/api/ip-audit"): Operation(
        "getIpAudit",
        "For each (key, client IP) pair: requests, first and last seen; most recently seen first.",
        "usage",
        "IpAuditList",
        query=(*_TIME_QUERY, _KEY, _USER, _IP, *PAGE_QUERY),
    ),
}


def _paged(item: str) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {
            "object": {"const": "list"},
            "data": {"type": "array", "items": ref(item)},
            "total": {"type": "integer", "description": "Matches in all (not just this page)."},
            "limit": {"type": "integer"},
            "offset": {"type": "integer"},
        },
        "required": ["object", "data", "total", "limit", "offset"],
    }


def _usage_row() -> dict[str, Any]:
    integer = {"type": "integer"}
    props: dict[str, Any] = {
        "bucket": {"type": "string", "format": "date-time", "description": "Start of the UTC hour/day."},
        "bucket_ts": {"type": "integer", "description": "The same, in unix seconds."},
        **{column: nullable({"type": "string"}) for column in GROUP_COLUMNS.values()},
        "requests": integer,
        "errors": {"type": "integer", "description": "Requests answered with a status of 400 or more."},
        **{name: integer for name in TOTALS},
    }
    props["cost"] = {"type": "integer", "description": "Micro-units of credit."}
    return {
        "type": "object",
        "properties": props,
        "required": ["requests", "errors", *TOTALS],
    }


def _request_log() -> dict[str, Any]:
    s, n, i, b = {"type": "string"}, {"type": "number"}, {"type": "integer"}, {"type": "boolean"}
    props: dict[str, Any] = {
        "object": {"const": "request_log"},
        "request_id": s,
        "time": {"type": "string", "format": "date-time"},
        "ts": {**n, "description": "Unix seconds when the request arrived."},
        "key_id": s,
        "user_id": nullable(s),
        "endpoint": s,
        "model": s,
        "provider": nullable(s),
        "upstream_model": nullable(s),
        "status": i,
        "stream": b,
        "ttfb_ms": nullable(n),
        "latency_ms": n,
        **{name: i for name in TOTALS},
        "usage_estimated": b,
        "unpriced": b,
        "client_ip": nullable(s),
        "error": nullable(s),
    }
    return {"type": "object", "properties": props, "required": list(props)}


def schemas() -> dict[str, Any]:
    body = {
        "type": "object",
        "properties": {
            "body": {"type": "string", "description": "As sent, cut at logging.max_body_bytes."},
            "encoding": {"enum": ["utf-8", "base64"]},
            "bytes": {"type": "integer", "description": "The full size."},
            "truncated": {"type": "boolean"},
            "content_type": {"type": "string"},
        },
        "required": ["body", "encoding", "bytes", "truncated"],
    }
    return {
        "UsageRow": _usage_row(),
        "UsageSummary": {
            "type": "object",
            "properties": {
                "object": {"const": "usage_summary"},
                "from": nullable({"type": "string", "format": "date-time"}),
                "to": nullable({"type": "string", "format": "date-time"}),
                "group_by": {"type": "array", "items": {"enum": list(GROUP_COLUMNS)}},
                "bucket": nullable({"enum": ["hour", "day"]}),
                "data": {"type": "array", "items": ref("UsageRow")},
                "totals": ref("UsageRow"),
            },
            "required": ["object", "from", "to", "group_by", "bucket", "data", "totals"],
        },
        "RequestLog": _request_log(),
        "RequestLogList": _paged("RequestLog"),
        "LoggedBody": body,
        "RequestLogDetail": {
            "allOf": [
                ref("RequestLog"),
                {
                    "type": "object",
                    "properties": {
                        "bodies": nullable(
                            {
                                "type": "object",
                                "properties": {"request": ref("LoggedBody"), "response": ref("LoggedBody")},
                                "required": ["request", "response"],
                            }
                        )
                    },
                    "required": ["bodies"],
                },
            ]
        },
        "IpAuditEntry": {
            "type": "object",
            "properties": {
                "key_id": {"type": "string"},
                "client_ip": nullable({"type": "string"}),
                "requests": {"type": "integer"},
                "first_seen": {"type": "string", "format": "date-time"},
                "last_seen": {"type": "string", "format": "date-time"},
            },
            "required": ["key_id", "client_ip", "requests", "first_seen", "last_seen"],
        },
        "IpAuditList": _paged("IpAuditEntry"),
    }
