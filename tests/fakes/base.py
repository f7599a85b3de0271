"""What every fake LLM server shares: a ThreadingHTTPServer on 127.0.0.1 (ephemeral port) in a
daemon thread, the requests it got and the responses it served, and waits on them."""
from __future__ import annotations

import itertools
import secrets
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self


class FakeServer:
    name = "fake-llm"

    def __init__(self, on_served: Callable[[Any], None] | None = None) -> None:
        self.on_served = on_served
        self.requests: list[Any] = []
        self.served: list[Any] = []
        self.token = secrets.token_hex(3)
        self._counter = itertools.count(1)
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    def handler_base(self) -> type[BaseHTTPRequestHandler]:
        raise NotImplementedError

    def start(self) -> Self:
        fake = self

        class Handler(self.handler_base()):  # type: ignore[misc]
            server_fake = fake

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        # a short poll interval: stop() returns at once (tests start many servers)
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=self.name, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def wait_until(self, predicate: Callable[[], bool], timeout: float) -> bool:
        """Wait (under the lock, woken by every request and response) until `predicate` holds."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate():
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
        return True

    def _finish(self, served: Any, ok: bool) -> None:
        with self._cond:
            served.finished_at = time.time()
            served.completed = ok
            self._cond.notify_all()
        if ok and self.on_served:
            self.on_served(served)
