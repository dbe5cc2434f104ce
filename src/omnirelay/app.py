"""The ASGI application: routes, the per-request wrapper (request id, auth, usage record, errors),
health checks and the lifespan that builds and closes the runtime."""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from functools import partial
from pathlib import Path

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from omnirelay.accounting.metering import off_loop, prompt_usage
from omnirelay.admin import access as admin_access
from omnirelay.admin import channels as admin_channels
from omnirelay.admin import deployments as admin_deployments
from omnirelay.admin import groups as admin_groups
from omnirelay.admin import keys as admin_keys
from omnirelay.admin import me as admin_me
from omnirelay.admin import openapi as admin_openapi
from omnirelay.admin import prices as admin_prices
from omnirelay.admin import redemption as admin_redemption
from omnirelay.admin import usage as admin_usage
from omnirelay.admin import users as admin_users
from omnirelay.call import Call
from omnirelay.config import Config
from omnirelay.errors import GatewayError, NotFound
from omnirelay.ingress.base import Ingress
from omnirelay.pipeline import anthropic as anthropic_surface
from omnirelay.pipeline import gemini as gemini_surface
from omnirelay.pipeline import openai as openai_surface
from omnirelay.pipeline import responses as responses_surface
from omnirelay.policy import free_tier
from omnirelay.runtime import Runtime, start_runtime
from omnirelay.transport import json
from omnirelay.transport.responses import StreamResponse
from omnirelay.wire.headers import RETRY_HEADERS

log = logging.getLogger("omnirelay")
Handler = Callable[[Runtime, Request, Call], Awaitable[Response | StreamResponse]]


_ID_PREFIX = "req_" + os.urandom(6).hex()  # unique per process start
_ID_COUNTER = itertools.count(1)


def new_request_id() -> str:
    """Unique request ids without a syscall per request: a random per-process prefix and a counter."""
    return f"{_ID_PREFIX}{next(_ID_COUNTER):012x}"


def error_response(
    err: GatewayError,
    request_id: str,
    extra: dict[str, str] | None = None,
    ingress: Ingress = openai_surface.OPENAI,
) -> Response:
    # Only the retry hints reach the client; the vendor's own rate-limit headers stay with the router.
    headers = {k: v for k, v in err.headers.items() if k in RETRY_HEADERS}
    if extra:
        headers.update(extra)
    headers["x-request-id"] = request_id
    # A protocol may answer some refusals with its own status (Anthropic: 402 for billing).
    error_status: Callable[[GatewayError], int] | None = getattr(ingress, "error_status", None)
    status = error_status(err) if error_status is not None else err.status
    return Response(
        ingress.error_body(err), status_code=status, headers=headers, media_type="application/json"
    )


def endpoint(
    name: str, handler: Handler, ingress: Ingress = openai_surface.OPENAI, admin: bool = False
) -> Callable[[Request], Awaitable[Response | StreamResponse]]:
    """Wrap a pipeline handler: request id, authentication, errors in the ingress protocol's shape,
    one usage record."""

    async def route(request: Request) -> Response | StreamResponse:
        rt: Runtime = request.app.state.runtime
        client = request.client
        call = Call(new_request_id(), name, client.host if client else None)
        try:
            principal = await rt.auth.authenticate(
                request.headers, request.query_params.get("key"), call.client_ip
            )
            call.key_id = principal.key_id
            call.principal = principal
            user_id = principal.key.user_id if principal.key is not None else None
            if user_id and not rt.wallets.known(user_id):
                balance = await rt.store.billing.balance(user_id)
                if balance is not None:
                    rt.wallets.load(user_id, balance)
            length = request.headers.get("content-length")
            call.request_bytes = int(length) if length and length.isdigit() else 0
            if admin:
                admin_access.admit(principal, name)
            elif free_tier.enabled(rt.config.billing.free_tier):
                family = free_tier.family(name, request.method, request.path_params.get("target"))
                if family is not None:
                    await free_tier.admit(
                        rt.config.billing.free_tier,
                        rt.dispatcher.state,
                        principal,
                        family,
                        call.client_ip,
                        call.ts,
                    )
            if not admin:  # opt-in body logging (never of admin calls: they can carry secrets)
                call.bodies = rt.body_log.capture_for(principal.key)
                if call.bodies is not None:
                    request = call.bodies.tee_request(request)
            response = await handler(rt, request, call)
        except GatewayError as exc:
            failed = error_response(exc, call.request_id, call.headers(), ingress)
            call.status, call.error = failed.status_code, exc.message  # as the client saw it (402)
            if call.bodies is not None:
                call.bodies.tee_response(failed)
            await rt.settle(call)
            return failed
        except Exception:
            log.exception("request %s failed inside the gateway", call.request_id)
            err = GatewayError("The gateway failed to process the request.", status=500)
            call.status, call.error = 500, "internal error"
            failed = error_response(err, call.request_id, ingress=ingress)
            if call.bodies is not None:
                call.bodies.tee_response(failed)
            await rt.settle(call)
            return failed
        if call.bodies is not None:
            call.bodies.tee_response(response)
        if isinstance(response, StreamResponse):

            async def on_close(disconnected: bool) -> None:
                failure = response.failure
                if failure is not None:
                    log.error(
                        "request %s: the stream failed inside the gateway",
                        call.request_id,
                        exc_info=(type(failure), failure, failure.__traceback__),
                    )
                    call.status, call.error = 500, "internal error while streaming"
                elif disconnected and call.status < 400:
                    call.status, call.error = 499, "client disconnected"
                try:
                    if call.metering is not None:  # the stream's end-of-stream count (see Call.meter)
                        await call.metering
                    # A client that left before the first chunk still had its prompt processed; an
                    # upstream that failed before any output is a failed attempt and costs nothing.
                    if (
                        disconnected
                        and call.usage is None
                        and call.prompt is not None
                        and call.provider
                        and call.billable
                    ):
                        model = call.upstream_model or call.model  # a large prompt: off the loop
                        call.usage = await off_loop(
                            partial(prompt_usage, call.prompt), model, call.request_bytes
                        )
                except Exception:  # whatever happens, the request is settled (finally)
                    log.exception("metering request %s failed; settling what is known", call.request_id)
                finally:
                    await rt.settle(call)

            response.on_close = on_close
        else:
            call.status = response.status_code
            await rt.settle(call)
        return response

    return route


async def health(request: Request) -> Response:
    return Response(b'{"status":"ok"}', media_type="application/json")


async def ready(request: Request) -> Response:
    rt: Runtime | None = getattr(request.app.state, "runtime", None)
    store_ok = rt is not None and await rt.store.ping()
    body = {
        "status": "ready" if store_ok else "unavailable",
        "store": store_ok,
        "config": rt is not None,
        "providers": len(rt.providers) if rt else 0,
    }
    return Response(json.dumps(body), status_code=200 if store_ok else 503, media_type="application/json")


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        err: GatewayError = NotFound(f"Unknown path {request.url.path!r}.", code="unknown_url")
    else:
        err = GatewayError(str(exc.detail), status=exc.status_code, type="invalid_request_error")
    return error_response(err, new_request_id())


ROUTES = [
    ("POST", "/v1/chat/completions", "chat.completions", openai_surface.chat_completions),
    ("POST", "/v1/embeddings", "embeddings", openai_surface.embeddings),
    (
        "POST",
        "/v1/completions",
        "completions",
        openai_surface.openai_json_endpoint("/completions", streams=True),
    ),
    (
        "POST",
        "/v1/moderations",
        "moderations",
        openai_surface.openai_json_endpoint("/moderations", default_model="omni-moderation-latest"),
    ),
    (
        "POST",
        "/v1/images/generations",
        "images.generations",
        openai_surface.openai_json_endpoint("/images/generations", default_model="dall-e-2"),
    ),
    ("POST", "/v1/audio/speech", "audio.speech", openai_surface.openai_json_endpoint("/audio/speech")),
    ("POST", "/v1/audio/transcriptions", "audio.transcriptions", openai_surface.transcriptions),
    ("GET", "/v1/models", "models", openai_surface.list_models),
    ("GET", "/v1/models/{model:path}", "models", openai_surface.get_model),
]
ROUTES += [
    ("POST", "/v1/responses", "responses", responses_surface.create),
    ("GET", "/v1/responses/{response_id}", "responses", responses_surface.retrieve),
]
# Gemini, under /v1beta (and /v1, which google-genai 3.x uses), also below /google.
GEMINI_ROUTES = [
    ("POST", "/v1beta/models/{target:path}", "gemini", gemini_surface.dispatch),
    ("POST", "/v1/models/{target:path}", "gemini", gemini_surface.dispatch),
    ("GET", "/v1beta/models", "models", gemini_surface.list_models),
    ("GET", "/v1beta/models/{target:path}", "models", gemini_surface.get_model),
]
ADMIN_ROUTES = [
    ("GET", "/admin/deployments", "admin.deployments", admin_deployments.list_deployments),
    ("POST", "/admin/deployments/{dep_id:path}/enable", "admin.deployments", admin_deployments.enable),
    ("POST", "/admin/deployments/{dep_id:path}/test", "admin.deployments", admin_deployments.test_deployment),
    ("POST", "/admin/providers/{name}/test", "admin.providers", admin_deployments.test_provider),
    ("POST", "/admin/api/keys", "admin.keys", admin_keys.create),
    ("GET", "/admin/api/keys", "admin.keys", admin_keys.list_keys),
    ("GET", "/admin/api/keys/{key_id}", "admin.keys", admin_keys.get),
    ("PATCH", "/admin/api/keys/{key_id}", "admin.keys", admin_keys.update),
    ("DELETE", "/admin/api/keys/{key_id}", "admin.keys", admin_keys.revoke),
    ("GET", "/admin/api/openapi.json", "admin.openapi", admin_openapi.openapi_handler),
    ("POST", "/admin/api/users", "admin.users", admin_users.create),
    ("GET", "/admin/api/users/{user_id}", "admin.users", admin_users.get),
    ("POST", "/admin/api/users/{user_id}/topup", "admin.users", admin_users.topup),
    ("GET", "/admin/api/users", "admin.users", admin_users.list_users),
    ("PATCH", "/admin/api/users/{user_id}", "admin.users", admin_users.update),
    ("GET", "/admin/api/users/{user_id}/ledger", "admin.users", admin_users.ledger),
    ("DELETE", "/admin/api/users/{user_id}", "admin.users", admin_users.disable),
    ("GET", "/admin/api/me", "admin.me", admin_me.get),
    ("GET", "/admin/api/me/ledger", "admin.me", admin_me.ledger),
    ("POST", "/admin/api/me/redeem", "admin.me", admin_me.redeem),
    ("POST", "/admin/api/redemption-codes", "admin.redemption_codes", admin_redemption.create),
    ("GET", "/admin/api/redemption-codes", "admin.redemption_codes", admin_redemption.list_codes),
    (
        "DELETE",
        "/admin/api/redemption-codes/{code_hash}",
        "admin.redemption_codes",
        admin_redemption.void,
    ),
    ("GET", "/admin/api/usage", "admin.usage", admin_usage.summary),
    ("GET", "/admin/api/logs", "admin.logs", admin_usage.search),
    ("GET", "/admin/api/logs/{request_id}", "admin.logs", admin_usage.get_log),
    ("GET", "/admin/api/ip-audit", "admin.ip_audit", admin_usage.ip_audit),
    # provider channels (credentials encrypted at rest), prices, groups: admin/channels, prices, groups
    ("POST", "/admin/api/providers", "admin.providers", admin_channels.create),
    ("GET", "/admin/api/providers", "admin.providers", admin_channels.list_providers),
    ("GET", "/admin/api/providers/{name}", "admin.providers", admin_channels.get),
    ("PATCH", "/admin/api/providers/{name}", "admin.providers", admin_channels.update),
    ("DELETE", "/admin/api/providers/{name}", "admin.providers", admin_channels.delete),
    ("POST", "/admin/api/providers/{name}/enable", "admin.providers", admin_channels.enable),
    ("POST", "/admin/api/providers/{name}/disable", "admin.providers", admin_channels.disable),
    ("POST", "/admin/api/providers/{name}/test", "admin.providers", admin_channels.test),
    ("GET", "/admin/api/prices", "admin.prices", admin_prices.list_prices),
    ("GET", "/admin/api/prices/{model:path}", "admin.prices", admin_prices.get),
    ("PUT", "/admin/api/prices/{model:path}", "admin.prices", admin_prices.put),
    ("DELETE", "/admin/api/prices/{model:path}", "admin.prices", admin_prices.delete),
    ("POST", "/admin/api/groups", "admin.groups", admin_groups.create),
    ("GET", "/admin/api/groups", "admin.groups", admin_groups.list_groups),
    ("GET", "/admin/api/groups/{group_id}", "admin.groups", admin_groups.get),
    ("PATCH", "/admin/api/groups/{group_id}", "admin.groups", admin_groups.update),
    ("DELETE", "/admin/api/groups/{group_id}", "admin.groups", admin_groups.delete),
]
# Anthropic Messages, under both base URLs clients use: http://host and http://host/anthropic.
ANTHROPIC_ROUTES = [
    ("POST", "/v1/messages", "messages", anthropic_surface.anthropic_messages),
    ("POST", "/v1/messages/count_tokens", "messages.count_tokens", anthropic_surface.anthropic_count_tokens),
    ("GET", "/v1/models", "models", anthropic_surface.anthropic_models),
]


def create_app(
    config: Config, data_dir: Path, on_ready: Callable[[Runtime], None] | None = None
) -> Starlette:
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        rt = await start_runtime(config, data_dir)
        app.state.runtime = rt
        if on_ready is not None:
            on_ready(rt)
        try:
            yield
        finally:
            await rt.close()

    routes = [Route("/health", health, methods=["GET"]), Route("/health/ready", ready, methods=["GET"])]
    routes += [Route(path, endpoint(name, fn), methods=[method]) for method, path, name, fn in ROUTES]
    routes += [Route(path, endpoint(name, fn, admin=True), methods=[m]) for m, path, name, fn in ADMIN_ROUTES]
    for method, path, name, fn in GEMINI_ROUTES:
        route = endpoint(name, fn, gemini_surface.GEMINI)
        routes += [Route(path, route, methods=[method]), Route("/google" + path, route, methods=[method])]
    for prefix in ("/google/v1/models", "/google/v1beta/models"):
        routes.append(
            Route(
                prefix, endpoint("models", gemini_surface.list_models, gemini_surface.GEMINI), methods=["GET"]
            )
        )
    for method, path, name, fn in ANTHROPIC_ROUTES:
        route = endpoint(name, fn, anthropic_surface.ANTHROPIC)
        routes.append(Route("/anthropic" + path, route, methods=[method]))
        if path != "/v1/models":
            routes.append(Route(path, route, methods=[method]))
    middleware = []
    if config.server.cors_origins:
        middleware.append(
            Middleware(
                CORSMiddleware,
                allow_origins=config.server.cors_origins,
                allow_methods=["*"],
                allow_headers=["*"],
                expose_headers=[
                    "x-request-id",
                    "x-omnirelay-provider",
                    "x-omnirelay-attempts",
                    "retry-after",
                ],
                max_age=600,
            )
        )
    return Starlette(
        routes=routes,
        lifespan=lifespan,
        middleware=middleware,
        exception_handlers={HTTPException: _http_error},
    )
