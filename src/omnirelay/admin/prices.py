"""`/admin/api/prices`: the effective price catalog (defaults, config, API overrides, each entry with
its `source`) and the operator's overrides: `PUT` upserts one, `DELETE` removes it. Amounts are
credits as exact decimal strings; token rates are per 1M tokens. A change prices the next request."""

from __future__ import annotations

import re
import time
from decimal import Decimal
from typing import Any

from pydantic import BaseModel, ConfigDict, field_validator
from starlette.requests import Request
from starlette.responses import Response

from omnirelay.accounting.prices import DEFAULT_PRICES, MICRO, Price
from omnirelay.admin.params import MAX_BODY, parse_model
from omnirelay.admin.spec import Operation, list_of, model_schema, nullable
from omnirelay.call import Call
from omnirelay.channels import ChannelManager, price_of
from omnirelay.errors import BadRequest, GatewayError, NotFound
from omnirelay.pipeline import read_body
from omnirelay.runtime import Runtime
from omnirelay.storage.channels import PRICE_FIELDS, PriceRecord
from omnirelay.transport import json

_CREDITS = re.compile(r"^[0-9]{1,12}(\.[0-9]{1,6})?$")  # at most 10^12 credits, in micro-units
MAX_MODEL = 256


class PriceBody(BaseModel):
    """A price in credits: exact decimal strings (or integers), never floats."""

    model_config = ConfigDict(extra="forbid")

    input: str | int
    output: str | int
    cached_input: str | int | None = None
    cache_write: str | int | None = None
    reasoning: str | int | None = None
    per_image: str | int | None = None
    per_audio_second: str | int | None = None
    per_character: str | int | None = None
    per_request: str | int | None = None

    @field_validator("*", mode="before")
    @classmethod
    def _exact(cls, value: Any) -> Any:
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | str):
            raise ValueError("must be a decimal string such as '0.15' (or an integer), never a float")
        text = str(value).strip()
        if not _CREDITS.match(text):
            raise ValueError("must be a non-negative decimal of at most 12 digits and 6 decimals")
        return text


def _credits(micro: int | None) -> str | None:
    if micro is None:
        return None
    return format(Decimal(micro) / Decimal(MICRO), "f")


def price_json(model: str, price: Price, source: str) -> dict[str, Any]:
    return {
        "object": "price",
        "model": model,
        "source": source,
        **{f: _credits(getattr(price, f)) for f in PRICE_FIELDS},
    }


def _manager(rt: Runtime) -> ChannelManager:
    if rt.channels is None:
        raise GatewayError("Price overrides are not available on this gateway.", status=503)
    return rt.channels


def effective(rt: Runtime) -> dict[str, tuple[Price, str]]:
    """model key → (price, source); the API over the config over the shipped defaults."""
    out: dict[str, tuple[Price, str]] = {k.lower(): (p, "default") for k, p in DEFAULT_PRICES.items()}
    for name, cfg in rt.config.prices.items():
        out[name.lower()] = (Price.from_credits(**cfg.model_dump()), "config")
    for record in _manager(rt).prices:
        try:
            out[record.model] = (price_of(record), "api")
        except (ValueError, TypeError):
            continue  # logged at start-up; never served
    return out


def _model(request: Request) -> str:
    model = str(request.path_params["model"]).strip().lower()
    if not model or len(model) > MAX_MODEL:
        raise BadRequest(
            f"A model name has 1 to {MAX_MODEL} characters.", param="model", code="invalid_value"
        )
    return model


async def list_prices(rt: Runtime, request: Request, call: Call) -> Response:
    data = [price_json(m, p, s) for m, (p, s) in sorted(effective(rt).items())]
    return call.json_response(json.dumps({"object": "list", "data": data}))


async def get(rt: Runtime, request: Request, call: Call) -> Response:
    model = _model(request)
    found = effective(rt).get(model)
    if found is None:
        raise NotFound(f"No price for {model!r}.", code="price_not_found")
    return call.json_response(json.dumps(price_json(model, *found)))


async def put(rt: Runtime, request: Request, call: Call) -> Response:
    model = _model(request)
    body = parse_model(PriceBody, await read_body(request, MAX_BODY))
    record = PriceRecord(model=model, updated_at=time.time(), **body.model_dump())
    price = price_of(record)  # the pattern makes every amount a valid number of micro-units
    mgr = _manager(rt)
    async with mgr.lock:
        await rt.store.set_price(record)
        mgr.prices = [p for p in mgr.prices if p.model != model] + [record]
        rt.prices = mgr.price_catalog()
    return call.json_response(json.dumps(price_json(model, price, "api")))


async def delete(rt: Runtime, request: Request, call: Call) -> Response:
    model = _model(request)
    mgr = _manager(rt)
    async with mgr.lock:
        if not await rt.store.delete_price(model):
            raise NotFound(f"No price override for {model!r}.", code="price_not_found")
        mgr.prices = [p for p in mgr.prices if p.model != model]
        rt.prices = mgr.price_catalog()
    return call.json_response(json.dumps({"object": "price", "model": model, "deleted": True}))


OPERATIONS: dict[tuple[str, str], Operation] = {
    ("GET", "/admin/api/prices"): Operation(
        "listPrices",
        "The effective price catalog: shipped defaults, config prices and API overrides (`source`).",
        "prices",
        "PriceList",
    ),
    ("GET", "/admin/api/prices/{model:path}"): Operation(
        "getPrice", "The effective price of one model (or `provider/model`) key.", "prices", "Price"
    ),
    ("PUT", "/admin/api/prices/{model:path}"): Operation(
        "putPrice",
        "Set the price override of a model or `provider/model` (credits as decimal strings, token "
        "rates per 1M tokens); it prices the next request.",
        "prices",
        "Price",
        body="PriceSet",
    ),
    ("DELETE", "/admin/api/prices/{model:path}"): Operation(
        "deletePrice",
        "Remove a price override (the config or default price applies again).",
        "prices",
        "PriceDeleted",
    ),
}


def schemas() -> dict[str, Any]:
    defs: dict[str, Any] = {}
    amount = nullable({"type": "string", "description": "Credits, an exact decimal string."})
    price = {
        "type": "object",
        "properties": {
            "object": {"const": "price"},
            "model": {"type": "string"},
            "source": {"enum": ["default", "config", "api"]},
            **{f: amount for f in PRICE_FIELDS},
        },
        "required": ["object", "model", "source", "input", "output"],
    }
    out = {
        "PriceSet": model_schema(PriceBody, "PriceSet", defs),
        "Price": price,
        "PriceList": list_of("Price"),
        "PriceDeleted": {
            "type": "object",
            "properties": {
                "object": {"const": "price"},
                "model": {"type": "string"},
                "deleted": {"const": True},
            },
            "required": ["object", "model", "deleted"],
        },
    }
    return {**defs, **out}
