"""Benchmark clients used by ``bench/run.py`` (run as separate, CPU-pinned processes).

* ``rate``: open-loop load at a fixed request rate. A scheduler thread (``time.sleep`` has ~µs
  resolution, unlike the event-loop timers) fires request *i* at ``t0 + i / rate`` into an aiohttp
  session; latency is measured from the *scheduled* send time, so a slow target cannot slow the
  client down and hide its own latency (no coordinated omission).
* ``stream``: streaming requests at low concurrency, timing response headers, first body byte,
  first complete ``data:`` SSE event and end of stream.

Both print a single JSON object on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson

MAX_ERROR_SAMPLES = 5


def percentiles(values: list[float], ps: tuple[float, ...] = (50, 90, 99, 99.9)) -> dict[str, float | None]:
    """Nearest-rank percentiles (plus min/max/mean) of ``values``, in the same unit."""
    out: dict[str, float | None] = {}
    if not values:
        for p in ps:
            out[f"p{p:g}"] = None
        out.update(min=None, max=None, mean=None)
        return out
    s = sorted(values)
    n = len(s)
    for p in ps:
        rank = max(1, min(n, int(-(-p * n // 100))))  # ceil(p/100 * n)
        out[f"p{p:g}"] = s[rank - 1]
    out.update(min=s[0], max=s[-1], mean=sum(s) / n)
    return out


def _headers(auth: str | None) -> dict[str, str]:
    h = {"Content-Type": "application/json"}
    if auth:
        h["Authorization"] = auth
    return h


@dataclass
class _Errors:
    count: int = 0
    kinds: dict[str, int] = field(default_factory=dict)
    samples: list[str] = field(default_factory=list)

    def add(self, kind: str, detail: str) -> None:
        self.count += 1
        self.kinds[kind] = self.kinds.get(kind, 0) + 1
        if len(self.samples) < MAX_ERROR_SAMPLES:
            self.samples.append(f"{kind}: {detail[:300]}")


# --------------------------------------------------------------------------------------------------------
# Open-loop fixed-rate client
# --------------------------------------------------------------------------------------------------------


async def run_rate(
    url: str,
    auth: str | None,
    body: bytes,
    rate: float,
    duration: float,
    warmup: float,
    request_timeout: float,
    max_conns: int,
    raw: bool = False,
) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    headers = _headers(auth)
    connector = aiohttp.TCPConnector(limit=max_conns, keepalive_timeout=60, force_close=False)
    client_timeout = aiohttp.ClientTimeout(total=request_timeout)
    latencies: list[float] = []  # seconds, from scheduled send time to full body read (2xx only)
    send_lags: list[float] = []  # seconds, actual dispatch - scheduled
    errors = _Errors()
    status_counts: dict[str, int] = {}
    pending: set[asyncio.Task[None]] = set()
    total_n = round((warmup + duration) * rate)
    warmup_n = round(warmup * rate)

    async with aiohttp.ClientSession(
        connector=connector, timeout=client_timeout, skip_auto_headers=("User-Agent",)
    ) as session:

        async def one(i: int, scheduled: float) -> None:
            started = time.perf_counter()
            try:
                async with session.post(url, data=body, headers=headers) as resp:
                    payload = await resp.read()
                    status = resp.status
            except Exception as e:  # every failure is a counted benchmark error
                if i >= warmup_n:
                    errors.add(type(e).__name__, str(e) or repr(e))
                return
            end = time.perf_counter()
            if i < warmup_n:
                return
            status_counts[str(status)] = status_counts.get(str(status), 0) + 1
            send_lags.append(started - scheduled)
            if 200 <= status < 300:
                latencies.append(end - scheduled)
            else:
                errors.add(f"http_{status}", payload[:300].decode("utf-8", "replace"))

        def fire(i: int, scheduled: float) -> None:
            task = loop.create_task(one(i, scheduled))
            pending.add(task)
            task.add_done_callback(pending.discard)

        stop = threading.Event()
        scheduled_all = asyncio.Event()

        def scheduler(t0: float) -> None:
            interval = 1.0 / rate
            try:
                for i in range(total_n):
                    target = t0 + i * interval
                    delay = target - time.perf_counter()
                    if delay > 0 and stop.wait(delay):
                        return
                    loop.call_soon_threadsafe(fire, i, target)
            finally:
                # Queued after the last fire(), so every request task exists once this runs.
                loop.call_soon_threadsafe(scheduled_all.set)

        t0 = time.perf_counter() + 0.05
        thread = threading.Thread(target=scheduler, args=(t0,), daemon=True)
        thread.start()
        try:
            await scheduled_all.wait()
            if pending:
                await asyncio.wait(set(pending), timeout=request_timeout + 1)
        finally:
            stop.set()
        not_finished = len(pending)
        for task in list(pending):
            task.cancel()
        wall = time.perf_counter() - t0

    measured = total_n - warmup_n
    ok = sum(v for k, v in status_counts.items() if k.startswith("2"))
    if not_finished:
        errors.add("unfinished", f"{not_finished} requests still pending at the end")
    result: dict[str, Any] = {
        "rate": rate,
        "duration_s": duration,
        "warmup_s": warmup,
        "scheduled": measured,
        "completed": sum(status_counts.values()),
        "ok": ok,
        "errors": errors.count,
        "error_kinds": errors.kinds,
        "error_samples": errors.samples,
        "status_counts": status_counts,
        "achieved_rps": sum(status_counts.values()) / duration,
        "wall_s": wall,
        "latency_ms": {k: (v * 1e3 if v is not None else None) for k, v in percentiles(latencies).items()},
        "send_lag_ms": {k: (v * 1e3 if v is not None else None) for k, v in percentiles(send_lags).items()},
    }
    if raw:
        result["raw"] = {
            "latency_ms": [v * 1e3 for v in latencies],
            "send_lag_ms": [v * 1e3 for v in send_lags],
        }
    return result


# --------------------------------------------------------------------------------------------------------
# Streaming time-to-first-byte client
# --------------------------------------------------------------------------------------------------------


async def run_stream(
    url: str,
    auth: str | None,
    body: bytes,
    requests: int,
    concurrency: int,
    warmup: int,
    request_timeout: float,
    raw: bool = False,
) -> dict[str, Any]:
    headers = _headers(auth)
    headers["Accept"] = "text/event-stream"
    connector = aiohttp.TCPConnector(limit=max(1, concurrency), keepalive_timeout=60)
    client_timeout = aiohttp.ClientTimeout(total=request_timeout)
    t_headers: list[float] = []
    t_first_byte: list[float] = []
    t_first_data: list[float] = []
    t_total: list[float] = []
    event_counts: list[int] = []
    errors = _Errors()
    counter = iter(range(warmup + requests))

    async with aiohttp.ClientSession(
        connector=connector, timeout=client_timeout, skip_auto_headers=("User-Agent",)
    ) as session:

        async def one(i: int) -> None:
            record = i >= warmup
            t0 = time.perf_counter()
            first_byte: float | None = None
            first_data: float | None = None
            buf = bytearray()
            try:
                async with session.post(url, data=body, headers=headers) as resp:
                    got_headers = time.perf_counter()
                    if resp.status != 200:
                        text = await resp.read()
                        if record:
                            errors.add(f"http_{resp.status}", text[:300].decode("utf-8", "replace"))
                        return
                    ctype = resp.headers.get("Content-Type", "")
                    async for data in resp.content.iter_any():
                        now = time.perf_counter()
                        if first_byte is None:
                            first_byte = now
                        buf += data
                        if first_data is None:
                            idx = buf.find(b"data:")
                            if idx >= 0 and buf.find(b"\n\n", idx) >= 0:
                                first_data = now
            except Exception as e:  # every failure is a counted benchmark error
                if record:
                    errors.add(type(e).__name__, str(e) or repr(e))
                return
            end = time.perf_counter()
            if not record:
                return
            text = bytes(buf)
            if "text/event-stream" not in ctype:
                errors.add("bad_content_type", ctype)
                return
            if b"data: [DONE]" not in text or first_byte is None or first_data is None:
                errors.add("incomplete_stream", text[-200:].decode("utf-8", "replace"))
                return
            t_headers.append(got_headers - t0)
            t_first_byte.append(first_byte - t0)
            t_first_data.append(first_data - t0)
            t_total.append(end - t0)
            event_counts.append(text.count(b"data:"))

        async def worker() -> None:
            for i in counter:
                await one(i)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(max(1, concurrency))))
        wall = time.perf_counter() - started

    def ms(values: list[float]) -> dict[str, float | None]:
        return {k: (v * 1e3 if v is not None else None) for k, v in percentiles(values).items()}

    result: dict[str, Any] = {
        "requests": requests,
        "concurrency": concurrency,
        "warmup": warmup,
        "ok": len(t_total),
        "errors": errors.count,
        "error_kinds": errors.kinds,
        "error_samples": errors.samples,
        "events_per_stream": (sum(event_counts) / len(event_counts)) if event_counts else None,
        "wall_s": wall,
        "headers_ms": ms(t_headers),
        "first_byte_ms": ms(t_first_byte),
        "first_data_ms": ms(t_first_data),
        "total_ms": ms(t_total),
    }
    if raw:
        result["raw"] = {
            "headers_ms": [v * 1e3 for v in t_headers],
            "first_byte_ms": [v * 1e3 for v in t_first_byte],
            "first_data_ms": [v * 1e3 for v in t_first_data],
            "total_ms": [v * 1e3 for v in t_total],
            "events": event_counts,
        }
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="OmniRelay benchmark clients (JSON result on stdout).")
    sub = parser.add_subparsers(dest="cmd", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--url", required=True)
    common.add_argument("--auth", default=None, help="full Authorization header value")
    common.add_argument("--body", required=True, help="JSON request body")
    common.add_argument("--timeout", type=float, default=10.0, help="per-request timeout (s)")
    common.add_argument("--raw", action="store_true", help="also output every sample (for merging)")
    r = sub.add_parser("rate", parents=[common], help="open-loop fixed-rate non-streaming load")
    r.add_argument("--rate", type=float, default=200.0)
    r.add_argument("--duration", type=float, default=10.0)
    r.add_argument("--warmup", type=float, default=1.0)
    r.add_argument("--max-conns", type=int, default=256)
    s = sub.add_parser("stream", parents=[common], help="streaming time-to-first-byte")
    s.add_argument("--requests", type=int, default=200)
    s.add_argument("--concurrency", type=int, default=1)
    s.add_argument("--warmup", type=int, default=20)
    args = parser.parse_args(argv)

    sys.setswitchinterval(0.0005)  # let the scheduler thread grab the GIL promptly
    import uvloop

    body = args.body.encode()
    if args.cmd == "rate":
        if args.rate <= 0 or args.duration <= 0:
            parser.error("--rate and --duration must be > 0")
        result = uvloop.run(
            run_rate(
                args.url,
                args.auth,
                body,
                args.rate,
                args.duration,
                args.warmup,
                args.timeout,
                args.max_conns,
                args.raw,
            )
        )
    else:
        result = uvloop.run(
            run_stream(
                args.url,
                args.auth,
                body,
                args.requests,
                args.concurrency,
                args.warmup,
                args.timeout,
                args.raw,
            )
        )
    sys.stdout.buffer.write(orjson.dumps(result) + b"\n")


if __name__ == "__main__":
    main()
