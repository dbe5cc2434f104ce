"""Run `omnirelay serve` as a real process for tests that need one (first run, signals)."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.secret_guard import GUARD


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


PROVIDER_ENV = re.compile(r"^[A-Z_]+_API_KEY$")


class GatewayProcess:
    def __init__(self, data_dir: Path, config: Path | None = None, env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        clean = {
            k: v for k, v in os.environ.items() if not PROVIDER_ENV.match(k) and k != "OMNIRELAY_MASTER_KEY"
        }
        clean.update(env or {})
        cmd = [
            sys.executable,
            "-m",
            "omnirelay",
            "serve",
            "--data-dir",
            str(data_dir),
            "--port",
            str(self.port),
        ]
        if config is not None:
            cmd += ["--config", str(config)]
        self.proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=clean, text=True
        )
        self.output = ""

    def wait_ready(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"gateway exited early:\n{self.proc.stdout.read() if self.proc.stdout else ''}"
                )
            try:
                if httpx.get(self.base_url + "/health", timeout=0.5).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise AssertionError("gateway did not become healthy in time")

    def stop(self, timeout: float = 30.0) -> str:
        if self.proc.poll() is None:
            self.proc.terminate()
        out, _ = self.proc.communicate(timeout=timeout)
        self.output += out or ""
        GUARD.check_process_output("omnirelay serve", self.output)
        return self.output
