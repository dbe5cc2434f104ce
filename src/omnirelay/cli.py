"""The `omnirelay` command."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import time
from pathlib import Path

from omnirelay import __version__
from omnirelay.config import Config, ConfigError, from_environment, load
from omnirelay.runtime import Runtime
from omnirelay.security.keys import mask

DEFAULT_DATA_DIR = "./omnirelay-data"
_SERVE_ENV = "OMNIRELAY_INTERNAL_SERVE"  # hands the parsed options to a granian worker process


def _config(path: str | None) -> Config:
    return load(path) if path else from_environment()


def _data_dir(arg: str | None, config: Config) -> Path:
    return Path(arg or os.environ.get("OMNIRELAY_DATA_DIR") or config.data_dir or DEFAULT_DATA_DIR)


def _banner(host: str, port: int) -> object:
    def on_ready(rt: Runtime) -> None:
        shown_host = "127.0.0.1" if host in ("0.0.0.0", "::") else host
        base = f"http://{shown_host}:{port}"
        model = next(iter(rt.router.models()), ("mock", ""))[0]
        lines = [
            f"OmniRelay {__version__} is listening on {base}",
            f"  OpenAI base URL: {base}/v1",
            f"  data directory:  {rt.data_dir.resolve()}",
            f"  providers:       {', '.join(p.name for p in rt.providers) or 'none'}",
        ]
        if rt.new_master_key:
            key = rt.new_master_key
            lines += [
                f"  master key:      {key}",
                "  (generated now and stored only as a hash: copy it now;"
                " `omnirelay master-key --reset` makes a new one)",
            ]
        else:
            key = "<your master key>"
            lines.append("  master key:      set (as configured, or as shown at first start)")
        lines += [
            "Try it:",
            f"  curl {base}/v1/chat/completions -H 'Authorization: Bearer {key}' "
            f"-H 'Content-Type: application/json' "
            f'-d \'{{"model": "{model}", "messages": [{{"role": "user", "content": "Hello!"}}]}}\'',
        ]
        print("\n".join(lines), flush=True)

    return on_ready


def _serve_uvicorn(config: Config, data_dir: Path, host: str, port: int, log_level: str) -> int:
    import uvicorn

    from omnirelay.app import create_app

    app = create_app(config, data_dir, on_ready=_banner(host, port))  # type: ignore[arg-type]
    server_config = uvicorn.Config(
        app,
        host=host,
        port=port,
        loop="uvloop",
        http="httptools",
        lifespan="on",
        access_log=False,
        log_level=log_level,
        timeout_graceful_shutdown=int(config.server.graceful_shutdown_seconds) or None,
        server_header=False,
        date_header=False,
        timeout_keep_alive=75,
    )
    server = uvicorn.Server(server_config)
    server.run()
    return 0 if server.started else 1


def _serve_granian(args: argparse.Namespace, host: str, port: int) -> int:
    from granian import Granian
    from granian.constants import Interfaces

    os.environ[_SERVE_ENV] = "\x1f".join([args.config or "", args.data_dir or "", host, str(port)])
    Granian(
        "omnirelay.cli:granian_app",
        factory=True,
        address=host,
        port=port,
        interface=Interfaces.ASGI,
        workers=1,
        log_access=False,
    ).serve()
    return 0


def granian_app() -> object:
    """Factory for a granian worker process (`omnirelay serve --server granian`)."""
    from omnirelay.app import create_app

    config_path, data_dir, host, port = os.environ[_SERVE_ENV].split("\x1f")
    config = _config(config_path or None)
    return create_app(config, _data_dir(data_dir or None, config), on_ready=_banner(host, int(port)))  # type: ignore[arg-type]


def cmd_serve(args: argparse.Namespace) -> int:
    config = _config(args.config)
    if args.http_client:
        config.http_client = args.http_client
    host = args.host or config.server.host
    port = args.port if args.port is not None else config.server.port
    data_dir = _data_dir(args.data_dir, config)
    if args.server == "granian":
        return _serve_granian(args, host, port)
    return _serve_uvicorn(config, data_dir, host, port, args.log_level)


def cmd_check(args: argparse.Namespace) -> int:
    config = load(args.config)
    for provider in config.providers:
        models = ", ".join(provider.model_map())
        keys = ", ".join(mask(k) for k in provider.api_keys) or "no key"
        print(f"{provider.name} ({provider.type}): {models} [{keys}]")
    print(f"{args.config}: OK, {len(config.providers)} provider(s)")
    return 0


def cmd_master_key(args: argparse.Namespace) -> int:
    from omnirelay.runtime import reset_master_key

    if not args.reset:
        print(
            "The master key is stored only as a hash. Use --reset to generate a new one "
            "(the old one stops working at the gateway's next start)."
        )
        return 2
    config = _config(args.config)
    key = asyncio.run(reset_master_key(config, _data_dir(args.data_dir, config)))
    print(key)
    return 0


def _cell(value: object) -> str:
    return "-" if value in (None, "", {}, []) else str(value)


def cmd_status(args: argparse.Namespace) -> int:
    """Show every deployment of a running gateway (GET /admin/deployments)."""
    import httpx

    key = args.key or os.environ.get("OMNIRELAY_MASTER_KEY")
    if not key:
        print("omnirelay status needs the master key: --key or OMNIRELAY_MASTER_KEY", file=sys.stderr)
        return 2
    try:
        resp = httpx.get(
            args.url.rstrip("/") + "/admin/deployments",
            headers={"Authorization": f"Bearer {key}"},
            timeout=10,
        )
    except httpx.HTTPError as exc:
        print(f"omnirelay status: cannot reach {args.url}: {exc}", file=sys.stderr)
        return 1
    if resp.status_code != 200:
        print(f"omnirelay status: HTTP {resp.status_code}: {resp.text[:300]}", file=sys.stderr)
        return 1
    rows = [("DEPLOYMENT", "STATE", "BREAKER", "RPM", "RPD", "IN FLIGHT", "LATENCY MS", "LAST ERROR")]
    now = time.time()
    for dep in resp.json()["data"]:
        limits, usage = dep["limits"], dep["usage"]
        if dep["invalid"]:
            state = "invalid: " + dep["invalid"]
        elif dep["cooldown"]:
            state = f"cooling {max(0, round(dep['cooldown']['until'] - now))}s: {dep['cooldown']['reason']}"
        else:
            state = (dep["health"] or {}).get("status", "ok")
        rpm = f"{usage['requests_minute']}/{_cell(limits['rpm'])}"
        rpd = f"{usage['requests_day']}/{_cell(limits['rpd'])}"
        latency = dep["latency_ms"] and round(dep["latency_ms"], 1)
        last = dep["last_error"] and f"{dep['last_error']['kind']}: {dep['last_error']['reason']}"
        rows.append(
            (
                dep["id"],
                state[:60],
                dep["breaker"]["state"],
                rpm,
                rpd,
                str(dep["in_flight"]),
                _cell(latency),
                _cell(last)[:70],
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
    return 0


def _admin(args: argparse.Namespace, method: str, path: str, body: dict[str, object] | None = None) -> object:
    """Call the admin API of a running gateway; prints the error and exits 1 on failure."""
    import httpx

    key = args.key or os.environ.get("OMNIRELAY_MASTER_KEY")
    if not key:
        raise SystemExit("omnirelay: the master key is needed: --key or OMNIRELAY_MASTER_KEY")
    try:
        resp = httpx.request(
            method,
            args.url.rstrip("/") + path,
            json=body,
            timeout=10,
            headers={"Authorization": f"Bearer {key}"},
        )
    except httpx.HTTPError as exc:
        raise SystemExit(f"omnirelay: cannot reach {args.url}: {exc}") from None
    if resp.status_code >= 400:
        raise SystemExit(f"omnirelay: HTTP {resp.status_code}: {resp.text[:500]}")
    return resp.json()


def cmd_keys(args: argparse.Namespace) -> int:
    if args.action == "create":
        body: dict[str, object] = {}
        for name in ("name", "user_id", "quota", "expires_at", "rpm", "rpd", "tpm"):
            if getattr(args, name) is not None:
                body[name] = getattr(args, name)
        if args.models:
            body["allowed_models"] = args.models.split(",")
        if args.ips:
            body["allowed_ips"] = args.ips.split(",")
        made = _admin(args, "POST", "/admin/api/keys", body)
        assert isinstance(made, dict)
        print(f"{made['id']}  {made['key']}")
        print("(the key is shown only now: copy it)", file=sys.stderr)
    elif args.action == "list":
        listed = _admin(args, "GET", "/admin/api/keys?limit=1000")
        assert isinstance(listed, dict)
        for key in listed["data"]:
            quota = "unlimited" if key["quota"] is None else key["quota"]
            print(f"{key['id']}  {key['prefix']}  {key['status']:8}  quota={quota}  {key['name'] or ''}")
    else:
        gone = _admin(args, "DELETE", f"/admin/api/keys/{args.id}")
        assert isinstance(gone, dict)
        print(f"{gone['id']} {gone['status']}")
    return 0


def cmd_users(args: argparse.Namespace) -> int:
    if args.action == "create":
        user = _admin(args, "POST", "/admin/api/users", {"name": args.name, "role": args.role})
    else:
        user = _admin(args, "GET", f"/admin/api/users/{args.id}")
    assert isinstance(user, dict)
    print(f"{user['id']}  {user['name']}  role={user['role']}  balance={user['balance']}")
    return 0


def cmd_topup(args: argparse.Namespace) -> int:
    user = _admin(
        args, "POST", f"/admin/api/users/{args.user_id}/topup", {"amount": args.amount, "note": args.note}
    )
    assert isinstance(user, dict)
    print(f"{user['id']}  balance={user['balance']}")
    return 0


def cmd_usage(args: argparse.Namespace) -> int:
    """Totals per key and model from the usage records of a data directory (the embedded store)."""
    import sqlite3

    path = Path(args.data_dir or os.environ.get("OMNIRELAY_DATA_DIR") or DEFAULT_DATA_DIR) / "omnirelay.db"
    if not path.exists():
        print(f"omnirelay usage: no database at {path}", file=sys.stderr)
        return 1
    since = time.time() - args.hours * 3600
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        rows = conn.execute(
            "SELECT key_id, model, COUNT(*), SUM(status >= 400), SUM(input_tokens), SUM(output_tokens), "
            "SUM(cost) FROM usage_records WHERE ts >= ? GROUP BY key_id, model "
            "ORDER BY SUM(cost) DESC, COUNT(*) DESC",
            (since,),
        ).fetchall()
    finally:
        conn.close()
    print(
        f"{'KEY':28} {'MODEL':28} {'REQUESTS':>8} {'ERRORS':>6} {'INPUT':>10} {'OUTPUT':>10} {'CREDITS':>12}"
    )
    for key_id, model, count, errors, tokens_in, tokens_out, cost in rows:
        print(
            f"{key_id:28.28} {model:28.28} {count:>8} {errors or 0:>6} {tokens_in or 0:>10} "
            f"{tokens_out or 0:>10} {(cost or 0) / 1_000_000:>12.6f}"
        )
    return 0


def cmd_rotate_key(args: argparse.Namespace) -> int:
    """Re-encrypt every stored provider credential under a new encryption key, in place."""
    from omnirelay.channels import rotate_encryption_key
    from omnirelay.security.secrets import SecretError
    from omnirelay.storage.sql import open_store, sqlite_url

    config = _config(args.config)
    data_dir = _data_dir(args.data_dir, config)

    async def run() -> object:
        store = open_store(config.database_url or sqlite_url(data_dir))
        await store.start()
        try:
            return await rotate_encryption_key(store, data_dir, os.environ)
        finally:
            await store.close()

    try:
        result = asyncio.run(run())
    except SecretError as exc:
        print(f"omnirelay rotate-encryption-key: {exc}", file=sys.stderr)
        return 1
    from omnirelay.channels import Rotation

    assert isinstance(result, Rotation)
    print(
        f"re-encrypted the credentials of {result.channels} channel(s): "
        f"key {result.old_key_id} -> {result.new_key_id}"
    )
    if result.from_env:
        print(
            "Now set OMNIRELAY_ENCRYPTION_KEY to the value of OMNIRELAY_NEW_ENCRYPTION_KEY, unset "
            "OMNIRELAY_NEW_ENCRYPTION_KEY, and restart the gateway."
        )
    else:
        key_file = data_dir / "encryption.key"
        print(f"The new key is in {key_file} (mode 0600): back it up; restart the gateway.")
    return 0


def cmd_providers(args: argparse.Namespace) -> int:
    listed = _admin(args, "GET", "/admin/api/providers")
    assert isinstance(listed, dict)
    for p in listed["data"]:
        state = "enabled" if p["enabled"] else "disabled"
        keys = ", ".join(p["api_keys"]) or "no key"
        print(f"{p['name']:24} {p['source']:6} {state:8} {p['type']:18} {len(p['models'])} model(s) [{keys}]")
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="omnirelay", description="A self-hosted LLM API gateway.")
    p.add_argument("--version", action="version", version=f"omnirelay {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the gateway")
    serve.add_argument(
        "--config", "-c", help="YAML config file (default: providers from the environment + mock)"
    )
    serve.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", "-p", type=int, help="port (default 8080)")
    serve.add_argument(
        "--data-dir", help=f"data directory (default $OMNIRELAY_DATA_DIR or {DEFAULT_DATA_DIR})"
    )
    serve.add_argument(
        "--server",
        choices=["uvicorn", "granian"],
        default="uvicorn",
        help="ASGI server (uvicorn is the measured default)",
    )
    serve.add_argument("--http-client", choices=["aiohttp", "httpx"], help="upstream HTTP client")
    serve.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    serve.set_defaults(fn=cmd_serve)

    check = sub.add_parser("check-config", help="validate a config file and show what it configures")
    check.add_argument("config")
    check.set_defaults(fn=cmd_check)

    status = sub.add_parser("status", help="show the deployments of a running gateway")
    status.add_argument("--url", default="http://127.0.0.1:8080", help="the gateway's base URL")
    status.add_argument("--key", help="the master key (default $OMNIRELAY_MASTER_KEY)")
    status.set_defaults(fn=cmd_status)

    keys = sub.add_parser("keys", help="create, list or revoke gateway keys on a running gateway")
    keys_sub = keys.add_subparsers(dest="action", required=True)
    for action, text in (("create", "create a key"), ("list", "list keys"), ("revoke", "disable a key")):
        one = keys_sub.add_parser(action, help=text)
        one.add_argument("--url", default="http://127.0.0.1:8080", help="the gateway's base URL")
        one.add_argument("--key", help="the master key (default $OMNIRELAY_MASTER_KEY)")
        if action == "revoke":
            one.add_argument("id", help="the key's id (key_…)")
        if action == "create":
            one.add_argument("--name")
            one.add_argument("--user-id", dest="user_id")
            one.add_argument("--quota", type=int, help="credits in micro-units (default: unlimited)")
            one.add_argument("--expires-at", dest="expires_at", help="RFC 3339 time")
            one.add_argument("--models", help="allowed models, comma-separated")
            one.add_argument("--ips", help="allowed client IPs or CIDRs, comma-separated")
            for limit in ("rpm", "rpd", "tpm"):
                one.add_argument(f"--{limit}", type=int)
    keys.set_defaults(fn=cmd_keys)

    def admin_args(one: argparse.ArgumentParser) -> None:
        one.add_argument("--url", default="http://127.0.0.1:8080", help="the gateway's base URL")
        one.add_argument("--key", help="the master key (default $OMNIRELAY_MASTER_KEY)")

    users = sub.add_parser("users", help="create or show users on a running gateway")
    users_sub = users.add_subparsers(dest="action", required=True)
    made = users_sub.add_parser("create", help="create a user")
    made.add_argument("name")
    made.add_argument("--role", choices=["user", "admin"], default="user")
    shown = users_sub.add_parser("show", help="show a user and its balance")
    shown.add_argument("id")
    for one in (made, shown):
        admin_args(one)
    users.set_defaults(fn=cmd_users)

    topup = sub.add_parser("topup", help="add credit to a user's balance (micro-units)")
    topup.add_argument("user_id")
    topup.add_argument("amount", type=int, help="micro-units of credit (1 credit = 1000000)")
    topup.add_argument("--note")
    admin_args(topup)
    topup.set_defaults(fn=cmd_topup)

    usage = sub.add_parser("usage", help="usage and cost per key and model (embedded store)")
    usage.add_argument("--data-dir")
    usage.add_argument("--hours", type=float, default=24.0, help="how far back (default 24)")
    usage.set_defaults(fn=cmd_usage)

    rotate = sub.add_parser(
        "rotate-encryption-key",
        help="re-encrypt stored provider credentials under a new key (stop the gateway first)",
    )
    rotate.add_argument("--config", "-c")
    rotate.add_argument("--data-dir")
    rotate.set_defaults(fn=cmd_rotate_key)

    providers = sub.add_parser("providers", help="list the providers of a running gateway")
    providers_sub = providers.add_subparsers(dest="action", required=True)
    admin_args(providers_sub.add_parser("list", help="config and API providers, keys masked"))
    providers.set_defaults(fn=cmd_providers)

    mk = sub.add_parser("master-key", help="manage the master key")
    mk.add_argument("--reset", action="store_true", help="generate a new master key and print it")
    mk.add_argument("--config", "-c")
    mk.add_argument("--data-dir")
    mk.set_defaults(fn=cmd_master_key)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(
        level=getattr(args, "log_level", "info").upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("alembic").setLevel(logging.WARNING)
    try:
        return int(args.fn(args))
    except ConfigError as exc:
        print(f"omnirelay: configuration error: {exc}", file=sys.stderr)
        return 2
