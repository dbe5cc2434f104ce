"""Run an ASGI app under uvicorn in a background thread, for tests."""

from __future__ import annotations

import importlib.util
import socket
import threading
import time
from types import TracebackType
from typing import Any, Self

import uvicorn

__all__ = ["ServerThread"]


def _default_loop() -> str:
    return "uvloop" if importlib.util.find_spec("uvloop") is not None else "asyncio"


def _default_http() -> str:
    return "httptools" if importlib.util.find_spec("httptools") is not None else "h11"


class ServerThread:
    """Serve ``app`` on 127.0.0.1 with an OS-chosen port in a daemon thread.

    Usage::

        with ServerThread(app) as srv:
            httpx.get(srv.base_url + "/v1/models")

    The listening socket is bound in ``__init__`` so ``port``/``base_url`` are known
    before the server starts. Extra keyword arguments are passed to ``uvicorn.Config``.
    """

    def __init__(
        self,
        app: Any,
        *,
        host: str = "127.0.0.1",
        startup_timeout: float = 10.0,
        shutdown_timeout: float = 10.0,
        **config_kwargs: Any,
    ) -> None:
        self.app = app
        self.host = host
        self.startup_timeout = startup_timeout
        self.shutdown_timeout = shutdown_timeout
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((host, 0))
        self.port: int = self._sock.getsockname()[1]
        self.base_url: str = f"http://{host}:{self.port}"
        options: dict[str, Any] = {
            "loop": _default_loop(),
            "http": _default_http(),
            "log_level": "warning",
            "lifespan": "off",
            "access_log": False,
            # Do not let a hung in-flight request (e.g. a slow fake) block shutdown forever.
            "timeout_graceful_shutdown": 2,
        }
        options.update(config_kwargs)
        self.config = uvicorn.Config(app, host=host, port=self.port, **options)
        self.server = uvicorn.Server(self.config)
        self._thread = threading.Thread(target=self._run, name=f"uvicorn-test-{self.port}", daemon=True)
        self._error: BaseException | None = None

    def _run(self) -> None:
        try:
            self.server.run(sockets=[self._sock])
        except BaseException as exc:
            self._error = exc  # reported by start() in the test thread
            raise

    def start(self) -> Self:
        self._thread.start()
        deadline = time.monotonic() + self.startup_timeout
        while not self.server.started:
            if not self._thread.is_alive():
                self._sock.close()
                raise RuntimeError(f"uvicorn test server exited during startup: {self._error!r}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"uvicorn test server did not start within {self.startup_timeout}s")
            time.sleep(0.005)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(self.shutdown_timeout)
        if self._thread.is_alive():
            # Last resort: skip the graceful phase entirely.
            self.server.force_exit = True
            self._thread.join(2.0)
        self._sock.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
