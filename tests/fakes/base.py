"""What every fake LLM server shares: a ThreadingHTTPServer on 127.0.0.1 (ephemeral port) in a
daemon thread, the requests it got and the responses it served, and waits on them."""
from __future__ import annotations

import itertools
import json
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

    def handler_base(self) -> type[JsonHandler]:
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


class JsonHandler(BaseHTTPRequestHandler):
    """The HTTP side every fake shares: JSON bodies in, JSON or chunked SSE out, no access log."""

    protocol_version = "HTTP/1.1"
    request_id_header = "x-request-id"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass

    def error_body(self, kind: str, message: str) -> dict[str, Any]:
        raise NotImplementedError

    def read_json(self) -> Any | None:
        """The request's JSON body; None after answering 400 when it is not JSON."""
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            return json.loads(raw or b"{}")
        except ValueError:
            self._json(400, self.error_body("invalid_request_error", "body is not JSON"))
            return None

    def _json(self, status: int, obj: dict[str, Any], request_id: str | None = None) -> None:
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if request_id:
            self.send_header(self.request_id_header, request_id)
        self.end_headers()
        self.wfile.write(data)
        self.wfile.flush()

    def start_sse(self, request_id: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header(self.request_id_header, request_id)
        self.end_headers()

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def end_chunks(self) -> None:
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()
