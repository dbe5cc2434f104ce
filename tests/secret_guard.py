"""No secret in any log line: every record the gateway logs during the test run is checked.

`SecretGuard` is a logging handler installed on the root logger for the whole session (see
`tests/conftest.py`). It formats each record from the gateway's own loggers and the libraries it
runs on (tracebacks included) and looks for secrets: the fixed test keys (master, upstream and
vendor keys) and anything shaped like a gateway key, a master key or a redemption code. Log lines of
`omnirelay serve` child processes are fed in through `check_text`. At the end of the session a leak
fails the run, naming the logger and the line (with the secret masked).

Client-side loggers (httpx, the SDKs) are not the gateway's and are not checked: the test clients
log their own request URLs, which may carry a Gemini `?key=`.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable

GATEWAY_LOGGERS = ("omnirelay", "uvicorn", "starlette", "aiohttp", "sqlalchemy", "alembic", "asyncio")

SECRET_SHAPES = (
    re.compile(r"sk-or-master-[A-Za-z0-9_-]{43}"),  # generated master keys
    re.compile(r"sk-or-[A-Za-z0-9_-]{43}"),  # gateway keys
    re.compile(r"rc-[A-Za-z0-9_-]{24}"),  # redemption codes
    re.compile(r"sk-(?:ant-)?upstream-[A-Za-z0-9_-]{6,}"),  # the tests' provider keys
    re.compile(r"gemini-upstream-key-[A-Za-z0-9_-]+"),
)

# A `serve` process's log lines look like "2026-11-25 11:00:00,123 INFO omnirelay: ...".
LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ [A-Z]+ \S+: ")


def _masked(secret: str) -> str:
    return secret[:8] + "…" if len(secret) > 12 else "***"


class SecretGuard(logging.Handler):
    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__(level=logging.DEBUG)
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        self.secrets = {s for s in secrets if s}
        self.leaks: list[str] = []
        self.lines = 0

    def add_secret(self, secret: str) -> None:
        self.secrets.add(secret)

    def emit(self, record: logging.LogRecord) -> None:
        if not record.name.startswith(GATEWAY_LOGGERS):
            return
        try:
            text = self.format(record)
        except Exception:  # a record that cannot be formatted is logged nowhere either
            return
        self.check_text(record.name, text)

    def check_text(self, source: str, text: str) -> None:
        """Check one log line (or a formatted record with its traceback)."""
        self.lines += 1
        found = [s for s in self.secrets if s in text]
        found += [m.group(0) for shape in SECRET_SHAPES for m in shape.finditer(text)]
        for secret in found:
            line = text.replace(secret, _masked(secret))
            self.leaks.append(f"{source}: {_masked(secret)} in: {line[:300]}")

    def check_process_output(self, source: str, output: str) -> None:
        """The log lines of a `serve` process (its banner, which shows a new master key once by
        design, is not a log line)."""
        for line in output.splitlines():
            if LOG_LINE.match(line):
                self.check_text(source, line)
        # Tracebacks follow a log line; check them whole too.
        if "Traceback (most recent call last)" in output:
            start = output.index("Traceback (most recent call last)")
            self.check_text(source, output[start:])


GUARD = SecretGuard()
