"""`/admin/api/providers`: provider channels made through the API (create, list, read, change,
delete, enable, disable, test). Config-file providers are listed too (`source: "config"`) and are
read-only here. Keys and header values are never shown, only masked (`sk-u…abcd`); they are stored
encrypted (see `omnirelay.channels`). A change serves at once, without a restart."""

from __future__ import annotations

import dataclasses
import math
import re
import time
from typing import Any
from urllib.parse import urlsplit

from pydantic import Field, ValidationError, field_validator, model_validator
from starlette.requests import Request
from starlette.responses import Response

from omnirelay.admin.params import MAX_BODY
from omnirelay.admin.spec import Operation, model_schema, nullable, ref
from omnirelay.call import Call
from omnirelay.channels import Channel, ChannelManager, encrypt_channel
from omnirelay.config import NO_ENV_KEYS, ConfigError, ProviderConfig
from omnirelay.errors import BadRequest, GatewayError, NotFound
from omnirelay.pipeline import read_body
from omnirelay.providers.catalog import build_provider
from omnirelay.providers.presets import PRESETS
from omnirelay.routing.router import Router
from omnirelay.runtime import Runtime
from omnirelay.security.keys import mask
from omnirelay.storage.channels import ChannelExistsError
from omnirelay.transport import json

_HEADER_NAME = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,128}$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_RESERVED_HEADERS = {"host", "content-length", "transfer-encoding", "connection", "content-type"}


def _plain_numbers(value: Any, where: str) -> None:
    """Every number finite and within ±2**53 (JSON and the database keep it exactly)."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{where or 'a number'} must be finite")
    if isinstance(value, int | float) and abs(value) > 2**53:
        raise ValueError(f"{where or 'a number'} is out of range")
    if isinstance(value, dict):
        for k, v in value.items():
            _plain_numbers(v, f"{where}.{k}" if where else str(k))
    elif isinstance(value, list):
        for v in value:
            _plain_numbers(v, where)


def check_base_url(url: str) -> None:
    """An http(s) URL with a host, and nothing secret or odd in it (no user:password, query,
    fragment, whitespace or control characters)."""
    if len(url) > 2048 or _CONTROL.search(url) or " " in url:
        raise ValueError("base_url must be a plain http(s) URL")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 — raises ValueError for a bad port
    except ValueError:
        raise ValueError("base_url is not a valid URL") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("base_url must be an http(s) URL with a host")
    if parts.username is not None or parts.password is not None:
        raise ValueError("base_url must not carry credentials; put keys into api_keys")
    if parts.query or parts.fragment:
        raise ValueError("base_url must not have a query or fragment")


def _needs_key(kind: object) -> bool:
    if not isinstance(kind, str) or kind in ("mock", "openai-compatible"):
        return False
    preset = PRESETS.get(kind)
    return preset is None or preset.needs_key


class ChannelCreate(ProviderConfig):
    """A provider channel: the fields of a config-file provider, plus `enabled`."""

    name: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.-]+$")
    enabled: bool = True

    @model_validator(mode="before")
    @classmethod
    def _keys_given(cls, data: Any) -> Any:
        if isinstance(data, dict) and _needs_key(data.get("type")) and not data.get("api_keys"):
            raise ValueError(
                "api_keys is required for this type (a channel never takes keys from the environment)"
            )
        return data

    @field_validator("base_url")
    @classmethod
    def _plain_url(cls, value: str | None) -> str | None:
        if value is not None:
            check_base_url(value)
        return value

    @model_validator(mode="after")
    def _safe(self) -> ChannelCreate:
        _plain_numbers(self.model_dump(), "")
        if len(self.api_keys) > 64:
            raise ValueError("api_keys: at most 64 keys")
        for key in self.api_keys:
            if not key or len(key) > 4096 or _CONTROL.search(key) or " " in key:
                raise ValueError(
                    "api_keys: a key must be 1-4096 characters without spaces or control characters"
                )
        if len(self.headers) > 32:
            raise ValueError("headers: at most 32")
        for name, value in self.headers.items():
            if not _HEADER_NAME.match(name) or name.lower() in _RESERVED_HEADERS:
                raise ValueError(f"headers: {name[:40]!r} is not a header name a channel may set")
            if len(value) > 4096 or _CONTROL.search(value):
                raise ValueError(f"headers.{name}: the value has control characters or is too long")
        if len(self.models) > 1000:
            raise ValueError("models: at most 1000")
        for public, upstream in self.model_map().items():
            if len(public) > 256 or len(upstream) > 256 or _CONTROL.search(public + upstream):
                raise ValueError("models: a model name must be at most 256 plain characters")
        return self


def parse_channel(data: dict[str, Any]) -> ChannelCreate:
    """A validated channel; the first problem becomes a 400 that never repeats a submitted value
    (a base_url may carry a secret, and error messages end up in the usage records)."""
    try:
        return ChannelCreate.model_validate(data, context={NO_ENV_KEYS: True})
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = tuple(p for p in first["loc"] if not (isinstance(p, str) and (p[:1].isupper() or "[" in p)))
        param = ".".join(str(p) for p in loc)
        message = first["msg"].removeprefix("Value error, ")
        if loc[:1] == ("base_url",):
            message = "must be a plain http(s) URL with a host (no user:password, query or fragment)"
        raise BadRequest(
            f"{param}: {message}" if param else message, param=param or None, code="invalid_value"
        ) from None


def _provider_config(body: ChannelCreate) -> ProviderConfig:
    return ProviderConfig.model_validate(body.model_dump(exclude={"enabled"}), context={NO_ENV_KEYS: True})


def _display_url(url: str | None) -> str | None:
    """A config file's base_url without any user:password or query (they may hold secrets)."""
    if not url:
        return url
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "***"
    return f"{parts.scheme}://{host}{port}{parts.path}" + ("?…" if parts.query else "")


def provider_json(cfg: ProviderConfig, source: str, channel: Channel | None = None) -> dict[str, Any]:
    data = cfg.model_dump(mode="json")
    data.update(
        api_keys=[mask(k) for k in cfg.api_keys],
        headers={h: mask(v) for h, v in cfg.headers.items()},
        base_url=_display_url(cfg.base_url),
    )
    record = channel.record if channel else None
    return {
        "object": "provider",
        **data,
        "source": source,
        "read_only": source == "config",
        "enabled": record.enabled if record else True,
        "error": channel.error if channel else None,
        "created_at": record.created_at if record else None,
        "updated_at": record.updated_at if record else None,
    }


def channel_json(channel: Channel) -> dict[str, Any]:
    if channel.config is not None:
        return provider_json(channel.config, "api", channel)
    record = channel.record  # does not decrypt: show its definition and how many secrets it has
    secrets = record.secrets
    return {
        "object": "provider",
        **record.definition,
        "api_keys": ["***" for _ in secrets.get("api_keys", [])],
        "headers": {h: "***" for h in secrets.get("headers", {})},
        "source": "api",
        "read_only": False,
        "enabled": record.enabled,
        "error": channel.error,
        "created_at": record.created_at,
        "updated_at": record.updated_at,
    }


def _manager(rt: Runtime) -> ChannelManager:
    if rt.channels is None:
        raise GatewayError("Provider channels are not available on this gateway.", status=503)
    return rt.channels


def _channel(rt: Runtime, name: str) -> Channel:
    channel = _manager(rt).channels.get(name)
    if channel is None:
        if any(p.name == name for p in rt.config.providers):
            raise BadRequest(
                f"The provider {name!r} comes from the config file and is read-only here.",
                param="name",
                code="read_only",
            )
        raise NotFound(f"No provider {name!r}.", code="provider_not_found")
    return channel


async def _clear_state(rt: Runtime, name: str) -> None:
    """Back into rotation: the cool-downs, invalid marks and breakers of the provider's deployments."""
    state, now = rt.dispatcher.state, time.time()
    for dep in rt.router.all:
        if dep.provider.name == name:
            await state.clear_invalid(dep.id)
            await state.clear_cooldown(dep.id)
            await state.record_result(dep.id, True, now, rt.dispatcher.policy)
            rt.dispatcher.last_error.pop(dep.id, None)


async def _apply(rt: Runtime, channel: Channel, *, new: bool = False, removed: bool = False) -> None:
    """Store `channel` (or delete it) and serve the result at once. Refused (400) when the config's
    routes would lose a target; nothing changes then."""
    mgr = _manager(rt)
    active = mgr.active()
    name = channel.record.name
    if not removed and name in mgr.config_names:
        raise BadRequest(
            f"The config file defines a provider named {name!r}; delete this channel or rename one.",
            param="name",
            code="read_only",
        )
    active.pop(name, None)
    if not removed and channel.record.enabled and channel.config is not None:
        active[name] = channel.config
    try:
        providers, router, fresh = mgr.prepare(rt, active, {name})
    except ConfigError as exc:
        raise BadRequest(
            f"This change would break the configured routes: {exc}", code="route_broken"
        ) from None
    try:
        if removed:
            await rt.store.delete_channel(name)
        elif new:
            await rt.store.add_channel(channel.record)
        else:
            await rt.store.update_channel(channel.record)
    except ChannelExistsError:
        mgr.discard(fresh)
        raise BadRequest(
            f"A provider named {name!r} exists already.", param="name", code="duplicate_name"
        ) from None
    except BaseException:
        mgr.discard(fresh)
        raise
    if removed:
        mgr.channels.pop(name, None)
    else:
        mgr.channels[name] = channel
    mgr.swap(rt, providers, router)


async def list_providers(rt: Runtime, request: Request, call: Call) -> Response:
    mgr = _manager(rt)
    data = [provider_json(p, "config") for p in rt.config.providers]
    data += [channel_json(ch) for ch in mgr.channels.values()]
    return call.json_response(json.dumps({"object": "list", "data": data}))


async def get(rt: Runtime, request: Request, call: Call) -> Response:
    name = request.path_params["name"]
    for cfg in rt.config.providers:
        if cfg.name == name:
            return call.json_response(json.dumps(provider_json(cfg, "config")))
    return call.json_response(json.dumps(channel_json(_channel(rt, name))))


async def create(rt: Runtime, request: Request, call: Call) -> Response:
    raw = await read_body(request, MAX_BODY)
    body = parse_channel(json.parse_object(raw) if raw.strip() else {})
    mgr = _manager(rt)
    if body.name in mgr.config_names:
        raise BadRequest(
            f"The config file defines a provider named {body.name!r}.", param="name", code="duplicate_name"
        )
    async with mgr.lock:
        if body.name in mgr.channels:
            raise BadRequest(
                f"A provider named {body.name!r} exists already.", param="name", code="duplicate_name"
            )
        cfg = _provider_config(body)
        channel = Channel(encrypt_channel(cfg, mgr.ring, body.enabled), cfg)
        await _apply(rt, channel, new=True)
    return call.json_response(json.dumps(channel_json(channel)), status=201)


async def update(rt: Runtime, request: Request, call: Call) -> Response:
    name = request.path_params["name"]
    raw = await read_body(request, MAX_BODY)
    changes = json.parse_object(raw) if raw.strip() else {}
    mgr = _manager(rt)
    async with mgr.lock:
        old = _channel(rt, name)
        if changes.get("name", name) != name:
            raise BadRequest("A provider cannot be renamed.", param="name", code="invalid_value")
        merged: dict[str, Any] = dict(old.record.definition)
        if old.config is not None:
            merged.update(api_keys=old.config.api_keys, headers=old.config.headers)
        elif "api_keys" not in changes:
            raise BadRequest(
                f"The credentials of {name!r} do not decrypt: send api_keys (and headers) to replace them.",
                param="api_keys",
                code="credentials_unreadable",
            )
        merged.update(changes, name=name, enabled=changes.get("enabled", old.record.enabled))
        body = parse_channel(merged)
        cfg = _provider_config(body)
        record = encrypt_channel(cfg, mgr.ring, body.enabled, old.record.created_at)
        channel = Channel(record, cfg)
        await _apply(rt, channel)
        await _clear_state(rt, name)
    return call.json_response(json.dumps(channel_json(channel)))


async def delete(rt: Runtime, request: Request, call: Call) -> Response:
    name = request.path_params["name"]
    mgr = _manager(rt)
    async with mgr.lock:
        channel = _channel(rt, name)
        await _apply(rt, channel, removed=True)
    return call.json_response(json.dumps({"object": "provider", "name": name, "deleted": True}))


async def _set_enabled(rt: Runtime, name: str, enabled: bool) -> Channel:
    mgr = _manager(rt)
    async with mgr.lock:
        old = _channel(rt, name)
        if old.config is None:
            raise BadRequest(f"Provider {name!r} cannot serve: {old.error}", code="credentials_unreadable")
        record = dataclasses.replace(old.record, enabled=enabled, updated_at=time.time())
        channel = Channel(record, old.config, old.error)
        await _apply(rt, channel)
        return channel


async def enable(rt: Runtime, request: Request, call: Call) -> Response:
    """Enable a channel and put every deployment of the provider back into rotation (cool-downs,
    invalid marks and breakers cleared). For a config-file provider only the latter."""
    name = request.path_params["name"]
    config_cfg = next((p for p in rt.config.providers if p.name == name), None)
    if config_cfg is not None:
        await _clear_state(rt, name)
        return call.json_response(json.dumps(provider_json(config_cfg, "config")))
    channel = await _set_enabled(rt, name, True)
    await _clear_state(rt, name)
    return call.json_response(json.dumps(channel_json(channel)))


async def disable(rt: Runtime, request: Request, call: Call) -> Response:
    channel = await _set_enabled(rt, request.path_params["name"], False)
    return call.json_response(json.dumps(channel_json(channel)))


async def test(rt: Runtime, request: Request, call: Call) -> Response:
    """Probe every key of a provider now (a disabled channel too, without enabling it)."""
    name = request.path_params["name"]
    if any(p.name == name for p in rt.providers):
        results = await rt.health.probe_provider(name)
    else:
        channel = _channel(rt, name)
        if channel.config is None:
            raise BadRequest(
                f"Provider {name!r} cannot serve: {channel.error}", code="credentials_unreadable"
            )
        provider = build_provider(channel.config, rt.config.http_client)
        try:
            firsts = {d.key_index: d for d in Router([provider]).all}
            results = {d.id: await rt.health.probe(d) for d in firsts.values()}
        finally:
            await provider.close()
    body = {"provider": name, "results": {i: dataclasses.asdict(r) for i, r in results.items()}}
    return call.json_response(json.dumps(body))


OPERATIONS: dict[tuple[str, str], Operation] = {
    ("POST", "/admin/api/providers"): Operation(
        "createProvider",
        "Create a provider channel. Its keys are stored encrypted and only ever shown masked; it "
        "serves at once.",
        "providers",
        "Provider",
        status=201,
        body="ProviderCreate",
    ),
    ("GET", "/admin/api/providers"): Operation(
        "listProviders",
        "Every provider: the config file's (`source: config`, read-only) and the API's channels.",
        "providers",
        "ProviderList",
    ),
    ("GET", "/admin/api/providers/{name}"): Operation(
        "getProvider", "Read one provider.", "providers", "Provider"
    ),
    ("PATCH", "/admin/api/providers/{name}"): Operation(
        "updateProvider",
        "Change a channel; omitted fields are unchanged, `api_keys` replaces every key.",
        "providers",
        "Provider",
        body="ProviderUpdate",
    ),
    ("DELETE", "/admin/api/providers/{name}"): Operation(
        "deleteProvider", "Delete a channel (its stored credentials with it).", "providers", "ProviderDeleted"
    ),
    ("POST", "/admin/api/providers/{name}/enable"): Operation(
        "enableProvider",
        "Re-enable: enable a channel and clear the cool-downs, invalid marks and breakers of the "
        "provider's deployments.",
        "providers",
        "Provider",
    ),
    ("POST", "/admin/api/providers/{name}/disable"): Operation(
        "disableProvider", "Take a channel out of service (kept, not deleted).", "providers", "Provider"
    ),
    ("POST", "/admin/api/providers/{name}/test"): Operation(
        "testProviderChannel", "Probe every key of a provider now.", "providers", "ProviderProbe"
    ),
}


def schemas() -> dict[str, Any]:
    defs: dict[str, Any] = {}
    create_schema = model_schema(ChannelCreate, "ProviderCreate", defs)
    update_schema = {k: v for k, v in create_schema.items() if k != "required"}
    update_schema["title"] = "ProviderUpdate"
    strings = {"type": "array", "items": {"type": "string"}}
    provider = {
        "type": "object",
        "properties": {
            "object": {"const": "provider"},
            "name": {"type": "string"},
            "type": {"type": "string"},
            "base_url": nullable({"type": "string"}),
            "api_keys": {**strings, "description": "Masked: never a key itself."},
            "headers": {"type": "object", "additionalProperties": {"type": "string"}},
            "models": {"type": "array"},
            "source": {"enum": ["config", "api"]},
            "read_only": {"type": "boolean"},
            "enabled": {"type": "boolean"},
            "error": nullable({"type": "string"}),
            "created_at": nullable({"type": "number"}),
            "updated_at": nullable({"type": "number"}),
        },
        "required": ["object", "name", "type", "api_keys", "source", "read_only", "enabled"],
        "additionalProperties": True,
    }
    return {
        **defs,
        "ProviderCreate": create_schema,
        "ProviderUpdate": update_schema,
        "Provider": provider,
        "ProviderList": {
            "type": "object",
            "properties": {"object": {"const": "list"}, "data": {"type": "array", "items": ref("Provider")}},
            "required": ["object", "data"],
        },
        "ProviderDeleted": {
            "type": "object",
            "properties": {
                "object": {"const": "provider"},
                "name": {"type": "string"},
                "deleted": {"const": True},
            },
            "required": ["object", "name", "deleted"],
        },
    }
