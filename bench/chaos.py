"""OmniRelay chaos run: failover while three fake upstreams fail at random and go down and up.

``python bench/chaos.py`` (≈65 s) or ``python bench/chaos.py --quick`` (≈20 s).

Three fake OpenAI upstreams (one process, three ports, built on ``fake_upstream.py``) answer with a
random error mix (500s, 429s with ``retry-after``, first bytes slower than the gateway's first-byte
timeout) and go fully down on a seeded schedule that always keeps at least one of them up. The gateway
serves the public model ``chaos-model`` from all three while ``--clients`` concurrent clients send chat
requests (a share of them streaming). The report says how many requests succeeded while at least one
upstream was up, why the others failed (with the gateway's log lines for each), how many attempts
failover needed and what it cost in latency, and what every fake upstream saw.

Markdown goes to stdout, progress to stderr, the full results to ``bench/results/chaos-<timestamp>.json``
and the gateway's log next to it (``chaos-<timestamp>.gateway.log``). See ``bench/README.md``
("Chaos run") for what the numbers mean.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import hashlib
import importlib.util
import itertools
import os
import random
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Final

import aiohttp
import orjson

from fake_upstream import _RE_STREAM, FakeHTTPProtocol, Reply, Responder, _WireCache
from fake_upstream import CHAT_PATH as UPSTREAM_CHAT_PATH
from loadgen import percentiles
from run import (
    BENCH_DIR,
    CHAT_PATH,
    MASTER_KEY,
    BenchError,
    Procs,
    find_omnirelay,
    free_port,
    http_request,
    log,
    signals_as_interrupt,
    wait_healthy,
)

MODEL: Final = "chaos-model"
NAMES: Final = ("p1", "p2", "p3")
HOST: Final = "127.0.0.1"
UPSTREAMS_CMD: Final = "_upstreams"  # internal sub-command: the fake upstream process
OUTAGE_MODES: Final = ("refuse", "close")
SLOW_LATENCY_MS: Final = 500.0  # a first-attempt request slower than this waited for a deployment
STALL_S: Final = 0.5  # no upstream got a request for this long: the whole gateway was waiting
LONG_GAP_S: Final = 5.0  # an up upstream that got no request for longer than this was held back
STATE_PATH: Final = "/admin/deployments"  # the gateway's deployment state (breakers, cool-downs)
MAX_ARRIVALS: Final = 500_000

# The gateway settings under test (bench/README.md, "Chaos run").
TIMEOUTS: Final = {"connect": 1, "first_byte": 1.0, "idle": 2}
DEADLINE_S: Final = 10
MAX_ATTEMPTS: Final = 4
ROUTING: Final = {
    "max_attempts": MAX_ATTEMPTS,
    "deadline_seconds": DEADLINE_S,
    "breaker": {"failures": 3, "window_seconds": 5, "open_seconds": 2},
    "rate_limit_ladder": [1, 2, 5],
}
DEADLINE_MS: Final = DEADLINE_S * 1000


# --------------------------------------------------------------------------------------------------------
# Chaos settings shared by both processes
# --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Mix:
    """Share of chat requests answered with each fault (the rest succeed at once)."""

    p500: float = 0.05
    p429: float = 0.03
    slow: float = 0.02

    def describe(self) -> str:
        return f"500={self.p500:g}, 429={self.p429:g}, slow={self.slow:g}"


def parse_mix(text: str) -> Mix:
    """``500=0.05,429=0.03,slow=0.02`` (missing keys keep their default)."""
    names = {"500": "p500", "429": "p429", "slow": "slow"}
    values: dict[str, float] = {}
    for part in text.split(","):
        if not part.strip():
            continue
        key, sep, value = part.partition("=")
        if not sep or key.strip() not in names:
            raise argparse.ArgumentTypeError(f"bad error mix item {part!r}; use 500=P,429=P,slow=P")
        values[names[key.strip()]] = float(value)
    mix = Mix(**values)
    if min(mix.p500, mix.p429, mix.slow) < 0 or mix.p500 + mix.p429 + mix.slow > 1:
        raise argparse.ArgumentTypeError(f"error mix {text!r}: shares must be >= 0 and sum to <= 1")
    return mix


@dataclass(frozen=True)
class Outage:
    upstream: int  # index into NAMES
    start: float  # seconds after the chaos start
    end: float
    mode: str  # "refuse": stop listening; "close": accept connections and close them at once


def make_schedule(
    rng: random.Random, duration: float, every: float, down_min: float, down_max: float, n: int
) -> list[Outage]:
    """Outages about every ``every`` s, each ``down_min``-``down_max`` s long, never of all ``n`` at once."""
    outages: list[Outage] = []
    t = every * rng.uniform(0.3, 0.6)
    while t < duration - 1.0:
        length = rng.uniform(down_min, down_max)
        busy = {o.upstream for o in outages if o.start < t + length and o.end > t}
        if len(busy) < n - 1:  # adding this one still leaves one upstream up
            free = [i for i in range(n) if i not in busy]
            fresh = [i for i in free if not outages or i != outages[-1].upstream]
            pick = rng.choice(fresh or free)
            mode = OUTAGE_MODES[len(outages) % len(OUTAGE_MODES)]  # alternate, so every run has both
            outages.append(Outage(pick, round(t, 3), round(t + length, 3), mode))
        t += every * rng.uniform(0.8, 1.2)
    return outages


# --------------------------------------------------------------------------------------------------------
# The fake upstreams (``chaos.py _upstreams``): fake_upstream's HTTP server with faults injected
# --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ChaosReply(Reply):
    """A reply with extra raw header lines (``retry-after``); never cached on the wire."""

    headers: bytes = b""


@dataclass(frozen=True, slots=True)
class Delayed(Reply):
    """``inner``, sent after ``delay`` seconds. ``events`` is set to a dummy so that the protocol hands
    the reply to its asynchronous path (``_slow_stream``)."""

    inner: Reply | None = None
    delay: float = 0.0


REASONS: Final = {200: b"OK", 404: b"Not Found", 409: b"Conflict", 429: b"Too Many Requests"}


class ChaosWire(_WireCache):
    def plain(self, reply: Reply, keep_alive: bool) -> bytes:
        if not isinstance(reply, ChaosReply):
            return super().plain(reply, keep_alive)
        head = b"HTTP/1.1 %d %b\r\ncontent-type: %b\r\ncontent-length: %d\r\n%b%b\r\n" % (
            reply.status,
            REASONS.get(reply.status, b"Internal Server Error" if reply.status >= 500 else b"OK"),
            reply.content_type,
            len(reply.body),
            reply.headers,
            b"" if keep_alive else b"connection: close\r\n",
        )
        return head + reply.body


def _json_reply(status: int, obj: Any, headers: bytes = b"") -> ChaosReply:
    return ChaosReply(status, b"application/json", orjson.dumps(obj), headers=headers)


@dataclass
class UpstreamStats:
    requests: int = 0  # chat completions received, all outcomes
    stream_requests: int = 0
    before_chaos: int = 0  # answered normally before the chaos started (sanity checks)
    ok: int = 0  # answered 200 at once
    err_500: int = 0
    err_429: int = 0
    slow: int = 0  # first byte held back for --slow-seconds
    slow_sent: int = 0  # ... and still sent because the gateway had not given up yet
    connections: int = 0  # TCP connections accepted
    dropped_at_accept: int = 0  # accepted during a "close" outage and closed at once
    cut_by_outage: int = 0  # open connections closed when an outage began


class FakeUpstream:
    def __init__(
        self, name: str, port: int, mix: Mix, seed: int, slow_seconds: float, retry_after: float
    ) -> None:
        self.name = name
        self.port = port
        self.mix = mix
        self.rng = random.Random(seed)
        self.slow_seconds = slow_seconds
        self.up = True
        self.chaos = False
        self.server: asyncio.AbstractServer | None = None
        self.conns: set[ChaosProtocol] = set()
        self.stats = UpstreamStats()
        self.arrivals: list[tuple[float, str]] = []  # (unix time, outcome) of every chat request in chaos
        self.responder = ChaosResponder(self)
        self.wire = ChaosWire()
        self.err500 = _json_reply(
            500,
            {
                "error": {
                    "message": "The server had an error while processing your request.",
                    "type": "server_error",
                    "param": None,
                    "code": None,
                }
            },
        )
        self.err429 = _json_reply(
            429,
            {
                "error": {
                    "message": f"Rate limit reached for {MODEL} on requests per min (RPM): "
                    "Limit 600, Used 600, Requested 1.",
                    "type": "requests",
                    "param": None,
                    "code": "rate_limit_exceeded",
                }
            },
            b"retry-after: %b\r\n" % f"{retry_after:g}".encode(),
        )

    async def listen(self) -> None:
        loop = asyncio.get_running_loop()
        for attempt in range(20):
            try:
                self.server = await loop.create_server(
                    lambda: ChaosProtocol(self), HOST, self.port, backlog=4096, reuse_address=True
                )
                return
            except OSError:
                if attempt == 19:
                    raise
                await asyncio.sleep(0.05)

    def cut(self) -> int:
        conns = list(self.conns)
        for conn in conns:
            conn.abort()
        return len(conns)

    async def go_down(self, mode: str) -> int:
        self.up = False
        if mode == "refuse" and self.server is not None:
            self.server.close()
            self.server = None
        cut = self.cut()
        self.stats.cut_by_outage += cut
        return cut

    async def go_up(self) -> None:
        if self.server is None:
            await self.listen()
        self.up = True


class ChaosResponder(Responder):
    def __init__(self, upstream: FakeUpstream) -> None:
        super().__init__()
        self.upstream = upstream

    def reply(self, method: bytes, path: bytes, body: bytes) -> Reply:
        normal = super().reply(method, path, body)
        if path != UPSTREAM_CHAT_PATH or method != b"POST":
            return normal
        up = self.upstream
        st = up.stats
        st.requests += 1
        if _RE_STREAM.search(body) is not None:
            st.stream_requests += 1
        if not up.chaos:
            st.before_chaos += 1
            return normal
        r = up.rng.random()
        mix = up.mix
        reply: Reply
        if r < mix.p500:
            st.err_500 += 1
            outcome, reply = "500", up.err500
        elif r < mix.p500 + mix.p429:
            st.err_429 += 1
            outcome, reply = "429", up.err429
        elif r < mix.p500 + mix.p429 + mix.slow:
            st.slow += 1
            outcome = "slow"
            reply = Delayed(200, b"application/json", events=(b"",), inner=normal, delay=up.slow_seconds)
        else:
            st.ok += 1
            outcome, reply = "ok", normal
        if len(up.arrivals) < MAX_ARRIVALS:
            up.arrivals.append((round(time.time(), 4), outcome))
        return reply


# Any positive value makes FakeHTTPProtocol hand SSE and Delayed replies to ``_slow_stream`` (overridden
# below: it sends the whole stream at once, after the delay if there is one).
_ASYNC_REPLIES: Final = 1e-3


class ChaosProtocol(FakeHTTPProtocol):
    def __init__(self, upstream: FakeUpstream) -> None:
        super().__init__(upstream.responder, upstream.wire, _ASYNC_REPLIES)
        self.upstream = upstream

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        up = self.upstream
        up.stats.connections += 1
        if not up.up:  # a "close" outage: the port still accepts, but every connection dies at once
            up.stats.dropped_at_accept += 1
            self.abort()
            return
        up.conns.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.upstream.conns.discard(self)
        super().connection_lost(exc)

    def abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()

    async def _slow_stream(self, reply: Reply, keep_alive: bool) -> None:
        try:
            if isinstance(reply, Delayed):
                await asyncio.sleep(reply.delay)
                if reply.inner is None:
                    return
                reply = reply.inner
                self.upstream.stats.slow_sent += 1
            transport = self._transport
            if transport is None or transport.is_closing():
                return
            if reply.events:
                head, chunks = self._wire.stream(reply, keep_alive)
                transport.write(head + chunks)
            else:
                transport.write(self._wire.plain(reply, keep_alive))
            if not keep_alive:
                transport.close()
                return
        finally:
            self._busy = False
            self._task = None
        if self._buf:
            self._process()


class Fakes:
    """The three upstreams, their outage schedule and the timeline of what actually happened."""

    def __init__(self, upstreams: list[FakeUpstream]) -> None:
        self.upstreams = upstreams
        self.timeline: list[dict[str, Any]] = []
        self.started_at: float | None = None
        self.tasks: set[asyncio.Task[None]] = set()

    def start(self, t0: float, outages: list[Outage]) -> None:
        self.started_at = t0
        for up in self.upstreams:
            up.chaos = True
        task = asyncio.get_running_loop().create_task(self._run(t0, outages))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _run(self, t0: float, outages: list[Outage]) -> None:
        events = [(t0 + o.start, 1, o) for o in outages] + [(t0 + o.end, 0, o) for o in outages]
        events.sort(key=lambda e: (e[0], e[1]))  # at the same instant, "up" first
        for at, down, o in events:
            await asyncio.sleep(max(0.0, at - time.time()))
            up = self.upstreams[o.upstream]
            entry: dict[str, Any] = {"upstream": up.name, "event": "down" if down else "up", "mode": o.mode}
            try:
                if down:
                    entry["cut"] = await up.go_down(o.mode)
                else:
                    await up.go_up()
            except OSError as e:
                entry["error"] = f"{type(e).__name__}: {e}"
            entry["t"] = time.time()
            entry["planned_t"] = at
            self.timeline.append(entry)
            sys.stdout.write(orjson.dumps(entry).decode() + "\n")
            sys.stdout.flush()

    def stats(self) -> dict[str, Any]:
        return {
            "started_at": self.started_at,
            "timeline": self.timeline,
            "upstreams": [
                {
                    "name": u.name,
                    "port": u.port,
                    "up": u.up,
                    "mix": asdict(u.mix),
                    **asdict(u.stats),
                    "arrivals": u.arrivals,
                }
                for u in self.upstreams
            ],
        }


class ControlResponder(Responder):
    """``POST /__chaos/start`` {"t0": unix time, "outages": [...]}; ``GET /__chaos/stats``; ``GET /health``.

    The control port never fails and never goes down."""

    def __init__(self, fakes: Fakes) -> None:
        super().__init__()
        self.fakes = fakes

    def reply(self, method: bytes, path: bytes, body: bytes) -> Reply:
        if path == b"/__chaos/start" and method == b"POST":
            if self.fakes.started_at is not None:
                return _json_reply(409, {"error": "already started"})
            data = orjson.loads(body)
            outages = [Outage(**o) for o in data["outages"]]
            self.fakes.start(float(data["t0"]), outages)
            return _json_reply(200, {"ok": True, "outages": len(outages)})
        if path == b"/__chaos/stats" and method == b"GET":
            return _json_reply(200, self.fakes.stats())
        return super().reply(method, path, body)


async def serve_upstreams(a: argparse.Namespace) -> None:
    loop = asyncio.get_running_loop()
    ports = [int(p) for p in a.ports.split(",")]
    mixes = [Mix(**m) for m in orjson.loads(a.mix)]
    fakes = Fakes(
        [
            FakeUpstream(name, port, mix, a.seed * 1000 + i, a.slow_seconds, a.retry_after)
            for i, (name, port, mix) in enumerate(zip(NAMES, ports, mixes, strict=True))
        ]
    )
    for up in fakes.upstreams:
        await up.listen()
    control_responder, control_wire = ControlResponder(fakes), ChaosWire()
    control = await loop.create_server(
        lambda: FakeHTTPProtocol(control_responder, control_wire, 0.0), HOST, a.control, reuse_address=True
    )
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        loop.add_signal_handler(sig, stop.set)
    # Never outlive the orchestrator (re-parented when it dies) or --max-lifetime.
    parent = os.getppid()
    lifetime = loop.call_later(a.max_lifetime, stop.set)

    def orphan_check() -> None:
        if os.getppid() != parent:
            stop.set()
        else:
            loop.call_later(0.5, orphan_check)

    orphan_check()
    print(f"chaos upstreams {dict(zip(NAMES, ports, strict=True))}, control {a.control}", flush=True)
    await stop.wait()
    lifetime.cancel()
    control.close()
    for up in fakes.upstreams:
        if up.server is not None:
            up.server.close()
        up.cut()
    print(orjson.dumps({"final": fakes.stats()}).decode(), flush=True)


def upstreams_main(argv: Sequence[str]) -> int:
    p = argparse.ArgumentParser(prog="chaos.py _upstreams", description="The chaos run's fake upstreams.")
    p.add_argument("--ports", required=True, help="three comma-separated ports (p1,p2,p3)")
    p.add_argument("--control", type=int, required=True, help="control port")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--mix", required=True, help='JSON list of three {"p500","p429","slow"} objects')
    p.add_argument("--slow-seconds", type=float, default=2.0)
    p.add_argument("--retry-after", type=float, default=1.0)
    p.add_argument("--max-lifetime", type=float, default=600.0)
    a = p.parse_args(argv)
    import uvloop

    with contextlib.suppress(KeyboardInterrupt):
        uvloop.run(serve_upstreams(a))
    return 0


# --------------------------------------------------------------------------------------------------------
# Clients
# --------------------------------------------------------------------------------------------------------


@dataclass(slots=True)
class Rec:
    """One client request."""

    client: int
    start: float  # unix time
    end: float
    ms: float
    stream: bool
    status: int  # 0 when no HTTP answer arrived
    ok: bool
    kind: str  # "ok" or the failure kind
    attempts: int | None  # x-omnirelay-attempts (absent = 1); None without an HTTP answer
    provider: str | None  # x-omnirelay-provider
    request_id: str | None
    detail: str = ""


def _error_of(payload: bytes) -> tuple[str, str]:
    """(code or type, message) of an OpenAI-style error body, or ("", raw text)."""
    try:
        data = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return "", payload[:300].decode("utf-8", "replace")
    err = data.get("error") if isinstance(data, dict) else None
    if not isinstance(err, dict):
        return "", payload[:300].decode("utf-8", "replace")
    return str(err.get("code") or err.get("type") or ""), str(err.get("message") or "")[:400]


def judge(status: int, ctype: str, payload: bytes, stream: bool) -> tuple[str, str]:
    """("ok", "") or (failure kind, detail) for one complete HTTP answer."""
    if status != 200:
        code, message = _error_of(payload)
        return f"HTTP {status} {code}".strip(), message
    if stream:
        if "text/event-stream" not in ctype:
            return "stream: not text/event-stream", ctype
        at = payload.find(b'data: {"error"')
        if at >= 0:
            return "stream: error event", payload[at : at + 400].decode("utf-8", "replace")
        if not payload.rstrip().endswith(b"data: [DONE]"):
            return "stream: no [DONE] at the end", payload[-300:].decode("utf-8", "replace")
        return "ok", ""
    try:
        data = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return "bad JSON body", payload[:300].decode("utf-8", "replace")
    if not isinstance(data, dict) or not data.get("choices"):
        return "body without choices", payload[:300].decode("utf-8", "replace")
    return "ok", ""


async def one_request(
    session: aiohttp.ClientSession, url: str, body: bytes, stream: bool, client: int
) -> Rec:
    start = time.time()
    t = time.perf_counter()
    status, ctype, payload = 0, "", b""
    attempts: int | None = None
    provider = request_id = None
    kind = detail = ""
    try:
        async with session.post(url, data=body, headers=HEADERS) as resp:
            status = resp.status
            ctype = resp.headers.get("content-type", "")
            attempts = int(resp.headers.get("x-omnirelay-attempts", "1"))
            provider = resp.headers.get("x-omnirelay-provider")
            request_id = resp.headers.get("x-request-id")
            payload = await resp.read()
    except TimeoutError:
        kind, detail = "client timeout", f"no complete answer within the client timeout (status {status})"
    except Exception as e:  # every failure is a counted result, never a crash of the run
        kind, detail = f"client {type(e).__name__}", (str(e) or repr(e))[:300]
    ms = (time.perf_counter() - t) * 1e3
    if not kind:
        kind, detail = judge(status, ctype, payload, stream)
    return Rec(
        client,
        start,
        time.time(),
        ms,
        stream,
        status,
        kind == "ok",
        kind,
        attempts,
        provider,
        request_id,
        detail,
    )


HEADERS: Final = {"Content-Type": "application/json", "Authorization": f"Bearer {MASTER_KEY}"}


def request_body(client: int, n: int, stream: bool, run_id: str) -> bytes:
    # The gateway's sticky-session key hashes the first message; a per-client system prompt makes each
    # client one distinct conversation (with a shared system prompt, all clients would be one session).
    body: dict[str, Any] = {
        "model": MODEL,
        "messages": [
            {
                "role": "system",
                "content": f"You are a helpful assistant. Conversation {run_id}-{client:03d}.",
            },
            {"role": "user", "content": f"Say hello in one short sentence. (turn {n})"},
        ],
        "max_tokens": 32,
    }
    if stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    return orjson.dumps(body)


def deployment_state(d: dict[str, Any], now: float) -> dict[str, Any]:
    """One deployment in a /admin/deployments answer, reduced to what blocks it."""
    breaker = (d.get("breaker") or {}).get("state", "closed")
    cooldown = d.get("cooldown") or {}
    cooling = bool(cooldown) and float(cooldown.get("until") or 0) > now
    blocked = bool(d.get("invalid")) or cooling or breaker != "closed"
    return {"breaker": breaker, "cooling": cooling, "blocked": blocked, "in_flight": d.get("in_flight")}


async def sample_state(
    session: aiohttp.ClientSession, port: int, stop_at: float, interval: float, out: list[dict[str, Any]]
) -> None:
    """Poll the gateway's /admin/deployments (breaker, cool-down) until ``stop_at``; stop on an error."""
    url = f"http://{HOST}:{port}{STATE_PATH}"
    while time.time() < stop_at:
        t = time.time()
        try:
            async with session.get(url, headers=HEADERS) as resp:
                payload = await resp.read()
                if resp.status != 200:
                    out.append({"t": t, "error": f"HTTP {resp.status}: {payload[:200]!r}"})
                    return
            data = orjson.loads(payload)["data"]
            out.append({"t": t, "deps": {str(d["provider"]): deployment_state(d, t) for d in data}})
        except Exception as e:  # the sampler is an extra; it never stops the run
            out.append({"t": t, "error": f"{type(e).__name__}: {e}"})
            return
        await asyncio.sleep(max(0.0, t + interval - time.time()))


async def run_load(
    a: argparse.Namespace, port: int, t0: float, out: list[Rec], states: list[dict[str, Any]]
) -> None:
    url = f"http://{HOST}:{port}{CHAT_PATH}"
    stop_at = t0 + a.duration
    run_id = f"{a.seed}-{int(t0)}"
    connector = aiohttp.TCPConnector(limit=a.clients + 1, keepalive_timeout=60)
    timeout = aiohttp.ClientTimeout(total=a.client_timeout)

    async def client(i: int, session: aiohttp.ClientSession) -> None:
        rng = random.Random(a.seed * 7919 + i)
        n = 0
        while time.time() < stop_at:
            stream = rng.random() < a.stream_share
            out.append(await one_request(session, url, request_body(i, n, stream, run_id), stream, i))
            n += 1

    async with aiohttp.ClientSession(
        connector=connector, timeout=timeout, skip_auto_headers=("User-Agent",)
    ) as session:
        await asyncio.sleep(max(0.0, t0 - time.time()))
        jobs = [client(i, session) for i in range(a.clients)]
        if a.state_interval > 0:
            jobs.append(sample_state(session, port, stop_at, a.state_interval, states))
        await asyncio.gather(*jobs)


# --------------------------------------------------------------------------------------------------------
# Analysis
# --------------------------------------------------------------------------------------------------------


def down_intervals(timeline: list[dict[str, Any]], end: float) -> list[dict[str, Any]]:
    """Every outage as it happened: upstream, down/up unix times (up = ``end`` if it was still down)."""
    out: list[dict[str, Any]] = []
    open_: dict[str, dict[str, Any]] = {}
    for e in sorted(timeline, key=lambda x: x["t"]):
        if e["event"] == "down":
            open_[e["upstream"]] = {
                "upstream": e["upstream"],
                "down": e["t"],
                "mode": e["mode"],
                "cut": e.get("cut", 0),
                "up": None,
            }
        elif e["upstream"] in open_:
            rec = open_.pop(e["upstream"])
            rec["up"] = e["t"]
            out.append(rec)
    for rec in open_.values():
        out.append(rec)
    for rec in out:
        rec["still_down_at_end"] = rec["up"] is None
        if rec["up"] is None:
            rec["up"] = end
    return sorted(out, key=lambda r: r["down"])


def up_count_segments(
    outages: list[dict[str, Any]], start: float, end: float
) -> list[tuple[float, float, int]]:
    """(from, to, upstreams up) over [start, end]."""
    cuts = sorted({start, end, *(o["down"] for o in outages), *(o["up"] for o in outages)})
    cuts = [c for c in cuts if start <= c <= end]
    segs: list[tuple[float, float, int]] = []
    for a, b in itertools.pairwise(cuts):
        mid = (a + b) / 2
        down = sum(1 for o in outages if o["down"] <= mid < o["up"])
        segs.append((a, b, len(NAMES) - down))
    return segs


def up_parts(a: float, b: float, downs: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """The parts of [a, b] outside every (down, up) interval."""
    parts = [(a, b)]
    for d0, d1 in downs:
        kept: list[tuple[float, float]] = []
        for x, y in parts:
            if d1 <= x or d0 >= y:
                kept.append((x, y))
                continue
            if x < d0:
                kept.append((x, d0))
            if d1 < y:
                kept.append((d1, y))
        parts = kept
    return parts


def idle_while_up(
    upstreams: list[dict[str, Any]], outages: list[dict[str, Any]], t0: float, window_end: float
) -> tuple[dict[str, dict[str, Any]], list[dict[str, Any]]]:
    """Per upstream, the stretch without any request in which it was up the longest (the gateway held it
    back: breaker open or its probe pending, cool-down), and every stretch with over LONG_GAP_S up."""
    longest: dict[str, dict[str, Any]] = {}
    long_gaps: list[dict[str, Any]] = []
    for u in upstreams:
        name = u["name"]
        downs = [(o["down"], o["up"]) for o in outages if o["upstream"] == name]
        arrivals = sorted((float(t), str(o)) for t, o in u.get("arrivals", []) if t0 <= t <= window_end)
        points = [(t0, ""), *arrivals, (window_end, "")]
        for (a, outcome), (b, _) in itertools.pairwise(points):
            up_seconds = sum(y - x for x, y in up_parts(a, b, downs))
            gap = {
                "upstream": name,
                "from_s": round(a - t0, 3),
                "to_s": round(b - t0, 3),
                "seconds": round(b - a, 3),
                "up_seconds": round(up_seconds, 3),
                "after": f"a request answered {outcome}" if outcome else "the start of the load",
                "until": "the end of the load" if b == window_end else "the next request",
            }
            if gap["up_seconds"] > longest.get(name, {"up_seconds": -1.0})["up_seconds"]:
                longest[name] = gap
            if gap["up_seconds"] > LONG_GAP_S:
                long_gaps.append(gap)
    return longest, sorted(long_gaps, key=lambda g: g["from_s"])


def _runs(samples: list[dict[str, Any]], pred: Any, t0: float) -> list[tuple[float, float]]:
    """(from, to) in seconds from t0 of each run of consecutive samples for which ``pred`` holds; a run
    lasts until the next sample where it does not."""
    runs: list[tuple[float, float]] = []
    start: float | None = None
    for smp in samples:
        if pred(smp):
            start = smp["t"] if start is None else start
        elif start is not None:
            runs.append((start - t0, smp["t"] - t0))
            start = None
    if start is not None:
        runs.append((start - t0, samples[-1]["t"] - t0))
    return runs


def state_summary(samples: list[dict[str, Any]], t0: float) -> dict[str, Any]:
    """Share of time each deployment spent blocked, and when all of them were blocked at once."""
    good = [x for x in samples if "deps" in x]
    errors = [x["error"] for x in samples if "error" in x]
    if not good:
        return {"samples": 0, "error": errors[0] if errors else "no samples"}
    names = sorted({n for x in good for n in x["deps"]})
    per: dict[str, dict[str, Any]] = {}
    for n in names:
        xs = [x["deps"][n] for x in good if n in x["deps"]]

        def share(pred: Any, xs: list[dict[str, Any]] = xs) -> float:
            return sum(1 for x in xs if pred(x)) / len(xs)

        blocked = _runs(good, lambda x, n=n: x["deps"].get(n, {}).get("blocked"), t0)
        half = _runs(good, lambda x, n=n: x["deps"].get(n, {}).get("breaker") == "half_open", t0)
        per[n] = {
            "available": share(lambda x: not x["blocked"]),
            "breaker_open": share(lambda x: x["breaker"] == "open"),
            "half_open": share(lambda x: x["breaker"] == "half_open"),
            "cooling": share(lambda x: x["cooling"]),
            "longest_blocked": max(blocked, key=lambda r: r[1] - r[0], default=None),
            "longest_half_open": max(half, key=lambda r: r[1] - r[0], default=None),
        }
    all_blocked = _runs(good, lambda x: all(d["blocked"] for d in x["deps"].values()), t0)
    return {
        "samples": len(good),
        "error": errors[0] if errors else None,
        "per_deployment": per,
        "all_blocked_share": sum(1 for x in good if all(d["blocked"] for d in x["deps"].values()))
        / len(good),
        "all_blocked_runs": [(round(a, 3), round(b, 3)) for a, b in all_blocked],
    }


def pct(values: list[float]) -> dict[str, float | None]:
    return percentiles(values, (50, 90, 99))


ATTEMPT_LINE: Final = re.compile(
    r"^(?P<ts>\S+ \S+) WARNING omnirelay\.routing: request (?P<rid>\S+): (?P<label>\S+) failed: "
    r"(?P<reason>.*) \((?P<kind>\w+)\)$"
)


def parse_gateway_log(
    path: Path,
) -> tuple[dict[str, list[dict[str, str]]], Counter[tuple[str, str]], list[str]]:
    """(attempt failures by request id, counts by (provider, kind), other warnings/errors)."""
    by_rid: dict[str, list[dict[str, str]]] = {}
    counts: Counter[tuple[str, str]] = Counter()
    other: list[str] = []
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return by_rid, counts, other
    for line in lines:
        m = ATTEMPT_LINE.match(line)
        if m:
            provider = m["label"].split("/", 1)[0]
            by_rid.setdefault(m["rid"], []).append(
                {"ts": m["ts"], "provider": provider, "kind": m["kind"], "reason": m["reason"]}
            )
            counts[(provider, m["kind"])] += 1
        elif (
            " ERROR " in line
            or " CRITICAL " in line
            or line.startswith("Traceback")
            or (" WARNING " in line and "omnirelay.routing" not in line)
        ):
            other.append(line[:500])
    return by_rid, counts, other


_BLOCKED: Final = re.compile(r"(p\d)/[^:;]+: ([^;(.]+)")


def explain(rec: Rec, chain: list[dict[str, str]]) -> str:
    """A failure's cause, in words that group identical causes together."""
    tried = [f"{c['provider']} {c['kind']}" for c in chain]
    distinct = {c["provider"] for c in chain}
    if rec.status == 0:
        return f"no HTTP answer ({rec.kind})"
    if rec.status == 200:
        return f"stream broke after the response started (not retryable): {rec.kind}"
    if "Every deployment of" in rec.detail or "No deployment of" in rec.detail:
        states = Counter(state.strip() for _, state in _BLOCKED.findall(rec.detail))
        blocked = ", ".join(f"{s} x{n}" for s, n in sorted(states.items()))
        head = f"after {len(chain)} failed attempt(s), " if chain else ""
        waited = " (waited until the deadline)" if rec.ms >= DEADLINE_MS - 100 else ""
        return f"{head}no viable deployment left{waited}: {blocked or rec.detail[:120]}"
    kinds = " + ".join(sorted(c["kind"] for c in chain))
    if len(chain) >= MAX_ATTEMPTS:
        return f"max_attempts ({len(chain)}) used up, every attempt failed ({kinds})"
    if len(distinct) == len(NAMES) == len(chain):
        return f"each of the {len(NAMES)} deployments tried once and failed, none retried ({kinds})"
    if chain:
        waited = ", at the deadline" if rec.ms >= DEADLINE_MS - 100 else ""
        return f"gave up after {len(chain)} attempt(s) [{', '.join(tried)}]{waited} with {rec.kind}"
    return f"{rec.kind} without a logged attempt failure"


def analyse(
    records: list[Rec],
    t0: float,
    load_end: float,
    duration: float,
    fake_stats: dict[str, Any],
    log_path: Path,
    states: list[dict[str, Any]],
) -> dict[str, Any]:
    end = max([load_end, *(r.end for r in records)])
    outages = down_intervals(fake_stats.get("timeline", []), end)
    segs = up_count_segments(outages, t0, end)
    zero_up = [(a, b) for a, b, n in segs if n == 0]
    min_up = min((n for _, _, n in segs), default=len(NAMES))
    seconds_by_up: dict[int, float] = {}
    for a, b, n in segs:
        seconds_by_up[n] = seconds_by_up.get(n, 0.0) + b - a

    def eligible(r: Rec) -> bool:
        return not any(a < r.end and b > r.start for a, b in zero_up)

    total = len(records)
    ok = sum(r.ok for r in records)
    elig = [r for r in records if eligible(r)]
    elig_ok = sum(r.ok for r in elig)
    failed = [r for r in records if not r.ok]

    by_rid, log_counts, other_log = parse_gateway_log(log_path)

    kinds: dict[str, dict[str, Any]] = {}
    for r in failed:
        k = kinds.setdefault(r.kind, {"count": 0, "examples": []})
        k["count"] += 1
        if len(k["examples"]) < 3:
            k["examples"].append(
                {
                    "t": round(r.start - t0, 3),
                    "stream": r.stream,
                    "request_id": r.request_id,
                    "detail": r.detail,
                }
            )

    causes: Counter[str] = Counter()
    failed_out: list[dict[str, Any]] = []
    for r in failed:
        chain = by_rid.get(r.request_id or "", [])
        cause = explain(r, chain)
        causes[cause] += 1
        if len(failed_out) < 300:
            down_now = [o["upstream"] for o in outages if o["down"] <= r.start < o["up"]]
            failed_out.append(
                {
                    "t": round(r.start - t0, 3),
                    "ms": round(r.ms, 1),
                    "stream": r.stream,
                    "status": r.status,
                    "kind": r.kind,
                    "attempts": r.attempts,
                    "request_id": r.request_id,
                    "detail": r.detail,
                    "down_at_start": down_now,
                    "gateway_attempt_failures": chain,
                    "cause": cause,
                }
            )

    attempts_hist: dict[str, dict[str, int]] = {}
    for r in records:
        key = str(r.attempts) if r.attempts is not None else "no answer"
        h = attempts_hist.setdefault(key, {"requests": 0, "ok": 0})
        h["requests"] += 1
        h["ok"] += int(r.ok)

    ok_recs = [r for r in records if r.ok]
    first = [r.ms for r in ok_recs if r.attempts == 1]
    multi = [r.ms for r in ok_recs if (r.attempts or 1) > 1]
    latency: dict[str, Any] = {
        "first_attempt": pct(first),
        "failover": pct(multi),
        "first_attempt_count": len(first),
        "failover_count": len(multi),
        "first_attempt_waited": sum(1 for x in first if x > SLOW_LATENCY_MS),
        "first_attempt_no_wait": pct([x for x in first if x <= SLOW_LATENCY_MS]),
    }
    for n in sorted({r.attempts for r in ok_recs if r.attempts}):
        latency[f"attempts_{n}"] = pct([r.ms for r in ok_recs if r.attempts == n])
    for label, recs in (
        ("stream", [r for r in ok_recs if r.stream]),
        ("non_stream", [r for r in ok_recs if not r.stream]),
    ):
        latency[f"{label}_first_attempt"] = pct([r.ms for r in recs if r.attempts == 1])
        latency[f"{label}_failover"] = pct([r.ms for r in recs if (r.attempts or 1) > 1])
    for p in ("p50", "p99"):
        f, m = latency["first_attempt"][p], latency["failover"][p]
        latency[f"added_{p}"] = None if f is None or m is None else m - f

    served = Counter(r.provider.split("/", 1)[0] for r in ok_recs if r.provider)
    # Only while the clients were sending: afterwards, idle upstreams mean nothing.
    window_end = min(load_end, t0 + duration)
    longest_idle, long_gaps = idle_while_up(fake_stats.get("upstreams", []), outages, t0, window_end)
    everywhere = sorted(
        float(t)
        for u in fake_stats.get("upstreams", [])
        for t, _ in u.get("arrivals", [])
        if t0 <= t <= window_end
    )
    stalls = [
        (x - t0, y - t0) for x, y in itertools.pairwise([t0, *everywhere, window_end]) if y - x > STALL_S
    ]
    per_upstream = []
    for u in fake_stats.get("upstreams", []):
        name = u["name"]
        per_upstream.append(
            {
                **{k: v for k, v in u.items() if k != "arrivals"},
                "longest_idle_while_up": longest_idle.get(name),
                "served_ok_to_clients": served.get(name, 0),
                "gateway_attempt_failures": {k: n for (p, k), n in sorted(log_counts.items()) if p == name},
                "outages": sum(1 for o in outages if o["upstream"] == name),
                "down_seconds": sum(
                    min(o["up"], end) - max(o["down"], t0) for o in outages if o["upstream"] == name
                ),
            }
        )

    per_second: list[dict[str, Any]] = []
    span = int(max(r.start for r in records) - t0) + 1 if records else 0
    for s in range(span):
        a, b = t0 + s, t0 + s + 1
        in_sec = [r for r in records if a <= r.start < b]
        per_second.append(
            {
                "second": s,
                "sent": len(in_sec),
                "ok": sum(r.ok for r in in_sec),
                "failed": sum(not r.ok for r in in_sec),
                "failover": sum(1 for r in in_sec if r.ok and (r.attempts or 1) > 1),
                "down": sorted({o["upstream"] for o in outages if o["down"] < b and o["up"] > a}),
            }
        )

    return {
        "requests": total,
        "ok": ok,
        "failed": len(failed),
        "success_share": ok / total if total else None,
        "stream_requests": sum(r.stream for r in records),
        "stream_ok": sum(r.ok for r in records if r.stream),
        "throughput_rps": total / (load_end - t0) if load_end > t0 else None,
        "eligible_requests": len(elig),
        "eligible_ok": elig_ok,
        "eligible_success_share": elig_ok / len(elig) if elig else None,
        "min_upstreams_up": min_up,
        "seconds_with_n_up": {str(k): round(v, 3) for k, v in sorted(seconds_by_up.items())},
        "zero_up_intervals": [(a - t0, b - t0) for a, b in zero_up],
        "outages": [
            {**o, "down_s": round(o["down"] - t0, 3), "up_s": round(o["up"] - t0, 3)} for o in outages
        ],
        "failures_by_kind": dict(sorted(kinds.items(), key=lambda kv: -kv[1]["count"])),
        "failure_causes": dict(causes.most_common()),
        "failed_requests": failed_out,
        "attempts": dict(sorted(attempts_hist.items())),
        "latency_ms": latency,
        "per_upstream": per_upstream,
        "gateway_attempt_failures": {f"{p} {k}": n for (p, k), n in sorted(log_counts.items())},
        "gateway_log_other": other_log[:50],
        "gateway_log_other_count": len(other_log),
        "per_second": per_second,
        "long_idle_while_up": long_gaps,
        "gateway_state": state_summary(states, t0),
        "stalls": {
            "count": len(stalls),
            "seconds": round(sum(y - x for x, y in stalls), 3),
            "longest": round(max((y - x for x, y in stalls), default=0.0), 3),
            "load_seconds": round(window_end - t0, 3),
            "intervals": [(round(x, 3), round(y, 3)) for x, y in stalls],
        },
    }


# --------------------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------------------


def fms(v: Any) -> str:
    return f"{v:,.1f}" if isinstance(v, (int, float)) else "-"


def fpct(num: int, den: int) -> str:
    return f"{100 * num / den:.2f} %" if den else "-"


def render_markdown(r: dict[str, Any]) -> str:
    s = r["settings"]
    distinct = list(dict.fromkeys(r["mixes"]))
    mixes = (
        f"{distinct[0]} (each)"
        if len(distinct) == 1
        else "; ".join(f"{n}: {m}" for n, m in zip(NAMES, r["mixes"], strict=True))
    )
    lines = [
        f"## OmniRelay chaos run ({r['profile']}) — {r['started_utc']}",
        "",
        f"- command: `{r['run_command']}`",
        f"- load: {s['clients']} clients (keep-alive, closed loop), {s['duration']:g} s, "
        f"{100 * s['stream_share']:g} % streaming, seed {s['seed']}; CPU pinning "
        + (
            f"gateway on CPU {s['gateway_cpu']}, fakes + clients on CPU {s['load_cpu']}"
            if r["pinned"]
            else "off"
        ),
        f"- fakes: error mix {mixes}; slow = first byte after {s['slow_seconds']:g} s; "
        f"429s carry `retry-after: {s['retry_after']:g}`; an outage about every {s['outage_every']:g} s, "
        f"{s['outage_min']:g}-{s['outage_max']:g} s long",
        f"- gateway: timeouts `{r['gateway_timeouts']}`, routing `{r['gateway_routing']}`",
        f"- gateway code: {describe_source(r.get('gateway_source') or {})}",
        f"- load average at start {r['loadavg_start'][0]:.2f}, at end {r.get('loadavg_end', [0.0])[0]:.2f} "
        "(other load on the machine slows the gateway and the fakes down)",
        "",
    ]
    a = r.get("analysis")
    if not a:
        lines += ["No results (the run stopped before the load phase).", ""]
        return "\n".join(lines + _errors_block(r))
    lines += ["### Upstream timeline (seconds from the start of the load)", ""]
    if a["outages"]:
        lines += [
            "| upstream | down at | up at | down for | mode | connections cut |",
            "|---|---:|---:|---:|---|---:|",
        ]
    else:
        lines.append("No outages.")
    for o in a["outages"]:
        still = " (still down at end)" if o["still_down_at_end"] else ""
        lines.append(
            f"| {o['upstream']} | {o['down_s']:.2f} | {o['up_s']:.2f}{still} | {o['up'] - o['down']:.2f} "
            f"| {o['mode']} | {o['cut']} |"
        )
    n_up = ", ".join(f"{k} up: {v:.1f} s" for k, v in sorted(a["seconds_with_n_up"].items(), reverse=True))
    lines += [
        "",
        "At least one upstream was up for the whole run: "
        f"**{'yes' if a['min_upstreams_up'] >= 1 else 'NO'}** "
        f"(fewest up at any moment: {a['min_upstreams_up']}; {n_up}).",
        "",
        "### Outcome",
        "",
        "| requests | ok | failed | success | streaming ok / sent | req/s |",
        "|---:|---:|---:|---:|---:|---:|",
        f"| {a['requests']:,} | {a['ok']:,} | {a['failed']:,} | {fpct(a['ok'], a['requests'])} "
        f"| {a['stream_ok']:,} / {a['stream_requests']:,} | {fms(a['throughput_rps'])} |",
        "",
        f"**Succeeded while at least one upstream was up: {a['eligible_ok']:,} / {a['eligible_requests']:,} "
        f"= {fpct(a['eligible_ok'], a['eligible_requests'])}** (goal: 100 %; a request counts when at least "
        "one upstream was up during its whole lifetime).",
        "",
    ]
    if a["failures_by_kind"]:
        lines += [
            "### Failures by kind",
            "",
            "| kind | count | example (t = s from start) |",
            "|---|---:|---|",
        ]
        for kind, k in a["failures_by_kind"].items():
            ex = k["examples"][0]
            detail = ex["detail"].replace("|", "\\|").replace("\n", " ")[:220]
            lines.append(
                f"| {kind} | {k['count']} | t={ex['t']:.2f} {'stream' if ex['stream'] else 'non-stream'} "
                f"`{ex['request_id']}`: {detail} |"
            )
        lines += [
            "",
            "Causes (from the client's answer and the gateway's log lines for that request id):",
            "",
        ]
        lines += ["| cause | requests |", "|---|---:|"]
        lines += [f"| {c} | {n} |" for c, n in a["failure_causes"].items()]
        lines.append("")
    lines += [
        "### Attempts per request (`x-omnirelay-attempts`; absent = 1)",
        "",
        "| attempts | requests | share | ok |",
        "|---|---:|---:|---:|",
    ]
    for k, h in a["attempts"].items():
        lines.append(f"| {k} | {h['requests']:,} | {fpct(h['requests'], a['requests'])} | {h['ok']:,} |")
    lat = a["latency_ms"]
    lines += [
        "",
        "### Latency of successful requests (ms, client side, whole response)",
        "",
        "| requests | count | p50 | p90 | p99 | max |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    rows: list[tuple[str, str, int | None]] = [
        ("served at the first attempt", "first_attempt", lat["first_attempt_count"])
    ]
    rows += [
        (f"{n} attempts", f"attempts_{n}", a["attempts"].get(str(n), {}).get("ok"))
        for n in range(2, 10)
        if f"attempts_{n}" in lat
    ]
    rows += [
        ("needed > 1 attempt (failover)", "failover", lat["failover_count"]),
        (
            f"first attempt, no wait (<= {SLOW_LATENCY_MS:g} ms)",
            "first_attempt_no_wait",
            lat["first_attempt_count"] - lat["first_attempt_waited"],
        ),
        ("non-streaming, first attempt", "non_stream_first_attempt", None),
        ("non-streaming, failover", "non_stream_failover", None),
        ("streaming, first attempt", "stream_first_attempt", None),
        ("streaming, failover", "stream_failover", None),
    ]
    for label, key, count in rows:
        p = lat.get(key) or {}
        lines.append(
            f"| {label} | {'' if count is None else f'{count:,}'} | {fms(p.get('p50'))} "
            f"| {fms(p.get('p90'))} | {fms(p.get('p99'))} | {fms(p.get('max'))} |"
        )
    lines += [
        "",
        f"**Added latency of failover** (failover minus first attempt): p50 {fms(lat['added_p50'])} ms, "
        f"p99 {fms(lat['added_p99'])} ms. {lat['first_attempt_waited']:,} first-attempt requests took over "
        f"{SLOW_LATENCY_MS:g} ms: they waited for a deployment to recover (circuit open or cooling down) "
        "before their only attempt.",
        "",
        "### Per upstream (as the fakes saw it)",
        "",
        "| upstream | chat requests | 200 at once | 500 | 429 | slow (sent late) | connections "
        "| dropped at accept | cut by outage | outages (s down) | longest idle while up (s) "
        "| served to clients | gateway attempt failures |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for u in a["per_upstream"]:
        fails = ", ".join(f"{k} {n}" for k, n in u["gateway_attempt_failures"].items()) or "-"
        gap = u.get("longest_idle_while_up") or {}
        idle = f"{gap['up_seconds']:.1f} (t={gap['from_s']:.1f})" if gap else "-"
        lines.append(
            f"| {u['name']} | {u['requests'] - u['before_chaos']:,} | {u['ok']:,} | {u['err_500']:,} "
            f"| {u['err_429']:,} | {u['slow']:,} ({u['slow_sent']}) | {u['connections']:,} "
            f"| {u['dropped_at_accept']:,} | {u['cut_by_outage']:,} "
            f"| {u['outages']} ({u['down_seconds']:.1f}) | {idle} | {u['served_ok_to_clients']:,} | {fails} |"
        )
    lines += [
        "",
        "Chat requests exclude the sanity checks before the chaos started. *Gateway attempt failures* "
        "are the dispatcher's `request …: pN/chaos-model failed: … (kind)` log lines. *Longest idle "
        "while up*: the most up-time between two requests to the upstream, i.e. the gateway held it "
        "back (breaker open or its half-open probe pending, or cooling down after a 429).",
        "",
    ]
    if a["long_idle_while_up"]:
        lines += [f"Upstreams that got no request while up for more than {LONG_GAP_S:g} s:", ""]
        lines += [
            f"- {g['upstream']}: no request for {g['seconds']:.1f} s (t={g['from_s']:.2f} to "
            f"t={g['to_s']:.2f}, {g['up_seconds']:.1f} s of it up), after {g['after']}, until {g['until']}"
            for g in a["long_idle_while_up"]
        ]
        lines.append("")
    gs = a["gateway_state"]
    if gs.get("samples"):
        lines += [
            f"### Gateway deployment state (sampled every {s['state_interval']:g} s from `{STATE_PATH}`)",
            "",
            "| deployment | available | breaker open | half-open (probe pending) | cooling down "
            "| longest blocked (s) | longest half-open (s) |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        for n, d in gs["per_deployment"].items():

            def span(r: Any) -> str:
                return f"{r[1] - r[0]:.1f} (t={r[0]:.1f})" if r else "-"

            lines.append(
                f"| {n} | {100 * d['available']:.0f} % | {100 * d['breaker_open']:.0f} % "
                f"| {100 * d['half_open']:.0f} % | {100 * d['cooling']:.0f} % | {span(d['longest_blocked'])} "
                f"| {span(d['longest_half_open'])} |"
            )
        runs = gs["all_blocked_runs"]
        longest = max((b - a for a, b in runs), default=0.0)
        lines += [
            "",
            f"All deployments blocked at once in **{100 * gs['all_blocked_share']:.0f} %** of the "
            f"{gs['samples']} samples ({len(runs)} stretches, longest {longest:.1f} s). Blocked = breaker "
            "open or half-open (only the one probe may go), or cooling down after a 429. Shares can add up "
            "to more than 100 %: a deployment can be cooling down with its breaker open.",
            "",
        ]
    elif gs.get("error"):
        lines += [f"Gateway deployment state: not sampled ({gs['error']}).", ""]
    st = a["stalls"]
    lines += [
        f"**Gateway-wide stalls** (no upstream received any request for more than {STALL_S:g} s while the "
        f"clients were sending): {st['count']}, {st['seconds']:.1f} s of the {st['load_seconds']:.1f} s load "
        f"(longest {st['longest']:.1f} s). During a stall, requests wait in the dispatcher for a blocked "
        "deployment (breaker open, probe pending, cooling down) to recover.",
        "",
    ]
    secs = a["per_second"]
    lines += [
        "Requests started per second (`*`: an upstream was down in that second; `!n`: n of them failed):",
        "",
        "```",
        " ".join(
            f"{x['sent']}{'*' if x['down'] else ''}{'!' + str(x['failed']) if x['failed'] else ''}"
            for x in secs
        ),
        "```",
        "",
    ]
    if a["gateway_log_other_count"]:
        lines += [f"Other gateway warnings/errors: {a['gateway_log_other_count']} (first ones):", "", "```"]
        lines += a["gateway_log_other"][:5]
        lines += ["```", ""]
    fr = a["failed_requests"]
    if fr:
        lines += ["### Failed requests (first 10; all in the JSON)", ""]
        for f in fr[:10]:
            chain = " → ".join(f"{c['provider']} {c['kind']}" for c in f["gateway_attempt_failures"]) or "-"
            down = ",".join(f["down_at_start"]) or "none"
            lines.append(
                f"- t={f['t']:.2f} s, {f['ms']:.0f} ms, {'stream' if f['stream'] else 'non-stream'}, "
                f"`{f['request_id']}`: **{f['kind']}** (down: {down}; attempts failed: {chain}) — "
                f"{f['detail'][:200]}"
            )
        lines.append("")
    lines += [f"Gateway log: `{r.get('gateway_log')}`; JSON: `{r.get('json_path')}`", ""]
    return "\n".join(lines + _errors_block(r))


def _errors_block(r: dict[str, Any]) -> list[str]:
    if not r["errors"]:
        return []
    return ["### Errors", "", "```", *[str(e).strip() for e in r["errors"]], "```", ""]


# --------------------------------------------------------------------------------------------------------
# Orchestration
# --------------------------------------------------------------------------------------------------------


def source_info() -> dict[str, Any]:
    """Which gateway code runs: the omnirelay package's path, a hash of its sources, the git commit and
    the files that differ from it (read-only git, no optional locks). The gateway is usually an editable
    install, so edits to the working tree change what the next run measures."""
    spec = importlib.util.find_spec("omnirelay")
    if spec is None or spec.origin is None:
        return {"package": None}
    pkg = Path(spec.origin).parent
    digest = hashlib.sha256()
    for f in sorted(pkg.rglob("*.py")):
        digest.update(str(f.relative_to(pkg)).encode() + b"\0")
        with contextlib.suppress(OSError):
            digest.update(f.read_bytes())
    info: dict[str, Any] = {"package": str(pkg), "sha256": digest.hexdigest()[:16]}
    repo = next((d for d in pkg.parents if (d / ".git").exists()), None)
    if repo is not None and shutil.which("git"):
        env = dict(os.environ, GIT_OPTIONAL_LOCKS="0")

        def git(*args: str) -> str:
            r = subprocess.run(
                ["git", "-C", str(repo), *args], capture_output=True, timeout=10, env=env, check=False
            )
            return r.stdout.decode("utf-8", "replace").strip() if r.returncode == 0 else ""

        with contextlib.suppress(OSError, subprocess.SubprocessError):
            info["git_head"] = git("rev-parse", "--short", "HEAD")
            info["uncommitted"] = git("diff", "--name-only", "HEAD", "--", str(pkg)).splitlines()
    return info


def describe_source(info: dict[str, Any]) -> str:
    if not info.get("package"):
        return "unknown"
    text = f"`{info['package']}`, sources sha256 {info.get('sha256')}"
    if info.get("git_head"):
        changed = info.get("uncommitted") or []
        text += f", git {info['git_head']}"
        if changed:
            text += f" + uncommitted changes in {len(changed)} file(s): " + ", ".join(changed)
    return text


def gateway_yaml(ports: list[int]) -> str:
    def flow(obj: Any) -> str:
        if isinstance(obj, dict):
            return "{" + ", ".join(f"{k}: {flow(v)}" for k, v in obj.items()) + "}"
        if isinstance(obj, list):
            return "[" + ", ".join(flow(v) for v in obj) + "]"
        return f"{obj:g}" if isinstance(obj, float) else str(obj)

    out = [
        f"master_key: {MASTER_KEY}",
        "server:",
        "  graceful_shutdown_seconds: 1",
        "routing:",
        *(f"  {k}: {flow(v)}" for k, v in ROUTING.items()),
        "providers:",
    ]
    for name, port in zip(NAMES, ports, strict=True):
        out += [
            f"  - name: {name}",
            "    type: openai-compatible",
            f"    base_url: http://{HOST}:{port}/v1",
            f"    api_keys: [sk-chaos-{name}]",
            f"    models: [{MODEL}]",
            "    priority: 0",
            "    weight: 1",
            f"    timeouts: {flow(TIMEOUTS)}",
        ]
    return "\n".join(out) + "\n"


def distinct_ports(n: int) -> list[int]:
    ports: list[int] = []
    while len(ports) < n:
        p = free_port()
        if p not in ports:
            ports.append(p)
    return ports


def sanity(port: int) -> None:
    """One non-streaming and one streaming request must succeed before the chaos starts."""
    for stream in (False, True):
        body = request_body(0, -1, stream, "sanity").decode()
        try:
            status, hdrs, payload = http_request(port, "POST", CHAT_PATH, body, HEADERS, timeout=10)
        except OSError as e:
            raise BenchError(f"sanity request failed: {type(e).__name__}: {e}") from None
        kind, detail = judge(status, hdrs.get("content-type", ""), payload, stream)
        if kind != "ok":
            raise BenchError(f"sanity {'streaming ' if stream else ''}request failed: {kind}: {detail}")


def control(port: int, method: str, path: str, body: Any = None) -> Any:
    status, _, payload = http_request(
        port, method, path, orjson.dumps(body).decode() if body is not None else None, timeout=10
    )
    if status != 200:
        raise BenchError(f"fake upstreams' control {method} {path}: HTTP {status}: {payload[:300]!r}")
    return orjson.loads(payload)


def orchestrate(a: argparse.Namespace, procs: Procs, tmp: Path, results: dict[str, Any]) -> None:
    base_cmd = find_omnirelay(a)
    ports = distinct_ports(len(NAMES) + 2)
    up_ports, control_port, gw_port = ports[: len(NAMES)], ports[len(NAMES)], ports[len(NAMES) + 1]
    bound = a.duration + a.client_timeout + a.startup_timeout + 120  # hard lifetime of every child
    fake_argv = procs.argv(
        a.load_cpu,
        [
            sys.executable,
            str(Path(__file__).resolve()),
            UPSTREAMS_CMD,
            "--ports",
            ",".join(map(str, up_ports)),
            "--control",
            str(control_port),
            "--seed",
            str(a.seed),
            "--mix",
            orjson.dumps([asdict(m) for m in a.mixes]).decode(),
            "--slow-seconds",
            f"{a.slow_seconds:g}",
            "--retry-after",
            f"{a.retry_after:g}",
            "--max-lifetime",
            f"{bound:g}",
        ],
    )
    fake_out, fake_err = tmp / "upstreams.stdout.log", tmp / "upstreams.stderr.log"
    log(f"starting fake upstreams: {shlex.join(fake_argv)}")
    with open(fake_out, "wb") as so, open(fake_err, "wb") as se:
        fake = procs.spawn("fake upstreams", fake_argv, so, se)
    wait_healthy(fake, control_port, "/health", 15, "fake upstreams", fake_err)
    for name, port in zip(NAMES, up_ports, strict=True):
        wait_healthy(fake, port, "/health", 5, f"fake upstream {name}", fake_err)

    config = tmp / "gateway.yaml"
    config.write_text(gateway_yaml(up_ports))
    results["gateway_config"] = config.read_text()
    data_dir = tmp / "data"
    data_dir.mkdir()
    guard = ["timeout", "-k", "5", f"{bound:g}"] if shutil.which("timeout") else []
    gw_argv = procs.argv(
        a.gateway_cpu,
        [
            *guard,
            *base_cmd,
            "serve",
            "--config",
            str(config),
            "--port",
            str(gw_port),
            "--data-dir",
            str(data_dir),
            "--server",
            a.server,
            "--http-client",
            a.http_client,
        ],
    )
    gw_log = tmp / "gateway.log"
    results["gateway_log_tmp"] = str(gw_log)
    results["gateway_source"] = source_info()
    log(f"starting gateway: {shlex.join(gw_argv)}")
    with open(gw_log, "wb") as so:
        gateway = procs.spawn(
            "gateway", gw_argv, so, subprocess.STDOUT, env=dict(os.environ, PYTHONUNBUFFERED="1")
        )
    startup = wait_healthy(gateway, gw_port, "/health", a.startup_timeout, "gateway", gw_log)
    log(f"gateway healthy after {startup:.2f}s; sanity requests")
    sanity(gw_port)

    schedule = make_schedule(
        random.Random(a.seed), a.duration, a.outage_every, a.outage_min, a.outage_max, len(NAMES)
    )
    results["planned_outages"] = [{**asdict(o), "upstream": NAMES[o.upstream]} for o in schedule]
    t0 = time.time() + 0.3
    control(control_port, "POST", "/__chaos/start", {"t0": t0, "outages": [asdict(o) for o in schedule]})
    log(
        f"chaos started: {a.clients} clients for {a.duration:g}s, {len(schedule)} outages planned "
        f"({', '.join(f'{NAMES[o.upstream]}@{o.start:.1f}s' for o in schedule)})"
    )
    if procs.pin:
        with contextlib.suppress(OSError):
            os.sched_setaffinity(0, {a.load_cpu})
    records: list[Rec] = []
    results["_records"] = records
    states: list[dict[str, Any]] = []
    results["state_samples"] = states
    import uvloop

    try:
        uvloop.run(run_load(a, gw_port, t0, records, states))
    finally:
        results["load_end"] = time.time()
        results["t0"] = t0
        log(f"load finished: {len(records)} requests; collecting the fakes' counters")
        with contextlib.suppress(BenchError, OSError):
            results["fake_stats"] = control(control_port, "GET", "/__chaos/stats")
        if gateway.poll() is not None:
            results["errors"].append(f"the gateway exited during the run (code {gateway.returncode})")
        after = source_info()
        if after.get("sha256") != results["gateway_source"].get("sha256"):
            results["gateway_source_after"] = after
            results["errors"].append(
                "the gateway's source files changed during the run; the gateway ran the code it imported "
                f"at start ({describe_source(results['gateway_source'])})"
            )
        procs.stop(gateway)
        procs.stop(fake)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description="Failover under chaos: three flaky fake upstreams that go down and up, the gateway in "
        "front, many concurrent clients. Markdown report on stdout, JSON in --results-dir. "
        "Defaults in [brackets].",
    )
    p.add_argument("--quick", action="store_true", help="short run (~20 s)")
    p.add_argument("--duration", type=float, default=None, help="seconds of load [60; quick 15]")
    p.add_argument("--clients", type=int, default=32, help="concurrent clients [32]")
    p.add_argument("--seed", type=int, default=1, help="seed of the outage schedule, faults and clients [1]")
    p.add_argument("--stream-share", type=float, default=0.2, help="share of streaming requests [0.2]")
    p.add_argument(
        "--error-mix",
        action="append",
        type=parse_mix,
        default=None,
        help="fault shares of the fakes, e.g. 500=0.05,429=0.03,slow=0.02 [that]; give it once for all "
        "three upstreams or three times for p1, p2, p3",
    )
    p.add_argument(
        "--slow-seconds",
        type=float,
        default=2.0,
        help="first-byte delay of a 'slow' fault (gateway: 1 s) [2]",
    )
    p.add_argument("--retry-after", type=float, default=1.0, help="retry-after of the fakes' 429s [1]")
    p.add_argument(
        "--outage-every", type=float, default=None, help="mean seconds between outages [10; quick 6]"
    )
    p.add_argument("--outage-min", type=float, default=3.0, help="shortest outage in seconds [3]")
    p.add_argument("--outage-max", type=float, default=5.0, help="longest outage in seconds [5]")
    p.add_argument("--client-timeout", type=float, default=30.0, help="per-request client timeout [30]")
    p.add_argument(
        "--state-interval",
        type=float,
        default=0.2,
        help=f"seconds between samples of the gateway's {STATE_PATH} (breakers, cool-downs); 0 = off [0.2]",
    )
    p.add_argument(
        "--server", default="uvicorn", choices=("uvicorn", "granian"), help="gateway server [uvicorn]"
    )
    p.add_argument(
        "--http-client",
        default="aiohttp",
        choices=("aiohttp", "httpx"),
        help="gateway upstream client [aiohttp]",
    )
    p.add_argument("--gateway-cpu", type=int, default=0, help="CPU the gateway is pinned to [0]")
    p.add_argument("--load-cpu", type=int, default=1, help="CPU for the fakes and the clients [1]")
    p.add_argument("--no-pin", action="store_true", help="do not pin with taskset")
    p.add_argument(
        "--omnirelay-cmd", default=None, help="gateway command prefix [the omnirelay script next to python]"
    )
    p.add_argument("--startup-timeout", type=float, default=30.0, help="max seconds to wait for /health [30]")
    p.add_argument(
        "--results-dir", type=Path, default=BENCH_DIR / "results", help="where the JSON goes [bench/results]"
    )
    p.add_argument("--keep-tmp", action="store_true", help="keep the temp dir (config, logs, data dir)")
    return p


def resolve_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = build_parser()
    a = p.parse_args(argv)
    a.duration = a.duration if a.duration is not None else (15.0 if a.quick else 60.0)
    a.outage_every = a.outage_every if a.outage_every is not None else (6.0 if a.quick else 10.0)
    mixes: list[Mix] = a.error_mix or [Mix()]
    if len(mixes) not in (1, len(NAMES)):
        p.error(f"--error-mix: give it once or {len(NAMES)} times")
    a.mixes = mixes * len(NAMES) if len(mixes) == 1 else mixes
    if a.duration <= 0 or a.clients < 1 or not 0 <= a.stream_share <= 1:
        p.error("--duration and --clients must be positive and --stream-share within [0, 1]")
    if not 0 < a.outage_min <= a.outage_max or a.outage_every <= 0:
        p.error("need 0 < --outage-min <= --outage-max and --outage-every > 0")
    return a


def choose_pinning(a: argparse.Namespace) -> bool:
    if a.no_pin:
        return False
    cpus = os.sched_getaffinity(0)
    if shutil.which("taskset") is None:
        log("WARNING: taskset not found; running without CPU pinning")
        return False
    if a.gateway_cpu not in cpus or a.load_cpu not in cpus or a.gateway_cpu == a.load_cpu:
        log(f"WARNING: need two distinct usable CPUs (have {sorted(cpus)}); running without CPU pinning")
        return False
    return True


def main(argv: Sequence[str] | None = None) -> int:
    raw = list(sys.argv[1:] if argv is None else argv)
    if raw[:1] == [UPSTREAMS_CMD]:
        return upstreams_main(raw[1:])
    a = resolve_args(raw)
    started = dt.datetime.now(dt.UTC)
    procs = Procs(pin=choose_pinning(a))
    tmp = Path(tempfile.mkdtemp(prefix="omnirelay-chaos-"))
    results: dict[str, Any] = {
        "started_utc": started.isoformat(timespec="seconds"),
        "run_command": shlex.join([sys.executable, *sys.argv]),
        "profile": "quick" if a.quick else "full",
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(a).items() if k != "mixes"},
        "mixes": [m.describe() for m in a.mixes],
        "pinned": procs.pin,
        "loadavg_start": os.getloadavg(),
        "gateway_timeouts": TIMEOUTS,
        "gateway_routing": ROUTING,
        "commands": procs.commands,
        "errors": [],
    }
    results["settings"]["error_mix"] = [asdict(m) for m in a.mixes]
    exit_code = 0
    try:
        with signals_as_interrupt():
            orchestrate(a, procs, tmp, results)
    except KeyboardInterrupt:
        log("interrupted; cleaning up")
        results["errors"].append("interrupted (results cover the requests finished so far)")
        exit_code = 130
    except BenchError as e:
        log(f"ERROR: {e}")
        results["errors"].append(str(e))
        exit_code = 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # cleanup is bounded; don't let a 2nd Ctrl-C skip it
        procs.stop_all()
        signal.signal(signal.SIGINT, signal.default_int_handler)

    stamp = started.strftime("%Y%m%dT%H%M%SZ")
    a.results_dir.mkdir(parents=True, exist_ok=True)
    records: list[Rec] = results.pop("_records", [])
    gw_log_tmp = Path(results.pop("gateway_log_tmp", tmp / "gateway.log"))
    if gw_log_tmp.exists():
        kept = a.results_dir / f"chaos-{stamp}.gateway.log"
        shutil.copyfile(gw_log_tmp, kept)
        results["gateway_log"] = str(kept)
    if records and "t0" in results:
        results["analysis"] = analyse(
            records,
            results["t0"],
            results["load_end"],
            a.duration,
            results.get("fake_stats") or {},
            gw_log_tmp,
            results.get("state_samples") or [],
        )
    for u in (results.get("fake_stats") or {}).get("upstreams", []):
        u.pop("arrivals", None)  # summarised in the analysis; too long to keep
    if a.keep_tmp:
        log(f"temp dir kept: {tmp}")
    else:
        shutil.rmtree(tmp, ignore_errors=True)
    results["loadavg_end"] = os.getloadavg()
    results["finished_utc"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    results["wall_s"] = (dt.datetime.now(dt.UTC) - started).total_seconds()
    out_path = a.results_dir / f"chaos-{stamp}.json"
    results["json_path"] = str(out_path)
    print(render_markdown(results))
    out_path.write_text(orjson.dumps(results, option=orjson.OPT_INDENT_2, default=str).decode() + "\n")
    log(f"results written to {out_path}")
    an = results.get("analysis") or {}
    if exit_code == 0 and (results["errors"] or an.get("eligible_ok") != an.get("eligible_requests")):
        exit_code = 1
    return exit_code


if __name__ == "__main__":
    sys.exit(main())
