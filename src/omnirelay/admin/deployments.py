"""`GET /admin/deployments`: every deployment's health, cool-down, counters against caps, breaker
state and last error; `POST /admin/deployments/{id}/enable` (back into rotation) and `/test`;
`POST /admin/providers/{name}/test`."""

from __future__ import annotations

import dataclasses
import time
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from omnirelay.call import Call
from omnirelay.errors import NotFound
from omnirelay.routing.router import Deployment
from omnirelay.runtime import Runtime
from omnirelay.security.keys import mask
from omnirelay.transport import json


def _find(rt: Runtime, dep_id: str) -> Deployment:
    for dep in rt.router.all:
        if dep.id == dep_id:
            return dep
    raise NotFound(f"No deployment {dep_id!r}.", code="deployment_not_found")


async def describe(rt: Runtime, dep: Deployment, now: float) -> dict[str, Any]:
    dispatcher = rt.dispatcher
    snap = await dispatcher.state.snapshot(dep.id, now, dispatcher.policy)
    last = dispatcher.last_error.get(dep.id)
    health = rt.health.results.get(dep.id) if rt.health else None
    limits = dep.limits.tighter(snap.learned)
    return {
        "id": dep.id,
        "provider": dep.provider.name,
        "model": dep.model,
        "upstream_model": dep.upstream_model,
        "key": mask(dep.key) if dep.key else None,
        "priority": dep.priority,
        "weight": dep.weight,
        "limits": dataclasses.asdict(limits),
        "learned_limits": dataclasses.asdict(snap.learned),
        "usage": dataclasses.asdict(snap.usage),
        "cooldown": dataclasses.asdict(snap.cooldown) if snap.cooldown else None,
        "invalid": snap.invalid,
        "breaker": dataclasses.asdict(snap.breaker),
        "in_flight": snap.load.in_flight,
        "latency_ms": snap.load.latency_ewma_ms,
        "last_error": dataclasses.asdict(last) if last else None,
        "health": dataclasses.asdict(health) if health else None,
    }


async def list_deployments(rt: Runtime, request: Request, call: Call) -> Response:
    now = time.time()
    data = [await describe(rt, dep, now) for dep in rt.router.all]
    return call.json_response(json.dumps({"object": "list", "data": data}))


async def enable(rt: Runtime, request: Request, call: Call) -> Response:
    dep = _find(rt, request.path_params["dep_id"])
    state, now = rt.dispatcher.state, time.time()
    await state.clear_invalid(dep.id)
    await state.clear_cooldown(dep.id)
    await state.record_result(dep.id, True, now, rt.dispatcher.policy)
    rt.dispatcher.last_error.pop(dep.id, None)
    return call.json_response(json.dumps(await describe(rt, dep, now)))


async def test_deployment(rt: Runtime, request: Request, call: Call) -> Response:
    dep = _find(rt, request.path_params["dep_id"])
    result = await rt.health.probe(dep)
    return call.json_response(json.dumps({"id": dep.id, **dataclasses.asdict(result)}))


async def test_provider(rt: Runtime, request: Request, call: Call) -> Response:
    name = request.path_params["name"]
    if not any(p.name == name for p in rt.providers):
        raise NotFound(f"No provider {name!r}.", code="provider_not_found")
    results = await rt.health.probe_provider(name)
    return call.json_response(
        json.dumps(
            {"provider": name, "results": {dep_id: dataclasses.asdict(r) for dep_id, r in results.items()}}
        )
    )
