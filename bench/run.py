"""OmniRelay overhead benchmark: the same scenarios against the fake upstream directly and via the gateway.

``python bench/run.py`` (≈2 min per gateway combination) or ``python bench/run.py --quick`` (≈1 min).
See ``bench/README.md`` for what every number means. Markdown goes to stdout, progress to stderr, and
the full results (with machine info and exact command lines) to ``bench/results/<timestamp>.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import functools
import http.client
import importlib.metadata
import itertools
import json
import os
import platform
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import IO, Any, Final, TypeVar

from loadgen import percentiles

BENCH_DIR: Final = Path(__file__).resolve().parent
CHAT_PATH: Final = "/v1/chat/completions"
MASTER_KEY: Final = "sk-bench-master"
UPSTREAM_KEY: Final = "sk-fake"
MODEL: Final = "bench-model"
SERVERS: Final = ("uvicorn", "granian")
HTTP_CLIENTS: Final = ("aiohttp", "httpx")

_MESSAGES: Final = [
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "content": "Say hello in one short sentence."},
]
BODY: Final = json.dumps(
    {"model": MODEL, "messages": _MESSAGES, "max_tokens": 32, "temperature": 0}, separators=(",", ":")
)
STREAM_BODY: Final = json.dumps(
    {
        "model": MODEL,
        "messages": _MESSAGES,
        "max_tokens": 32,
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
    },
    separators=(",", ":"),
)

# Targets from bench/README.md (checked for every gateway combination).
TARGET_ADDED_P50_MS: Final = 1.0
TARGET_ADDED_P99_MS: Final = 5.0
TARGET_STREAM_FIRST_BYTE_P50_MS: Final = 1.0
TARGET_RPS_C64: Final = 1000.0
TARGET_IDLE_RSS_MB: Final = 80.0


_T = TypeVar("_T")


class BenchError(Exception):
    """A step failed; the message is meant for the user."""


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------------------
# Process management: every child gets its own process group and is killed on exit, error or Ctrl-C.
# --------------------------------------------------------------------------------------------------------


@dataclass
class Procs:
    pin: bool
    commands: list[dict[str, str]] = field(default_factory=list)
    _live: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def argv(self, cpu: int | None, cmd: Sequence[str]) -> list[str]:
        if self.pin and cpu is not None:
            return ["taskset", "-c", str(cpu), *cmd]
        return list(cmd)

    def spawn(
        self,
        role: str,
        argv: list[str],
        stdout: IO[bytes] | int | None,
        stderr: IO[bytes] | int | None,
        env: dict[str, str] | None = None,
    ) -> subprocess.Popen[bytes]:
        self.commands.append({"role": role, "cmd": shlex.join(argv)})
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr, env=env, start_new_session=True
        )
        self._live.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen[bytes], grace: float = 5.0) -> None:
        """SIGTERM the process group, then SIGKILL after ``grace`` seconds."""
        for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 3.0)):
            if proc.poll() is not None:
                # The leader is gone; still make sure no stragglers survive in its group.
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, signal.SIGKILL)
                break
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=wait)
        if proc in self._live:
            self._live.remove(proc)

    def stop_all(self) -> None:
        for proc in list(reversed(self._live)):
            self.stop(proc, grace=3.0)

    def run(self, role: str, argv: list[str], timeout: float) -> tuple[int, str, str]:
        """Run to completion with a hard timeout; returns (returncode, stdout, stderr)."""
        proc = self.spawn(role, argv, subprocess.PIPE, subprocess.PIPE)
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.stop(proc, grace=1.0)
            raise BenchError(f"{role} did not finish within {timeout:.0f}s: {shlex.join(argv)}") from None
        finally:
            if proc in self._live and proc.poll() is not None:
                self._live.remove(proc)
        return proc.returncode, out.decode("utf-8", "replace"), err.decode("utf-8", "replace")


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


# --------------------------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http_request(
    port: int,
    method: str,
    path: str,
    body: str | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 5.0,
) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body.encode() if body is not None else None, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def tail(path: Path, max_bytes: int = 4000) -> str:
    try:
        data = path.read_bytes()
    except OSError:
        return ""
    return data[-max_bytes:].decode("utf-8", "replace")


def wait_healthy(
    proc: subprocess.Popen[bytes], port: int, path: str, timeout: float, what: str, stderr_file: Path
) -> float:
    """Poll ``GET path`` until 200. Returns seconds waited; raises BenchError with the child's stderr."""
    start = time.monotonic()
    last = "no answer yet"
    while time.monotonic() - start < timeout:
        rc = proc.poll()
        if rc is not None:
            raise BenchError(
                f"{what} exited with code {rc} before becoming healthy.\n"
                f"--- {what} stderr (tail) ---\n{tail(stderr_file)}"
            )
        try:
            status, _, body = http_request(port, "GET", path, timeout=1.0)
            if status == 200:
                return time.monotonic() - start
            last = f"HTTP {status}: {body[:200]!r}"
        except OSError as e:
            last = f"{type(e).__name__}: {e}"
        time.sleep(0.1)
    raise BenchError(
        f"{what} did not answer 200 on GET {path} within {timeout:.0f}s (last: {last}).\n"
        f"--- {what} stderr (tail) ---\n{tail(stderr_file)}"
    )


def _read_status_kb(pid: int, key: str) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def _read_pss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def process_tree(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2 :].split()
        if len(fields) > 1:
            children.setdefault(int(fields[1]), []).append(int(entry))
    out: list[int] = []
    todo = [root]
    while todo:
        pid = todo.pop()
        if os.path.exists(f"/proc/{pid}"):
            out.append(pid)
            todo.extend(children.get(pid, []))
    return out


def memory(root: int) -> dict[str, Any]:
    """VmRSS / VmHWM / PSS summed over the process tree rooted at ``root`` (MB)."""
    pids = process_tree(root)
    return {
        "pids": pids,
        "rss_mb": sum(_read_status_kb(p, "VmRSS") for p in pids) / 1024,
        "hwm_mb": sum(_read_status_kb(p, "VmHWM") for p in pids) / 1024,
        "pss_mb": sum(_read_pss_kb(p) for p in pids) / 1024,
    }


def cpu_times() -> list[int]:
    """Aggregate jiffies from /proc/stat: user nice system idle iowait irq softirq steal."""
    try:
        with open("/proc/stat") as f:
            return [int(x) for x in f.readline().split()[1:9]]
    except (OSError, ValueError):
        return []


def cpu_usage(before: list[int], after: list[int]) -> dict[str, float] | None:
    if len(before) < 8 or len(after) < 8:
        return None
    d = [b - a for a, b in zip(before, after, strict=True)]
    total = sum(d) or 1
    return {
        "busy_pct": 100 * (total - d[3] - d[4]) / total,
        "steal_pct": 100 * d[7] / total,
        "iowait_pct": 100 * d[4] / total,
    }


def percent_of(values: dict[str, Any] | None, key: str) -> float | None:
    if not values:
        return None
    v = values.get(key)
    return float(v) if isinstance(v, (int, float)) else None


# --------------------------------------------------------------------------------------------------------
# Scenarios
# --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    key: str  # "direct" or "uvicorn+aiohttp"
    port: int
    auth: str  # full Authorization header value

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{CHAT_PATH}"


WRK_LUA: Final = """\
wrk.method = "POST"
wrk.body = [==[@BODY@]==]
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = [==[@AUTH@]==]
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests":%d,"duration_us":%d,"bytes":%d,"err_connect":%d,"err_read":%d,' ..
    '"err_write":%d,"err_status":%d,"err_timeout":%d,"mean_us":%.1f,"max_us":%d,' ..
    '"p50_us":%d,"p90_us":%d,"p99_us":%d,"p999_us":%d}\\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout,
    latency.mean, latency.max, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9)))
end
"""


@dataclass
class Bench:
    args: argparse.Namespace
    procs: Procs
    tmp: Path

    def write_lua(self, target: Target, body: str) -> Path:
        if "]==]" in body or "]==]" in target.auth:
            raise BenchError("request body/auth may not contain ']==]'")
        path = self.tmp / f"wrk-{target.port}-{abs(hash(body)) % 10_000}.lua"
        path.write_text(WRK_LUA.replace("@BODY@", body).replace("@AUTH@", target.auth))
        return path

    def wrk(self, target: Target, conns: int, duration: float, cpu: int | None, role: str) -> dict[str, Any]:
        lua = self.write_lua(target, BODY)
        argv = self.procs.argv(
            cpu,
            [
                "wrk",
                "-t1",
                f"-c{conns}",
                f"-d{duration:g}s",
                "--timeout",
                "5s",
                "--latency",
                "-s",
                str(lua),
                target.url,
            ],
        )
        rc, out, err = self.procs.run(role, argv, timeout=duration + 30)
        if rc != 0:
            raise BenchError(f"wrk exited with {rc}: {err.strip() or out.strip()}")
        line = next((ln for ln in out.splitlines() if ln.startswith("WRKJSON ")), None)
        if line is None:
            raise BenchError(f"could not parse wrk output:\n{out}\n{err}")
        raw: dict[str, Any] = json.loads(line[len("WRKJSON ") :])
        text = "\n".join(ln for ln in out.splitlines() if not ln.startswith("WRKJSON "))
        # Cross-check the textual counters wrk prints (only present when non-zero).
        non2xx = raw["err_status"]
        socket_errors = raw["err_connect"] + raw["err_read"] + raw["err_write"] + raw["err_timeout"]
        for ln in text.splitlines():
            s = ln.strip()
            if s.startswith("Non-2xx or 3xx responses:"):
                non2xx = max(non2xx, int(s.rsplit(":", 1)[1]))
        seconds = raw["duration_us"] / 1e6
        return {
            "connections": conns,
            "duration_s": duration,
            "requests": raw["requests"],
            "rps": raw["requests"] / seconds if seconds > 0 else 0.0,
            "p50_ms": raw["p50_us"] / 1e3,
            "p90_ms": raw["p90_us"] / 1e3,
            "p99_ms": raw["p99_us"] / 1e3,
            "p999_ms": raw["p999_us"] / 1e3,
            "mean_ms": raw["mean_us"] / 1e3,
            "max_ms": raw["max_us"] / 1e3,
            "non_2xx": non2xx,
            "socket_errors": socket_errors,
            "socket_errors_detail": {k: raw[f"err_{k}"] for k in ("connect", "read", "write", "timeout")},
            "command": argv,
            "output": text,
        }

    def loadgen(
        self, role: str, sub: str, target: Target, body: str, extra: list[str], timeout: float
    ) -> dict[str, Any]:
        argv = self.procs.argv(
            self.load_cpu,
            [
                sys.executable,
                str(BENCH_DIR / "loadgen.py"),
                sub,
                "--url",
                target.url,
                "--auth",
                target.auth,
                "--body",
                body,
                *extra,
            ],
        )
        rc, out, err = self.procs.run(role, argv, timeout=timeout)
        if rc != 0:
            raise BenchError(f"loadgen {sub} exited with {rc}:\n{err.strip()[-3000:]}")
        try:
            result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
        except (json.JSONDecodeError, IndexError):
            raise BenchError(f"could not parse loadgen output:\n{out}\n{err}") from None
        result["command"] = argv
        return result

    @property
    def load_cpu(self) -> int:
        return int(self.args.load_cpu)

    def sanity(self, target: Target) -> None:
        """One non-streaming and one streaming request must succeed before measuring anything."""
        try:
            self._sanity(target)
        except OSError as e:
            raise BenchError(f"[{target.key}] sanity request failed: {type(e).__name__}: {e}") from None

    def _sanity(self, target: Target) -> None:
        headers = {"Content-Type": "application/json", "Authorization": target.auth}
        status, _, body = http_request(target.port, "POST", CHAT_PATH, BODY, headers, timeout=10)
        if status != 200 or b'"choices"' not in body:
            raise BenchError(f"[{target.key}] sanity request failed: HTTP {status}: {body[:500]!r}")
        status, hdrs, body = http_request(target.port, "POST", CHAT_PATH, STREAM_BODY, headers, timeout=10)
        ctype = hdrs.get("content-type", "")
        if status != 200 or b"data: [DONE]" not in body or "text/event-stream" not in ctype:
            raise BenchError(
                f"[{target.key}] sanity streaming request failed: HTTP {status} "
                f"content-type={hdrs.get('content-type')!r}: {body[:500]!r}"
            )

    def guarded(self, out: dict[str, Any], name: str, fn: Callable[[], _T]) -> _T | None:
        """Run one measurement; a failure is logged and recorded in ``out['errors']``, not raised."""
        try:
            return fn()
        except BenchError as e:
            log(f"[{out['key']}] {name} FAILED: {e}")
            out.setdefault("errors", []).append(f"{name}: {e}")
            return None

    def warmup(self, target: Target, out: dict[str, Any]) -> None:
        log(f"[{target.key}] warm-up")
        self.guarded(
            out,
            "warmup",
            lambda: self.wrk(target, 16, self.args.warmup, self.load_cpu, f"warmup {target.key}"),
        )
        self.guarded(
            out,
            "warmup_stream",
            lambda: self.loadgen(
                f"warmup stream {target.key}",
                "stream",
                target,
                STREAM_BODY,
                ["--requests", "20", "--warmup", "0"],
                timeout=60,
            ),
        )

    def throughput(self, target: Target, out: dict[str, Any]) -> None:
        """Scenario a: closed-loop wrk at each concurrency level."""
        a = self.args
        out["throughput"] = []
        for conns in a.connections:
            log(f"[{target.key}] a. wrk -t1 -c{conns} -d{a.duration:g}s")
            r = self.guarded(
                out,
                f"wrk_c{conns}",
                functools.partial(
                    self.wrk, target, conns, a.duration, self.load_cpu, f"wrk {target.key} c={conns}"
                ),
            )
            if r is not None:
                out["throughput"].append(r)

    def paired(self, targets: list[tuple[Target, dict[str, Any]]]) -> None:
        """Scenarios b (fixed rate) and c (streaming), split into rounds that alternate between the targets
        in ABBA order, so slow drift of a shared/virtualised machine hits direct and gateway alike."""
        a = self.args
        rounds = a.rounds
        seg = a.rate_duration / rounds
        rate_parts: dict[str, list[dict[str, Any]]] = {t.key: [] for t, _ in targets}
        for r in range(rounds):
            for t, out in targets if r % 2 == 0 else list(reversed(targets)):
                log(f"[{t.key}] b. fixed rate {a.rate:g} req/s, round {r + 1}/{rounds} ({seg:g}s)")
                res = self.guarded(
                    out,
                    f"rate round {r + 1}",
                    functools.partial(
                        self.loadgen,
                        f"rate {t.key}",
                        "rate",
                        t,
                        BODY,
                        ["--rate", f"{a.rate:g}", "--duration", f"{seg:g}", "--warmup", "0.5", "--raw"],
                        timeout=seg + 30,
                    ),
                )
                if res is not None:
                    rate_parts[t.key].append(res)
        per_round = max(1, -(-a.stream_requests // rounds))
        stream_parts: dict[str, list[dict[str, Any]]] = {t.key: [] for t, _ in targets}
        for r in range(rounds):
            for t, out in targets if r % 2 == 0 else list(reversed(targets)):
                log(f"[{t.key}] c. streaming x{per_round}, round {r + 1}/{rounds}")
                res = self.guarded(
                    out,
                    f"stream round {r + 1}",
                    functools.partial(
                        self.loadgen,
                        f"stream {t.key}",
                        "stream",
                        t,
                        STREAM_BODY,
                        [
                            "--requests",
                            str(per_round),
                            "--concurrency",
                            str(a.stream_concurrency),
                            "--warmup",
                            "5",
                            "--raw",
                        ],
                        timeout=120,
                    ),
                )
                if res is not None:
                    stream_parts[t.key].append(res)
        for t, out in targets:
            out["rate"] = merge_rate(rate_parts[t.key]) if rate_parts[t.key] else None
            out["stream"] = merge_stream(stream_parts[t.key]) if stream_parts[t.key] else None


def _merge_common(parts: list[dict[str, Any]]) -> dict[str, Any]:
    kinds: dict[str, int] = {}
    samples: list[str] = []
    for p in parts:
        for k, v in p["error_kinds"].items():
            kinds[k] = kinds.get(k, 0) + v
        samples.extend(p["error_samples"])
    return {
        "rounds": len(parts),
        "errors": sum(int(p["errors"]) for p in parts),
        "error_kinds": kinds,
        "error_samples": samples[:5],
        "commands": [p["command"] for p in parts],
    }


def merge_rate(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """Combine per-round loadgen ``rate`` results (percentiles recomputed over all raw samples)."""
    status: dict[str, int] = {}
    for p in parts:
        for k, v in p["status_counts"].items():
            status[k] = status.get(k, 0) + v
    duration = sum(float(p["duration_s"]) for p in parts)
    completed = sum(int(p["completed"]) for p in parts)
    return {
        "rate": parts[0]["rate"],
        "duration_s": duration,
        "scheduled": sum(int(p["scheduled"]) for p in parts),
        "completed": completed,
        "ok": sum(int(p["ok"]) for p in parts),
        "status_counts": status,
        "achieved_rps": completed / duration if duration else None,
        "latency_ms": percentiles([x for p in parts for x in p["raw"]["latency_ms"]]),
        "send_lag_ms": percentiles([x for p in parts for x in p["raw"]["send_lag_ms"]]),
        **_merge_common(parts),
    }


def merge_stream(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """Combine per-round loadgen ``stream`` results (percentiles recomputed over all raw samples)."""
    events = [e for p in parts for e in p["raw"]["events"]]
    out: dict[str, Any] = {
        "requests": sum(int(p["requests"]) for p in parts),
        "concurrency": parts[0]["concurrency"],
        "ok": sum(int(p["ok"]) for p in parts),
        "events_per_stream": sum(events) / len(events) if events else None,
        **_merge_common(parts),
    }
    for key in ("headers_ms", "first_byte_ms", "first_data_ms", "total_ms"):
        out[key] = percentiles([x for p in parts for x in p["raw"][key]])
    return out


# --------------------------------------------------------------------------------------------------------
# Orchestration
# --------------------------------------------------------------------------------------------------------


def machine_info(pin: bool, args: argparse.Namespace) -> dict[str, Any]:
    model = "unknown"
    mhz: str | None = None
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name") and model == "unknown":
                model = line.split(":", 1)[1].strip()
            elif line.startswith("cpu MHz") and mhz is None:
                mhz = line.split(":", 1)[1].strip()
    versions: dict[str, str] = {}
    for pkg in ("omnirelay", "uvicorn", "granian", "uvloop", "httptools", "aiohttp", "httpx", "orjson"):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            versions[pkg] = importlib.metadata.version(pkg)
    wrk_version = ""
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        r = subprocess.run(["wrk", "--version"], capture_output=True, timeout=5, check=False)
        wrk_version = (r.stdout or r.stderr).decode().splitlines()[0].strip()
    governor = None
    with contextlib.suppress(OSError):
        governor = Path("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor").read_text().strip()
    return {
        "nproc": os.cpu_count(),
        "affinity": sorted(os.sched_getaffinity(0)),
        "cpu_model": model,
        "cpu_mhz": mhz,
        "governor": governor,
        "python": sys.version.split()[0],
        "python_executable": sys.executable,
        "platform": platform.platform(),
        "kernel": platform.release(),
        "loadavg": os.getloadavg(),
        "wrk": wrk_version,
        "packages": versions,
        "pinning": {
            "enabled": pin,
            "gateway_cpu": args.gateway_cpu if pin else None,
            "upstream_and_load_cpu": args.load_cpu if pin else None,
        },
    }


def find_omnirelay(args: argparse.Namespace) -> list[str]:
    if args.omnirelay_cmd:
        return shlex.split(args.omnirelay_cmd)
    script = Path(sys.executable).parent / "omnirelay"
    if script.exists():
        return [str(script)]
    raise BenchError(
        f"the 'omnirelay' console script was not found next to {sys.executable}. Install "
        "the project into this venv (pip install -e .), pass --omnirelay-cmd, or use "
        "--direct-only."
    )


GATEWAY_YAML: Final = """\
master_key: {master}
providers:
  - name: fake
    type: openai
    base_url: http://127.0.0.1:{port}/v1
    api_keys: [{key}]
    models: [{model}]
"""


def run_gateway(bench: Bench, base_cmd: list[str], out: dict[str, Any], direct: Target) -> None:
    """Start one gateway combination, measure it into ``out``, stop it. Failures are recorded in ``out``."""
    a = bench.args
    key, server, client = out["key"], out["server"], out["http_client"]
    gdir = bench.tmp / f"gw-{server}-{client}"
    data_dir = gdir / "data"
    data_dir.mkdir(parents=True)
    config = gdir / "config.yaml"
    config.write_text(GATEWAY_YAML.format(master=MASTER_KEY, port=direct.port, key=UPSTREAM_KEY, model=MODEL))
    out["config_yaml"] = config.read_text()
    port = free_port()
    argv = bench.procs.argv(
        a.gateway_cpu,
        [
            *base_cmd,
            "serve",
            "--config",
            str(config),
            "--port",
            str(port),
            "--data-dir",
            str(data_dir),
            "--server",
            server,
            "--http-client",
            client,
            *shlex.split(a.gateway_extra_args),
        ],
    )
    out["command"] = shlex.join(argv)
    stdout_path, stderr_path = gdir / "stdout.log", gdir / "stderr.log"
    log(f"[{key}] starting gateway: {shlex.join(argv)}")
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    with open(stdout_path, "wb") as so, open(stderr_path, "wb") as se:
        proc = bench.procs.spawn(f"gateway {key}", argv, so, se, env=env)
    try:
        out["startup_s"] = wait_healthy(
            proc, port, "/health", a.startup_timeout, f"gateway {key}", stderr_path
        )
        log(f"[{key}] healthy after {out['startup_s']:.2f}s (pid {proc.pid})")
        time.sleep(1.0)
        out["rss_idle"] = memory(proc.pid)
        target = Target(key, port, f"Bearer {MASTER_KEY}")
        bench.sanity(target)
        bench.warmup(target, out)
        paired_direct: dict[str, Any] = {"key": f"direct~{key}", "errors": []}
        out["paired_direct"] = paired_direct
        bench.paired([(direct, paired_direct), (target, out)])
        bench.throughput(target, out)
        time.sleep(1.0)
        out["rss_after_load"] = memory(proc.pid)
        if proc.poll() is not None:
            raise BenchError(
                f"gateway {key} died during the run (code {proc.returncode}).\n"
                f"--- stderr (tail) ---\n{tail(stderr_path)}"
            )
    except BenchError as e:
        msg = str(e)
        if "stderr (tail)" not in msg:
            msg += f"\n--- gateway {key} stderr (tail) ---\n{tail(stderr_path)}"
        log(f"[{key}] FAILED: {msg}")
        out["errors"].append(msg)
    finally:
        bench.procs.stop(proc)
        out["stderr_tail"] = tail(stderr_path, 2000)


def parse_list(value: str, allowed: Sequence[str], what: str) -> list[str]:
    items = [v.strip() for v in value.split(",") if v.strip()]
    bad = [v for v in items if v not in allowed]
    if not items or bad:
        raise argparse.ArgumentTypeError(f"invalid {what} {bad or value!r}; choose from {', '.join(allowed)}")
    return items


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description="Measure the overhead OmniRelay adds over calling a fast fake upstream directly. "
        "Markdown report on stdout, JSON in --results-dir. Defaults in [brackets].",
    )
    p.add_argument("--quick", action="store_true", help="short run (~1 min) with fewer samples")
    p.add_argument("--direct-only", action="store_true", help="only measure the direct baseline (no gateway)")
    p.add_argument(
        "--server", default="uvicorn", help=f"comma list of gateway servers ({', '.join(SERVERS)}) [uvicorn]"
    )
    p.add_argument(
        "--http-client",
        default="aiohttp",
        help=f"comma list of gateway upstream clients ({', '.join(HTTP_CLIENTS)}) [aiohttp]",
    )
    p.add_argument(
        "--duration", type=float, default=None, help="a: wrk seconds per concurrency [10; quick 3]"
    )
    p.add_argument("--connections", default="1,16,64", help="a: wrk concurrency levels [1,16,64]")
    p.add_argument("--rate", type=float, default=200.0, help="b: fixed request rate in req/s [200]")
    p.add_argument(
        "--rate-duration", type=float, default=None, help="b: measured seconds per target [20; quick 6]"
    )
    p.add_argument(
        "--stream-requests", type=int, default=None, help="c: streaming requests per target [500; quick 150]"
    )
    p.add_argument("--stream-concurrency", type=int, default=1, help="c: concurrent streams [1]")
    p.add_argument(
        "--rounds",
        type=int,
        default=None,
        help="b/c are split into this many rounds alternating direct/gateway [4; quick 2]",
    )
    p.add_argument(
        "--chunk-delay-ms", type=float, default=0.0, help="fake upstream delay between SSE chunks [0]"
    )
    p.add_argument(
        "--fake-impl",
        choices=("protocol", "asgi"),
        default="protocol",
        help="fake upstream server implementation [protocol]",
    )
    p.add_argument(
        "--capacity-duration",
        type=float,
        default=None,
        help="seconds for the fake-upstream-alone capacity check, 0 = skip [5; quick 3]",
    )
    p.add_argument("--gateway-cpu", type=int, default=0, help="CPU the gateway is pinned to [0]")
    p.add_argument(
        "--load-cpu", type=int, default=1, help="CPU for the fake upstream and load generators [1]"
    )
    p.add_argument("--no-pin", action="store_true", help="do not pin with taskset")
    p.add_argument(
        "--omnirelay-cmd",
        default=None,
        help="gateway command prefix, e.g. 'python -m omnirelay' [the omnirelay script next to this python]",
    )
    p.add_argument(
        "--gateway-extra-args",
        default="",
        help="extra args appended to 'omnirelay serve' (use --gateway-extra-args='--x y')",
    )
    p.add_argument("--startup-timeout", type=float, default=30.0, help="max seconds to wait for /health [30]")
    p.add_argument(
        "--results-dir", type=Path, default=BENCH_DIR / "results", help="where the JSON goes [bench/results]"
    )
    p.add_argument("--keep-tmp", action="store_true", help="keep the temp dir (configs, gateway logs, lua)")
    return p


def resolve_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = build_parser()
    a = p.parse_args(argv)
    try:
        a.servers = parse_list(a.server, SERVERS, "--server")
        a.http_clients = parse_list(a.http_client, HTTP_CLIENTS, "--http-client")
        a.connections = [int(c) for c in a.connections.split(",") if c.strip()]
    except (argparse.ArgumentTypeError, ValueError) as e:
        p.error(str(e))
    if not a.connections or min(a.connections) < 1:
        p.error("--connections must be positive integers")
    q = a.quick
    a.duration = a.duration if a.duration is not None else (3.0 if q else 10.0)
    a.rate_duration = a.rate_duration if a.rate_duration is not None else (6.0 if q else 20.0)
    a.stream_requests = a.stream_requests if a.stream_requests is not None else (150 if q else 500)
    a.capacity_duration = a.capacity_duration if a.capacity_duration is not None else (3.0 if q else 5.0)
    a.rounds = a.rounds if a.rounds is not None else (2 if q else 4)
    a.warmup = 1.0 if q else 2.0
    if a.rate <= 0 or a.rate_duration <= 0 or a.duration <= 0 or a.stream_requests < 1 or a.rounds < 1:
        p.error("durations, --rate and --stream-requests must be positive")
    return a


@contextlib.contextmanager
def signals_as_interrupt() -> Iterator[None]:
    old = {s: signal.signal(s, _raise_interrupt) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def main(argv: Sequence[str] | None = None) -> int:
    a = resolve_args(argv)
    started = dt.datetime.now(dt.UTC)
    pin = not a.no_pin
    if pin:
        cpus = os.sched_getaffinity(0)
        if shutil.which("taskset") is None:
            log("WARNING: taskset not found; running without CPU pinning")
            pin = False
        elif a.gateway_cpu not in cpus or a.load_cpu not in cpus or a.gateway_cpu == a.load_cpu:
            log(f"WARNING: need two distinct usable CPUs (have {sorted(cpus)}); running without CPU pinning")
            pin = False
    if shutil.which("wrk") is None:
        log("ERROR: wrk is required (apt-get install wrk)")
        return 2
    base_cmd: list[str] = []
    if not a.direct_only:
        try:
            base_cmd = find_omnirelay(a)
        except BenchError as e:
            log(f"ERROR: {e}")
            return 2

    procs = Procs(pin=pin)
    tmp = Path(tempfile.mkdtemp(prefix="omnirelay-bench-"))
    results: dict[str, Any] = {
        "started_utc": started.isoformat(timespec="seconds"),
        "run_command": shlex.join([sys.executable, *sys.argv]),
        "profile": "quick" if a.quick else "full",
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(a).items()},
        "machine": machine_info(pin, a),
        "requests": {"non_stream_body": BODY, "stream_body": STREAM_BODY, "wrk_lua_template": WRK_LUA},
        "commands": procs.commands,
        "errors": [],
    }
    exit_code = 0
    cpu_before = cpu_times()
    try:
        with signals_as_interrupt():
            exit_code = orchestrate(a, procs, tmp, base_cmd, results)
    except KeyboardInterrupt:
        log("interrupted; cleaning up")
        results["errors"].append("interrupted")
        exit_code = 130
    except BenchError as e:
        log(f"ERROR: {e}")
        results["errors"].append(str(e))
        exit_code = 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # cleanup is bounded; don't let a 2nd Ctrl-C skip it
        procs.stop_all()
        signal.signal(signal.SIGINT, signal.default_int_handler)
        if a.keep_tmp:
            log(f"temp dir kept: {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    results["finished_utc"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    results["wall_s"] = (dt.datetime.now(dt.UTC) - started).total_seconds()
    results["machine"]["loadavg_end"] = os.getloadavg()
    results["machine"]["cpu_during_run"] = cpu_usage(cpu_before, cpu_times())
    results["checks"] = checks(results)
    print(render_markdown(results))
    a.results_dir.mkdir(parents=True, exist_ok=True)
    out_path = a.results_dir / f"{started.strftime('%Y%m%dT%H%M%SZ')}.json"
    out_path.write_text(json.dumps(results, indent=2, default=str) + "\n")
    log(f"results written to {out_path}")
    if exit_code == 0 and (results["errors"] or any(gw.get("errors") for gw in results.get("gateways", []))):
        exit_code = 1
    return exit_code


def orchestrate(
    a: argparse.Namespace, procs: Procs, tmp: Path, base_cmd: list[str], results: dict[str, Any]
) -> int:
    bench = Bench(a, procs, tmp)
    fake_port = free_port()
    fake_argv = procs.argv(
        a.load_cpu,
        [
            sys.executable,
            str(BENCH_DIR / "fake_upstream.py"),
            "--port",
            str(fake_port),
            "--impl",
            a.fake_impl,
            "--chunk-delay-ms",
            f"{a.chunk_delay_ms:g}",
        ],
    )
    fake_err = tmp / "fake_upstream.stderr.log"
    log(f"starting fake upstream: {shlex.join(fake_argv)}")
    with open(fake_err, "wb") as se:
        fake = procs.spawn("fake upstream", fake_argv, subprocess.DEVNULL, se)
    wait_healthy(fake, fake_port, "/health", 15, "fake upstream", fake_err)
    direct = Target("direct", fake_port, f"Bearer {UPSTREAM_KEY}")
    bench.sanity(direct)

    if a.capacity_duration > 0:
        # Fake upstream alone on its core, wrk on the (still idle) gateway core.
        log(f"fake upstream capacity: wrk -c64 on CPU {a.gateway_cpu} for {a.capacity_duration:g}s")
        try:
            bench.wrk(direct, 64, 1.0, a.gateway_cpu, "capacity warm-up")
            results["upstream_capacity"] = bench.wrk(
                direct, 64, a.capacity_duration, a.gateway_cpu, "fake upstream capacity"
            )
        except BenchError as e:
            results["errors"].append(f"upstream capacity: {e}")

    # Results are attached before running so an interrupted run still reports what it measured.
    direct_out: dict[str, Any] = {"key": "direct", "errors": []}
    results["direct"] = direct_out
    bench.warmup(direct, direct_out)
    if a.direct_only:
        bench.paired([(direct, direct_out)])
    # else: scenarios b and c run paired with each gateway (see run_gateway).
    bench.throughput(direct, direct_out)
    results["gateways"] = []
    if not a.direct_only:
        for server, client in itertools.product(a.servers, a.http_clients):
            if fake.poll() is not None:
                raise BenchError(f"fake upstream died (code {fake.returncode}):\n{tail(fake_err)}")
            gw_out: dict[str, Any] = {
                "key": f"{server}+{client}",
                "server": server,
                "http_client": client,
                "errors": [],
            }
            results["gateways"].append(gw_out)
            run_gateway(bench, base_cmd, gw_out, direct)
    results["fake_upstream_rss"] = memory(fake.pid)
    return 0


# --------------------------------------------------------------------------------------------------------
# Checks and reporting
# --------------------------------------------------------------------------------------------------------


def _added(gw: dict[str, Any] | None, direct: dict[str, Any] | None, key: str) -> float | None:
    g, d = percent_of(gw, key), percent_of(direct, key)
    return None if g is None or d is None else g - d


def _wrk_at(entry: dict[str, Any], conns: int) -> dict[str, Any] | None:
    return next((t for t in entry.get("throughput") or [] if t["connections"] == conns), None)


def checks(results: dict[str, Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for gw in results.get("gateways", []):
        direct = gw.get("paired_direct") or {}  # b and c compare against the interleaved direct rounds
        rate, drate = gw.get("rate") or {}, direct.get("rate") or {}
        stream, dstream = gw.get("stream") or {}, direct.get("stream") or {}
        w64 = _wrk_at(gw, 64)
        idle = (gw.get("rss_idle") or {}).get("rss_mb")
        rows: list[tuple[str, float | None, str, bool | None]] = []
        p50 = _added(rate.get("latency_ms"), drate.get("latency_ms"), "p50")
        p99 = _added(rate.get("latency_ms"), drate.get("latency_ms"), "p99")
        fb = _added(stream.get("first_byte_ms"), dstream.get("first_byte_ms"), "p50")
        rows.append(
            (
                "added latency p50 @ fixed rate (ms)",
                p50,
                f"< {TARGET_ADDED_P50_MS:g}",
                None if p50 is None else p50 < TARGET_ADDED_P50_MS and rate.get("errors") == 0,
            )
        )
        rows.append(
            (
                "added latency p99 @ fixed rate (ms)",
                p99,
                f"< {TARGET_ADDED_P99_MS:g}",
                None if p99 is None else p99 < TARGET_ADDED_P99_MS and rate.get("errors") == 0,
            )
        )
        rows.append(
            (
                "added stream first-byte p50 (ms)",
                fb,
                f"< {TARGET_STREAM_FIRST_BYTE_P50_MS:g}",
                None if fb is None else fb < TARGET_STREAM_FIRST_BYTE_P50_MS and stream.get("errors") == 0,
            )
        )
        rps = None if w64 is None else float(w64["rps"])
        errs = None if w64 is None else int(w64["non_2xx"]) + int(w64["socket_errors"])
        rows.append(
            (
                "req/s at c=64, zero errors",
                rps,
                f">= {TARGET_RPS_C64:g}, 0 errors",
                None if rps is None else rps >= TARGET_RPS_C64 and errs == 0,
            )
        )
        rows.append(
            (
                "idle RSS (MB)",
                idle,
                f"< {TARGET_IDLE_RSS_MB:g}",
                None if idle is None else idle < TARGET_IDLE_RSS_MB,
            )
        )
        for name, value, target, ok in rows:
            out.append(
                {
                    "gateway": gw["key"],
                    "check": name,
                    "value": value,
                    "target": target,
                    "result": "n/a" if ok is None else ("PASS" if ok else "FAIL"),
                }
            )
    return out


NA: Final = "-"


def na_row(first: str, cells: int) -> str:
    return f"| {first} | " + " | ".join([NA] * cells) + " |"


def f3(v: Any) -> str:
    return f"{v:.3f}" if isinstance(v, (int, float)) else NA


def fdelta(v: float | None) -> str:
    return f"{v:+.3f}" if v is not None else NA


def render_markdown(r: dict[str, Any]) -> str:
    m = r["machine"]
    pin = m["pinning"]
    lines: list[str] = [
        f"## OmniRelay overhead benchmark ({r['profile']}) — {r['started_utc']}",
        "",
        f"- machine: {m['nproc']} CPUs, {m['cpu_model']}, Python {m['python']}, {m['platform']}",
        (
            "- pinning: gateway on CPU {g}; fake upstream + wrk + load generators on CPU {l}".format(
                g=pin["gateway_cpu"], l=pin["upstream_and_load_cpu"]
            )
            if pin["enabled"]
            else "- pinning: OFF"
        ),
        f"- command: `{r['run_command']}`",
        f"- load average at start {m['loadavg'][0]:.2f}, at end {m.get('loadavg_end', [0.0])[0]:.2f}; "
        f"CPU steal during run {f3((m.get('cpu_during_run') or {}).get('steal_pct'))}% "
        "(other load on the machine makes every number noisier)",
        "",
    ]
    direct = r.get("direct") or {}
    gws: list[dict[str, Any]] = r.get("gateways", [])
    entries = [("direct", direct)] + [(g["key"], g) for g in gws]

    cap = r.get("upstream_capacity")
    if cap:
        lines += [
            "### Fake upstream alone (wrk -t1 -c64 on the gateway core, fake on its own core)",
            "",
            "| req/s | p50 ms | p99 ms | non-2xx | socket errors |",
            "|---:|---:|---:|---:|---:|",
            f"| {cap['rps']:,.0f} | {f3(cap['p50_ms'])} | {f3(cap['p99_ms'])} | {cap['non_2xx']} "
            f"| {cap['socket_errors']} |",
            "",
        ]

    lines += [
        "### a. Throughput — wrk -t1, non-streaming POST /v1/chat/completions",
        "",
        "| conns | target | req/s | p50 ms | p99 ms | non-2xx | socket errors |",
        "|---:|---|---:|---:|---:|---:|---:|",
    ]
    for conns in r["settings"]["connections"]:
        for name, e in entries:
            w = _wrk_at(e, conns)
            if w is None:
                lines.append(na_row(f"{conns} | {name}", 5))
            else:
                lines.append(
                    f"| {conns} | {name} | {w['rps']:,.0f} | {f3(w['p50_ms'])} | {f3(w['p99_ms'])} "
                    f"| {w['non_2xx']} | {w['socket_errors']} |"
                )
    s = r["settings"]
    # b and c: with gateways, direct is measured in rounds interleaved with each gateway ("paired").
    paired: list[tuple[str, dict[str, Any]]] = [("direct", direct)] if direct.get("rate") else []
    for g in gws:
        paired += [(f"direct (paired with {g['key']})", g.get("paired_direct") or {}), (g["key"], g)]
    lines += [
        "",
        f"### b. Fixed rate {s['rate']:g} req/s for {s['rate_duration']:g}s per target "
        f"({s['rounds']} interleaved rounds) — open loop, latency from scheduled send (ms)",
        "",
        "| target | ok / sent | errors | p50 | p90 | p99 | max | client send lag p99 |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, e in paired:
        rt = e.get("rate")
        if not rt:
            lines.append(na_row(name, 7))
            continue
        lat = rt["latency_ms"]
        lines.append(
            f"| {name} | {rt['ok']} / {rt['scheduled']} | {rt['errors']} | {f3(lat['p50'])} "
            f"| {f3(lat['p90'])} | {f3(lat['p99'])} | {f3(lat['max'])} "
            f"| {f3(rt['send_lag_ms']['p99'])} |"
        )
    for g in gws:
        rt, drate = g.get("rate") or {}, (g.get("paired_direct") or {}).get("rate") or {}
        d = [_added(rt.get("latency_ms"), drate.get("latency_ms"), k) for k in ("p50", "p90", "p99", "max")]
        lines.append(f"| **added** {g['key']} minus direct | | | {' | '.join(fdelta(x) for x in d)} | |")

    lines += [
        "",
        f"### c. Streaming (include_usage) — {s['stream_requests']} requests per target "
        f"({s['rounds']} interleaved rounds), concurrency {s['stream_concurrency']}, "
        f"chunk delay {s['chunk_delay_ms']:g} ms (ms)",
        "",
        "| target | ok | errors | headers p50 | first byte p50 | first byte p99 | first data p50 "
        "| first data p99 | total p50 | total p99 |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, e in paired:
        st = e.get("stream")
        if not st:
            lines.append(na_row(name, 9))
            continue
        lines.append(
            f"| {name} | {st['ok']} | {st['errors']} | {f3(st['headers_ms']['p50'])} "
            f"| {f3(st['first_byte_ms']['p50'])} | {f3(st['first_byte_ms']['p99'])} "
            f"| {f3(st['first_data_ms']['p50'])} | {f3(st['first_data_ms']['p99'])} "
            f"| {f3(st['total_ms']['p50'])} | {f3(st['total_ms']['p99'])} |"
        )
    for g in gws:
        st, dstream = g.get("stream") or {}, (g.get("paired_direct") or {}).get("stream") or {}
        cells = [
            _added(st.get("headers_ms"), dstream.get("headers_ms"), "p50"),
            _added(st.get("first_byte_ms"), dstream.get("first_byte_ms"), "p50"),
            _added(st.get("first_byte_ms"), dstream.get("first_byte_ms"), "p99"),
            _added(st.get("first_data_ms"), dstream.get("first_data_ms"), "p50"),
            _added(st.get("first_data_ms"), dstream.get("first_data_ms"), "p99"),
            _added(st.get("total_ms"), dstream.get("total_ms"), "p50"),
            _added(st.get("total_ms"), dstream.get("total_ms"), "p99"),
        ]
        lines.append(f"| **added** {g['key']} minus direct | | | {' | '.join(fdelta(x) for x in cells)} |")

    if gws:
        lines += [
            "",
            "### d. Gateway memory (process tree; MB)",
            "",
            "| gateway | idle RSS | after-load RSS | peak RSS (VmHWM) | after-load PSS | processes |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for g in gws:
            idle, after = g.get("rss_idle") or {}, g.get("rss_after_load") or {}
            lines.append(
                f"| {g['key']} | {f3(idle.get('rss_mb'))} | {f3(after.get('rss_mb'))} "
                f"| {f3(after.get('hwm_mb'))} | {f3(after.get('pss_mb'))} "
                f"| {len(after.get('pids') or idle.get('pids') or [])} |"
            )
        lines += [
            "",
            "### Targets",
            "",
            "| gateway | check | value | target | result |",
            "|---|---|---:|---|---|",
        ]
        for c in r.get("checks", []):
            lines.append(
                f"| {c['gateway']} | {c['check']} | {f3(c['value'])} | {c['target']} | {c['result']} |"
            )

    errs = list(r.get("errors", []))
    sources = [("direct", direct)]
    for g in gws:
        sources += [(g["key"], g), (f"direct (paired with {g['key']})", g.get("paired_direct") or {})]
    for name, e in sources:
        errs += [f"[{name}] {x}" for x in e.get("errors", [])]
    if errs:
        lines += ["", "### Errors", ""]
        lines += ["```", *[x.strip() for x in errs], "```"]
    lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
