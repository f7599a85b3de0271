"""The metering proxy's callers without a run (a recording sink, the decision core as its gate) and a raw
upstream for latency/throughput figures (a fixed SSE body of any size, as fast as loopback goes).
The scripted LLM fakes live in anthropic_server.py and openai_server.py."""
from __future__ import annotations

import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from guard.governor import RunState, decide
from guard.governor.events import Forward, Hold, Refuse, Settled, Spent
from guard.pricing import Pricer
from guard.proxy import Verdict
from guard.supervisor.desk import RequestDesk
from guard.supervisor.launch_env import request_cost
from guard.usage import Totals, UsageEvent


class RecordingSink:
    """EventSink that keeps everything; `on_emit` lets a gate see spend as it is recorded."""

    def __init__(self, on_emit: Callable[[UsageEvent], None] | None = None) -> None:
        self.events: list[UsageEvent] = []
        self.notices: list[tuple[str, str]] = []
        self.halts: list[tuple[str, str]] = []
        self._on_emit = on_emit
        self._cond = threading.Condition()

    def emit(self, event: UsageEvent) -> None:
        if self._on_emit:
            self._on_emit(event)
        with self._cond:
            self.events.append(event)
            self._cond.notify_all()

    def notice(self, key: str, message: str) -> None:
        self.notices.append((key, message))

    def halt(self, ceiling: str, message: str) -> None:
        self.halts.append((ceiling, message))

    def set_accuracy(self, accuracy: str) -> None:
        pass

    def wait_events(self, count: int, timeout: float = 10.0) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: len(self.events) >= count, timeout)

    def totals(self) -> dict[str, int]:
        keys = ("input_tokens", "output_tokens", "cache_write_tokens", "cache_write_1h_tokens", "cache_read_tokens")
        with self._cond:
            return {k: sum(getattr(e, k) for e in self.events) for k in keys} | {"calls": len(self.events)}


class CeilingGate:
    """A USD task ceiling held by the real decision core and the run's request desk, without a
    process around them: what the run loop does for the proxy, minus the ledger."""

    def __init__(self, limit_usd: float, pricer: Pricer, on_limit: str = "stop") -> None:
        self.limit = limit_usd
        self.pricer = pricer
        self.state = RunState(limits={"usd": limit_usd}, started_at=time.time(), on_limit=on_limit)  # type: ignore[arg-type]
        self.totals = Totals()
        self.accepted = 0
        self.refused = 0
        self.max_reserved = 0.0
        self._lock = threading.RLock()
        self.sink = RecordingSink(on_emit=self._record)
        self.desk = RequestDesk(self.apply, lambda est, step: request_cost(pricer, est, step),
                                lambda usd: None, lambda handle: self.apply(Settled(handle[0])))

    def apply(self, event: Any) -> None:
        with self._lock:
            self.state, actions = decide(self.state, event, time.time())
            for a in actions:
                if isinstance(a, (Forward, Refuse, Hold)):
                    self.accepted += isinstance(a, Forward)
                    self.refused += isinstance(a, Refuse)
                    self.desk.resolve(a)
            self.max_reserved = max(self.max_reserved, self.reserved)

    @property
    def spent(self) -> float:
        return self.totals.cost_usd

    @property
    def reserved(self) -> float:
        return self.state.in_flight().usd

    def _record(self, ev: UsageEvent) -> None:
        with self._lock:
            self.totals.add(ev, self.pricer.price(ev).usd)
            self.apply(Spent(Totals().plus(self.totals)))

    def admit(self, est: Any, tool: str, body: bytes, client_gone: Callable[[], bool]) -> Verdict:
        return self.desk.admit(est, tool, body, client_gone)

    def settle(self, handle: object) -> None:
        self.desk.settle(handle)


class BlobUpstream:
    """Answers every POST with `size` bytes of SSE (`chunk` bytes per event) and every other
    method with a tiny body. Used by bench/proxy_latency.py for TTFB and throughput."""

    def __init__(self, size: int = 10 * 1024 * 1024, chunk: int = 16 * 1024) -> None:
        self.size = size
        self.chunk = chunk
        self._httpd: ThreadingHTTPServer | None = None
        self.port = 0

    def start(self) -> BlobUpstream:
        blob = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

            def do_GET(self) -> None:  # noqa: N802
                body = b'{"ok":true}'
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:  # noqa: N802
                n = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(n)
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Transfer-Encoding", "chunked")
                self.send_header("request-id", f"req_blob_{time.monotonic_ns()}")
                self.end_headers()
                payload = b"event: ping\ndata: " + b"x" * (blob.chunk - 20) + b"\n\n"
                sent = 0
                while sent < blob.size:
                    self.wfile.write(b"%x\r\n%b\r\n" % (len(payload), payload))
                    sent += len(payload)
                self.wfile.write(b"0\r\n\r\n")

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        threading.Thread(target=self._httpd.serve_forever, daemon=True, name="blob-upstream").start()
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> BlobUpstream:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
