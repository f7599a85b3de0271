"""A minimal OTLP/HTTP JSON logs receiver for Claude Code's `claude_code.api_request` events.

The second signal: one event per API request, the session-title call included (the transcript
never shows it). Keys match the transcript's (`req:<request id>`), so both sources merge into one
call. Claude Code's own `cost_usd` is not taken: guard prices the tokens the same way whichever
source saw them first.
"""
from __future__ import annotations

import json
import sys
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from guard.usage import UsageEvent

SOURCE = "otel"
API_REQUEST = "claude_code.api_request"


def _value(v: Any) -> Any:
    if not isinstance(v, dict):
        return None
    for k in ("stringValue", "boolValue", "doubleValue"):
        if k in v:
            return v[k]
    if "intValue" in v:
        try:
            return int(v["intValue"])   # OTLP JSON may encode 64-bit ints as strings
        except (TypeError, ValueError):
            return None
    return None


def attributes(record: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for a in record.get("attributes") or []:
        if isinstance(a, dict) and isinstance(a.get("key"), str):
            out[a["key"]] = _value(a.get("value"))
    return out


def _int(attrs: dict[str, Any], name: str) -> int:
    v = attrs.get(name)
    try:
        return max(0, int(v)) if v is not None and not isinstance(v, bool) else 0
    except (TypeError, ValueError):
        return 0


def events_from_logs(payload: dict[str, Any]) -> list[UsageEvent]:
    """UsageEvents for every api_request log record of an OTLP ExportLogsServiceRequest."""
    out: list[UsageEvent] = []
    for rl in payload.get("resourceLogs") or []:
        for sl in (rl or {}).get("scopeLogs") or []:
            for rec in (sl or {}).get("logRecords") or []:
                if not isinstance(rec, dict):
                    continue
                attrs = attributes(rec)
                body = _value(rec.get("body"))
                if body != API_REQUEST and attrs.get("event.name") != "api_request":
                    continue
                ev = event_from_attributes(attrs)
                if ev is not None:
                    out.append(ev)
    return out


def event_from_attributes(attrs: dict[str, Any]) -> UsageEvent | None:
    req = attrs.get("request_id")
    if isinstance(req, str) and req:
        key = f"req:{req}"
    else:
        # no request id (a gateway): the session and event sequence still name it uniquely
        key = f"otel:{attrs.get('session.id')}:{attrs.get('event.sequence')}"
    write = _int(attrs, "cache_creation_tokens")
    model = attrs.get("model")
    return UsageEvent(
        key=key,
        source=SOURCE,
        model=model if isinstance(model, str) else None,
        input_tokens=_int(attrs, "input_tokens"),
        output_tokens=_int(attrs, "output_tokens"),
        cache_write_tokens=write,
        cache_write_1h_tokens=min(write, _int(attrs, "cache_creation_1h_tokens")),
        cache_read_tokens=_int(attrs, "cache_read_tokens"),
    )


class _QuietServer(ThreadingHTTPServer):
    """socketserver prints a traceback for any error in a handler, across the agent's screen.
    A client gone mid-request (Claude Code exiting, killed at a stop) is normal here; anything
    else becomes one notice."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], handler: Any,
                 on_error: Callable[[str], None] | None = None) -> None:
        super().__init__(address, handler)
        self._on_error = on_error

    def handle_error(self, request: Any, client_address: Any) -> None:
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, TimeoutError)) or self._on_error is None:
            return
        self._on_error(f"OpenTelemetry receiver: {type(exc).__name__}: {exc}")


class OtlpReceiver:
    """Listens on 127.0.0.1 (ephemeral port) in a daemon thread."""

    def __init__(self, on_event: Callable[[UsageEvent], None],
                 on_error: Callable[[str], None] | None = None) -> None:
        self.on_event = on_event
        self.on_error = on_error
        self.received = 0
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def endpoint(self) -> str:
        assert self._httpd is not None
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def bind(self) -> None:
        """Take the port now (the endpoint goes into the agent's environment before it starts);
        requests wait in the listen backlog until start()."""
        if self._httpd is not None:
            return
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                status = 200
                if self.path.split("?", 1)[0].endswith("/v1/logs"):
                    status = receiver._logs(raw, self.headers.get("Content-Type") or "")
                body = b"{}"
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self._httpd = _QuietServer(("127.0.0.1", 0), Handler, on_error=self.on_error)

    def start(self) -> None:
        self.bind()
        assert self._httpd is not None
        if self._thread is None:
            # shutdown() waits for the loop's next look at its flag: 50 ms, not socketserver's 0.5 s,
            # on every run's way out
            self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                            name="guard-otlp", daemon=True)
            self._thread.start()

    def _logs(self, raw: bytes, content_type: str) -> int:
        if "json" not in content_type and raw[:1] not in (b"{", b"["):
            if self.on_error:
                self.on_error("OTLP logs arrived as protobuf; guard reads http/json only")
            return 415
        try:
            payload = json.loads(raw)
        except ValueError:
            return 400
        if not isinstance(payload, dict):
            return 400
        for ev in events_from_logs(payload):
            self.received += 1
            self.on_event(ev)
        return 200

    def stop(self) -> None:
        if self._httpd is not None:
            if self._thread is not None:
                self._httpd.shutdown()
                self._thread.join(timeout=2)
                self._thread = None
            self._httpd.server_close()
            self._httpd = None
