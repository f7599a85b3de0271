"""The metering reverse proxy: stdlib ThreadingHTTPServer in front, pooled http.client behind.

One thread per client connection. A metered request (Anthropic Messages, OpenAI Chat/Completions/
Responses/Embeddings) is estimated and reserved against the budget before it leaves, streamed back
chunk by chunk while a copy is parsed for usage, then emitted as one UsageEvent and released.
Everything else (HEAD probes, count_tokens, model lists) passes through unmetered.

Never logged: paths (they carry the secret), headers (credentials), bodies (prompts)."""
from __future__ import annotations

import base64
import hmac
import http.client
import logging
import os
import select
import shutil
import socket
import socketserver
import ssl
import tempfile
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from guard.errors import UsageError
from guard.proxy import anthropic_wire, openai_wire
from guard.proxy.env import PROVIDERS, TOOLS, upstream_url
from guard.proxy.cache_predictor import CachePredictor, Seen
from guard.proxy.gate import BudgetGate
from guard.proxy.http1 import Response, parse_headers
from guard.proxy.steps import is_step
from guard.proxy.wire import (
    Dechunker,
    Estimate,
    SideDecoder,
    WireUsage,
    load_json,
    readable_accept_encoding,
    with_output_allowance,
)
from guard.usage import UsageEvent

log = logging.getLogger("guard.proxy")

CHUNK = 64 * 1024
RAW_CHUNK = 64 * 1024
MAX_JSON_COPY = 64 * 1024 * 1024     # non-streaming bodies larger than this are not parsed
UPSTREAM_TIMEOUT = 600.0             # the SDKs' own default: a long thinking pause is normal

# RFC 9110 hop-by-hop headers, plus the ones the proxy recomputes.
HOP_BY_HOP = frozenset({
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "proxy-connection",
    "te", "trailer", "transfer-encoding", "upgrade", "host", "content-length", "expect",
})

# What each client treats as a final answer (not retried):
# - Claude Code stops after one 402 (FACTS.md); it retries 400 six times and 429/5xx for minutes.
# - aider/litellm: 400 -> BadRequestError, which aider does not retry; 402/403 become APIError,
#   which aider retries for a minute.
# - the anthropic/openai SDKs retry only 408/409/429/5xx: 402 is final.
# - Codex 0.171 retries a 402 five times (about 13 s), and 403/409/422 too, whatever x-should-retry says;
#   a 400 ends its turn at once.
REFUSAL_STATUS = {"claude": 402, "aider": 400, "codex": 400, "run": 402}


@dataclass(frozen=True)
class Upstream:
    scheme: str
    host: str
    port: int
    base_path: str        # without trailing slash

    @classmethod
    def parse(cls, url: str) -> Upstream:
        u = urlsplit(url)
        if u.scheme not in ("http", "https") or not u.hostname:
            raise ValueError(f"not an http(s) URL: {url!r}")
        port = u.port or (443 if u.scheme == "https" else 80)
        return cls(u.scheme, u.hostname, port, u.path.rstrip("/"))

    @property
    def host_header(self) -> str:
        default = 443 if self.scheme == "https" else 80
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == default else f"{host}:{self.port}"


@dataclass(frozen=True)
class Route:
    tool: str
    provider: str
    path: str             # path + query to append to the upstream base


class _Pool:
    """Keep-alive connections per upstream: a TLS handshake per request would cost more than
    the whole latency budget."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self._env = env
        self._idle: dict[Upstream, list[http.client.HTTPConnection]] = {}
        self._lock = threading.Lock()
        self._ssl: ssl.SSLContext | None = None
        self._closed = False
        self._live: set[http.client.HTTPConnection] = set()

    def get(self, up: Upstream) -> tuple[http.client.HTTPConnection, bool]:
        with self._lock:
            idle = self._idle.get(up)
            if idle:
                conn = idle.pop()
                self._live.add(conn)
                return conn, True
        conn = self._new(up)
        with self._lock:
            self._live.add(conn)
        return conn, False

    def put(self, up: Upstream, conn: http.client.HTTPConnection) -> None:
        with self._lock:
            self._live.discard(conn)
            if not self._closed:
                self._idle.setdefault(up, []).append(conn)
                return
        conn.close()

    def discard(self, conn: http.client.HTTPConnection) -> None:
        with self._lock:
            self._live.discard(conn)
        conn.close()

    def close_all(self) -> None:
        with self._lock:
            self._closed = True
            conns = [c for cs in self._idle.values() for c in cs] + list(self._live)
            self._idle.clear()
        for c in conns:
            _shutdown(c)

    def _new(self, up: Upstream) -> http.client.HTTPConnection:
        proxy = _env_proxy(self._env, up)
        host, port = (proxy[0], proxy[1]) if proxy else (up.host, up.port)
        conn: http.client.HTTPConnection
        if up.scheme == "https":
            if self._ssl is None:
                self._ssl = ssl.create_default_context()
            conn = http.client.HTTPSConnection(host, port, timeout=UPSTREAM_TIMEOUT, context=self._ssl)
        else:
            conn = http.client.HTTPConnection(host, port, timeout=UPSTREAM_TIMEOUT)
        if proxy:
            conn.set_tunnel(up.host, up.port, headers=proxy[2])
        conn.response_class = Response
        return conn


def _shutdown(conn: http.client.HTTPConnection) -> None:
    sock = conn.sock
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
    conn.close()


def _env_proxy(env: Mapping[str, str], up: Upstream) -> tuple[str, int, dict[str, str]] | None:
    """HTTPS_PROXY/HTTP_PROXY/NO_PROXY as the SDKs honour them (CONNECT tunnel)."""
    if up.host in ("127.0.0.1", "localhost", "::1"):
        return None
    names = ("https_proxy", "HTTPS_PROXY") if up.scheme == "https" else ("http_proxy", "HTTP_PROXY")
    url = next((env[n] for n in names if env.get(n)), None)
    if not url:
        return None
    no_proxy = env.get("no_proxy") or env.get("NO_PROXY") or ""
    for entry in (e.strip().lower() for e in no_proxy.split(",")):
        if entry == "*" or (entry and (up.host == entry.lstrip(".") or up.host.endswith("." + entry.lstrip(".")))):
            return None
    p = urlsplit(url if "://" in url else f"http://{url}")
    if not p.hostname:
        return None
    headers = {}
    if p.username:
        cred = f"{unquote(p.username)}:{unquote(p.password or '')}".encode()
        headers["Proxy-Authorization"] = "Basic " + base64.b64encode(cred).decode()
    return p.hostname, p.port or 80, headers


FLUSH_AFTER = 0.004   # a request's usage reaches the run at most this late, in one batch with others'


class _Outbox:
    """Usage events and request ends, in order, handed to the run every few ms in one batch
    rather than one wake-up (and one ledger commit) per request. Nothing decided depends on an
    item before the run has taken it: a request's reservation is held until its end is taken,
    which is after its event (and the ledger write of it, guard.supervisor.mail).

    While requests keep coming the flusher just wakes every FLUSH_AFTER; it is woken (a thread
    hand-over, the dearest step here) only when it had gone idle."""

    def __init__(self, sink: Any, gate: BudgetGate) -> None:
        self._sink = sink
        self._gate = gate
        self._items: list[tuple[bool, Any]] = []     # (is_event, event | gate handle)
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()          # batches go out whole and in order
        self._wake = threading.Event()
        self._idle = True                            # the flusher waits on _wake
        self._closed = False
        self._thread: threading.Thread | None = None   # started by the first item

    def emit(self, ev: UsageEvent) -> None:
        self._put(True, ev)

    def settle(self, handle: object) -> None:
        self._put(False, handle)

    def _put(self, is_event: bool, item: Any) -> None:
        with self._lock:
            self._items.append((is_event, item))
            closed, wake = self._closed, self._idle
            self._idle = False
            if self._thread is None and not closed:
                self._thread = threading.Thread(target=self._run, name="guard-proxy-outbox", daemon=True)
                self._thread.start()
        if closed:
            self.flush()
        elif wake:
            self._wake.set()

    def _run(self) -> None:
        while True:
            self._wake.wait()
            if self._closed:
                return
            time.sleep(FLUSH_AFTER)   # let the batch grow
            with self._lock:
                if not self._items:
                    self._idle = True
                    self._wake.clear()
                    continue
            self.flush()

    def flush(self) -> None:
        with self._flush_lock:
            with self._lock:
                items, self._items = self._items, []
            events: list[UsageEvent] = []
            for is_event, item in items:
                if is_event:
                    events.append(item)
                    continue
                self._post(events)
                events = []
                try:
                    self._gate.settle(item)
                except Exception:
                    log.exception("guard proxy: could not end a request's reservation")
            self._post(events)

    def _post(self, events: list[UsageEvent]) -> None:
        if not events:
            return
        many = getattr(self._sink, "emit_many", None)
        if many is not None:
            many(events)
        else:
            for ev in events:
                self._sink.emit(ev)

    def close(self) -> None:
        """Everything still here goes out now; later items go out at once."""
        with self._lock:
            self._closed = True
            thread = self._thread
        self._wake.set()
        if thread is not None:
            thread.join(1.0)
        self.flush()


class ProxyCore:
    """Routing, budget and usage: everything but the socket plumbing of one request."""

    def __init__(self, sink: Any, gate: BudgetGate, pricer: Any, env: Mapping[str, str],
                 secret: str, default_tool: str = "run") -> None:
        self.sink = sink
        self.gate = gate
        self.pricer = pricer
        self.env = dict(env)
        self.secret = secret
        self.default_tool = default_tool
        self.pool = _Pool(self.env)
        self.predictor = CachePredictor()
        self.outbox = _Outbox(sink, gate)
        self._upstreams: dict[tuple[str, str], Upstream] = {}
        self._active = 0
        self._cond = threading.Condition()

    def set_upstream(self, tool: str, provider: str, url: str) -> None:
        self._upstreams[(tool, provider)] = Upstream.parse(url)

    def upstream(self, tool: str, provider: str) -> Upstream:
        key = (tool, provider)
        up = self._upstreams.get(key)
        if up is None:
            up = Upstream.parse(upstream_url(tool, provider, self.env))
            self._upstreams[key] = up
        return up

    def route(self, raw_path: str) -> Route | None:
        """None when the secret is missing or wrong."""
        prefix = "/" + self.secret
        if not raw_path.startswith(prefix):
            return None
        given = raw_path[1:len(prefix)]
        if not hmac.compare_digest(given, self.secret):
            return None
        rest = raw_path[len(prefix):]
        if rest and rest[0] not in "/?":
            return None
        path, _, query = rest.partition("?")
        segs = path.split("/")   # ["", tool?, provider?, ...]
        tool = self.default_tool
        i = 1
        if len(segs) > i and segs[i] in TOOLS:
            tool = segs[i]
            i += 1
        if len(segs) > i and segs[i] in PROVIDERS:
            provider = segs[i]
            i += 1
        else:
            # No provider segment: guess from the API path itself.
            provider = "anthropic" if "/v1/messages" in path or path.endswith("/v1/complete") else "openai"
        up_path = "/" + "/".join(segs[i:])
        return Route(tool, provider, up_path + ("?" + query if query else ""))

    # -- budget -------------------------------------------------------------------------------

    def lowered(self, route: Route, max_output: int) -> None:
        """Each lowered request is told to the run (recorded, shown in `guard show`)."""
        self.sink.note(f"lowered:{uuid.uuid4().hex[:8]}",
                         f"a {route.tool} request was sent with its output allowance lowered to "
                         f"{max_output} tokens, so that its worst case fits the ceilings")

    def settle(self, route: Route, est: Estimate, wu: WireUsage | None, status: int,
               request_id: str | None, complete: bool, step: bool = False, seen: Seen | None = None) -> None:
        """Emit the request's usage (if it has any). Called before the reservation is released.

        The provider's own count wins. Where it is missing (no usage sent, the stream cut, the
        client gone), the event is estimated: the input from the request, the output from the
        text and tool input that came back, never above the request's max_tokens; and flagged
        `estimated`, which makes the run's accuracy `estimated`."""
        if wu is None:
            return
        ok = 200 <= status < 300
        if not wu.seen and not ok:
            return   # an error without usage: nothing billed that we know of
        has_input = "input_tokens" in wu.fields
        has_output = "output_tokens" in wu.fields and not wu.partial
        estimated = not (has_input and has_output)
        input_tokens = wu.input_tokens if has_input else est.input_tokens
        output_tokens = wu.output_tokens
        if not has_output:
            output_tokens = min(max(wu.output_tokens, wu.output_estimate), est.max_output_tokens)
        if wu.key:
            key = wu.key
        elif request_id:
            key = f"req:{request_id}"
        elif wu.message_id:
            key = f"msg:{wu.message_id}"
        else:
            key = f"req:guard-{uuid.uuid4().hex}"
        ev = UsageEvent(
            key=key,
            source="proxy",
            model=wu.model or est.model,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            cache_write_tokens=wu.cache_write_tokens,
            cache_write_1h_tokens=min(wu.cache_write_1h_tokens, wu.cache_write_tokens),
            cache_read_tokens=wu.cache_read_tokens,
            steps=1 if step else 0,   # guard.proxy.steps: the same rule admission counted it by
            estimated=estimated,
            interrupted=not complete,
        )
        self.outbox.emit(ev)
        if seen is not None:
            self.predictor.observe_usage(seen, ev, time.time())

    # -- in-flight tracking (stop waits for the last events) ------------------------------------

    def enter(self) -> None:
        with self._cond:
            self._active += 1

    def leave(self) -> None:
        with self._cond:
            self._active -= 1
            self._cond.notify_all()

    def wait_idle(self, timeout: float) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: self._active == 0, timeout)


MAX_BODY = 32 << 20        # a larger request body is refused with 413, unread
HEADER_TIMEOUT = 10.0      # a new connection must send complete request headers within this
IDLE_TIMEOUT = 60.0        # a keep-alive connection may wait this long for its next request
REAP_INTERVAL = 0.5


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = False
    request_queue_size = 128     # agents open bursts of connections (sub-agents, parallel tools)
    core: ProxyCore

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self._deadlines: dict[_Handler, float] = {}
        self._conn_lock = threading.Lock()
        self._reaper: threading.Thread | None = None
        self._closing = threading.Event()

    def server_bind(self) -> None:
        # HTTPServer's own looks up the host's FQDN (a DNS round trip, ~70 ms here) for a name
        # the proxy never uses.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # socketserver prints a traceback to stderr, i.e. into the agent's terminal; a client
        # resetting a keep-alive connection is normal, anything else goes to the log only.
        log.debug("guard proxy: connection error", exc_info=True)

    # -- connection deadlines: slow or idle clients never pin a thread for long ---------------

    def wait_for_request(self, h: _Handler, seconds: float) -> None:
        """`h` waits for request headers: drop it if they are not complete in `seconds`."""
        with self._conn_lock:
            self._deadlines[h] = time.monotonic() + seconds
            if self._reaper is None:
                self._reaper = threading.Thread(target=self._reap, name="guard-proxy-reaper", daemon=True)
                self._reaper.start()

    def busy(self, h: _Handler) -> None:
        """`h` is serving a request (forwarding, streaming, or held): no deadline applies."""
        with self._conn_lock:
            self._deadlines.pop(h, None)

    def _reap(self) -> None:
        while not self._closing.wait(REAP_INTERVAL):
            now = time.monotonic()
            with self._conn_lock:
                late = [h for h, t in self._deadlines.items() if t <= now]
                for h in late:
                    del self._deadlines[h]
            for h in late:
                h.drop()

    def server_close(self) -> None:
        self._closing.set()
        super().server_close()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass   # the request line carries the secret; nothing about requests is logged

    def setup(self) -> None:
        super().setup()
        self._responded = False
        self.server.wait_for_request(self, HEADER_TIMEOUT)

    def finish(self) -> None:
        self.server.busy(self)
        super().finish()

    def drop(self) -> None:
        """Called by the reaper: end a connection that sent no complete request in time."""
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def parse_request(self) -> bool:
        """http.server's parse_request for HTTP/1.0 and 1.1 (all the proxy serves), with the
        header block read by guard.proxy.http1 instead of the email package."""
        self.command = None  # type: ignore[assignment]
        self.request_version = self.default_request_version
        self.close_connection = True
        self.requestline = str(self.raw_requestline, "iso-8859-1").rstrip("\r\n")
        words = self.requestline.split()
        if not words:
            return False
        if len(words) != 3 or words[2] not in ("HTTP/1.1", "HTTP/1.0"):
            return bool(super().parse_request())   # odd versions, HTTP/0.9: the stdlib's answers
        self.command, self.path, self.request_version = words
        self.close_connection = self.request_version != "HTTP/1.1"
        if self.path.startswith("//"):
            self.path = "/" + self.path.lstrip("/")   # gh-87389, as http.server does
        try:
            self.headers = parse_headers(self.rfile, _class=self.MessageClass)
        except http.client.LineTooLong as err:
            self.send_error(431, "Line too long", str(err))
            return False
        except http.client.HTTPException as err:
            self.send_error(431, "Too many headers", str(err))
            return False
        conntype = (self.headers.get("Connection") or "").lower()
        if conntype == "close":
            self.close_connection = True
        elif conntype == "keep-alive":
            self.close_connection = False
        expect = (self.headers.get("Expect") or "").lower()
        if expect == "100-continue" and self.request_version == "HTTP/1.1":
            return bool(self.handle_expect_100())
        return True

    def send_response_only(self, code: int, message: str | None = None) -> None:
        self._responded = True
        super().send_response_only(code, message)

    def do_GET(self) -> None:  # noqa: N802
        self.server.busy(self)
        self._responded = False
        try:
            self._handle()
        finally:
            if not self.close_connection:
                self.server.wait_for_request(self, IDLE_TIMEOUT)

    do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = do_GET

    # -- one request --------------------------------------------------------------------------

    def _handle(self) -> None:
        core = self.server.core
        route = core.route(self.path)
        if route is None:
            # never read what an unauthenticated client sends: answer and hang up
            self.close_connection = True
            msg = ("guard metering proxy: this URL needs the per-run secret guard put in the agent's "
                   "base URL; request refused")
            self._reply(403, _error_body("openai" if "/v1/messages" not in self.path else "anthropic",
                                         "permission_error", msg))
            return
        if (self.headers.get("Upgrade") or "").strip().lower() == "websocket":
            # Codex opens a WebSocket on GET /v1/responses first: a 426 makes it fall back to HTTP
            # at once (a 404 costs it 7 attempts over about 6 s; a 400 ends its turn). Its body, if
            # any, is never read: the connection is closed after the answer.
            self.close_connection = True
            self._reply(426, _error_body(route.provider, "invalid_request_error",
                                         "guard metering proxy: WebSockets are not proxied; use HTTP"))
            return
        try:
            body = self._read_body()
        except _TooLarge as e:
            self.close_connection = True
            self._reply(413, _error_body(route.provider, "request_too_large", f"guard proxy: {e}"))
            return
        except ValueError as e:
            self.close_connection = True
            self._reply(400, _error_body(route.provider, "invalid_request_error", f"guard proxy: {e}"))
            return
        core.enter()
        try:
            _Exchange(self, core, route, body).run()
        except Exception as e:  # noqa: BLE001 - any request guard cannot handle gets an answer
            log.debug("guard proxy: request failed", exc_info=True)
            self.close_connection = True
            if not self._responded:
                self._reply(400, _error_body(route.provider, "invalid_request_error",
                                             f"guard proxy: malformed request ({type(e).__name__})"))
        finally:
            core.leave()

    def _read_body(self) -> bytes:
        te = (self.headers.get("Transfer-Encoding") or "").lower()
        if "chunked" in te:
            parts: list[bytes] = []
            total = 0
            while True:
                line = self.rfile.readline(65537)
                try:
                    size = int(line.split(b";", 1)[0].strip(), 16)
                except ValueError:
                    raise ValueError("malformed chunked request body") from None
                if size < 0:
                    raise ValueError("malformed chunked request body")
                if size == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(parts)
                total += size
                if total > MAX_BODY:
                    raise _TooLarge(f"request body above {MAX_BODY >> 20} MiB")
                parts.append(self.rfile.read(size))
                self.rfile.readline(3)
        length = self.headers.get("Content-Length")
        if length is None:
            return b""
        try:
            n = int(length)
        except ValueError:
            raise ValueError("bad Content-Length") from None
        if n < 0:
            raise ValueError("bad Content-Length")
        if n > MAX_BODY:
            raise _TooLarge(f"request body of {n} bytes is above {MAX_BODY >> 20} MiB")
        return self.rfile.read(n) if n > 0 else b""

    def _reply(self, status: int, body: bytes, extra: dict[str, str] | None = None) -> None:
        try:
            self.send_response_only(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            for k, v in (extra or {}).items():
                self.send_header(k, v)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)
        except OSError:
            self.close_connection = True


class _TooLarge(ValueError):
    """A request body above MAX_BODY."""


def _error_body(provider: str, kind: str, message: str) -> bytes:
    if provider == "anthropic":
        return anthropic_wire.error_body(kind, message)
    return openai_wire.error_body(kind, message, "guard_" + kind)


class _Exchange:
    """Forward one request and stream its response back, metering it on the way."""

    def __init__(self, h: _Handler, core: ProxyCore, route: Route, body: bytes) -> None:
        self.h = h
        self.core = core
        self.route = route
        self.body = body
        self.kind: str | None = None           # "messages" | openai_wire.Kind | None (unmetered)
        self.estimate: Estimate | None = None
        self.seen: Seen | None = None
        self.strip_usage = False

    def run(self) -> None:
        h, route = self.h, self.route
        method = h.command
        if route.provider == "anthropic":
            self.kind = "messages" if anthropic_wire.is_metered(method, route.path) else None
        else:
            self.kind = openai_wire.metered_kind(method, route.path)
        headers = [(k, v) for k, v in h.headers.items() if k.lower() not in HOP_BY_HOP]
        handle: object = None
        if self.kind is not None:
            obj = load_json(self.body)
            if self.kind == "messages":
                self.estimate = anthropic_wire.estimate(self.body, obj)
            else:
                self.estimate = openai_wire.estimate(self.body, obj, self.kind)  # type: ignore[arg-type]
            self.estimate, self.seen = self.core.predictor.refine(self.estimate, obj, len(self.body), time.time())
            if self.kind != "messages":
                rewritten = openai_wire.ask_stream_usage(obj, self.kind)  # type: ignore[arg-type]
                if rewritten is not None:
                    self.body = rewritten
                    self.strip_usage = True
            verdict = self.core.gate.admit(self.estimate, self.route.tool, self.body, self._client_gone)
            if verdict.dropped:
                h.close_connection = True
                return
            if not verdict.forward:
                self._refuse(verdict.message)
                return
            handle = verdict.handle
            if verdict.max_output is not None:
                # the whole worst case did not fit: the same request with a smaller output allowance does
                self.body = with_output_allowance(obj, self.kind, verdict.max_output, verdict.thinking_budget)
                self.estimate = replace(self.estimate, max_output_tokens=verdict.max_output)
                self.core.lowered(self.route, verdict.max_output)
            headers = self._readable_encoding(headers)
        try:
            self._forward(method, headers)
        finally:
            if handle is not None:
                self.core.outbox.settle(handle)   # after its event: the same batch or a later one

    def _client_gone(self) -> bool:
        """A held request's client may give up (its own timeouts run on while the agent is frozen):
        a readable socket with nothing to read is a hang-up."""
        sock = self.h.connection
        try:
            ready, _, _ = select.select([sock], [], [], 0)
            return bool(ready) and sock.recv(1, socket.MSG_PEEK) == b""
        except OSError:
            return True

    def _readable_encoding(self, headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
        out = []
        for k, v in headers:
            if k.lower() == "accept-encoding":
                # When guard rewrites the stream it must read it uncompressed.
                v = "identity" if self.strip_usage else readable_accept_encoding(v)
            out.append((k, v))
        return out

    def _refuse(self, reason: str) -> None:
        status = REFUSAL_STATUS.get(self.route.tool, 402)
        message = _no_retry_words(f"guard: {reason}. The request was not sent (guard metering proxy).")
        if self.route.provider == "anthropic":
            kind = "billing_error" if status == 402 else "invalid_request_error"
            body = anthropic_wire.error_body(kind, message)
        else:
            body = openai_wire.error_body("budget_exceeded", message, "guard_budget_exceeded")
        self.h._reply(status, body, {"x-should-retry": "false"})

    # -- forwarding ---------------------------------------------------------------------------

    def _send_upstream(self, method: str, headers: list[tuple[str, str]]
                       ) -> tuple[Upstream, http.client.HTTPConnection, http.client.HTTPResponse]:
        up = self.core.upstream(self.route.tool, self.route.provider)
        path = up.base_path + self.route.path
        for attempt in range(2):
            conn, reused = self.core.pool.get(up)
            try:
                conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
                conn.putheader("Host", up.host_header)
                for k, v in headers:
                    conn.putheader(k, v)
                if self.body or method in ("POST", "PUT", "PATCH"):
                    conn.putheader("Content-Length", str(len(self.body)))
                conn.endheaders(self.body or None)
                return up, conn, conn.getresponse()
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError,
                    http.client.BadStatusLine) as e:
                self.core.pool.discard(conn)
                # A pooled keep-alive connection the upstream closed while idle: retry once on a
                # fresh one (the request never reached a live server).
                if not reused or attempt:
                    raise e
            except BaseException:
                self.core.pool.discard(conn)
                raise
        raise AssertionError("unreachable")

    def _forward(self, method: str, headers: list[tuple[str, str]]) -> None:
        h = self.h
        try:
            up, conn, resp = self._send_upstream(method, headers)
        except ValueError as e:   # the user's base URL is malformed
            h._reply(502, _error_body(self.route.provider, "api_error", f"guard proxy: upstream base URL: {e}"))
            return
        except (OSError, http.client.HTTPException) as e:
            h.close_connection = True
            h._reply(502, _error_body(self.route.provider, "api_error",
                                      f"guard proxy: upstream unreachable ({type(e).__name__})"))
            return
        status = resp.status
        ctype = (resp.getheader("Content-Type") or "").lower()
        is_sse = "text/event-stream" in ctype
        request_id = resp.getheader("request-id") or resp.getheader("x-request-id")
        no_body = method == "HEAD" or status in (204, 304) or 100 <= status < 200
        decoder = SideDecoder(resp.getheader("Content-Encoding"))
        # Rewriting needs the plain stream (guard asked for identity; a server may ignore that).
        rewrite = self.strip_usage and is_sse and status == 200 and decoder.identity
        length = resp.getheader("Content-Length")
        raw = (not no_body and not rewrite and bool(resp.chunked) and h.request_version == "HTTP/1.1")
        chunked_out = False
        try:
            h.send_response_only(status, resp.reason)
            for k, v in resp.getheaders():
                lk = k.lower()
                if lk in HOP_BY_HOP and not (lk == "content-length" and not rewrite):
                    continue
                h.send_header(k, v)
            if not no_body and (rewrite or length is None):
                if h.request_version == "HTTP/1.1":
                    h.send_header("Transfer-Encoding", "chunked")
                    chunked_out = True
                else:
                    h.close_connection = True
            if resp.will_close and length is None and not chunked_out:
                h.close_connection = True
            h.end_headers()
            client_ok = True
        except OSError:
            client_ok = False
            h.close_connection = True

        reader: Any = None
        json_copy: list[bytes] | None = None
        if self.kind is not None and not no_body:
            if is_sse:
                reader = anthropic_wire.StreamReader() if self.kind == "messages" else \
                    openai_wire.StreamReader(self.kind, strip_usage_chunk=rewrite)  # type: ignore[arg-type]
            else:
                json_copy = []
        copied = 0
        complete = False
        # Verbatim mode: the upstream's chunked bytes go to the client as they are, read in large
        # blocks (http.client's decoder hands out one chunk per call, <= 8 KB); a Dechunker
        # recovers the payload for parsing.
        dechunk = Dechunker() if raw else None
        try:
            while not no_body:
                if dechunk is not None:
                    data = resp.fp.read1(RAW_CHUNK) if resp.fp is not None else b""
                    if not data:
                        break                  # the upstream closed before the last chunk
                    payload = dechunk.feed(data)
                    if dechunk.broken:
                        break
                else:
                    data = resp.read1(CHUNK)
                    if not data:
                        complete = True
                        break
                    payload = data
                if rewrite:
                    out = reader.filter(payload)
                else:
                    out = data
                    if reader is not None:
                        reader.feed(decoder.decode(payload))
                    elif json_copy is not None and copied < MAX_JSON_COPY:
                        json_copy.append(decoder.decode(payload))
                        copied += len(payload)
                if client_ok and out:
                    client_ok = self._write(out, chunked_out and not raw)
                if not client_ok and is_sse:
                    # The client went away mid-stream: stop the generation (the provider bills
                    # only what it produced) and record the input side plus an output estimate.
                    break
                if dechunk is not None and dechunk.done:
                    complete = True
                    break
            if no_body:
                complete = True
            if rewrite and complete:
                tail = reader.flush()
                if client_ok and tail:
                    client_ok = self._write(tail, chunked_out)
            if client_ok and chunked_out and not raw:
                client_ok = self._write_raw(b"0\r\n\r\n")
        except (OSError, http.client.HTTPException):
            complete = False
        finally:
            if complete and not resp.will_close:
                resp.close()     # marks the response done so the connection can carry the next one
                self.core.pool.put(up, conn)
            else:
                self.core.pool.discard(conn)
            if not client_ok or not complete:
                h.close_connection = True
            self._settle(status, request_id, reader, json_copy, complete)

    def _settle(self, status: int, request_id: str | None, reader: Any,
                json_copy: list[bytes] | None, complete: bool) -> None:
        if self.kind is None or self.estimate is None:
            return
        wu: WireUsage | None = None
        if reader is not None:
            wu = reader.result(complete)
        elif json_copy is not None:
            obj = load_json(b"".join(json_copy))
            wu = anthropic_wire.usage_from_message(obj) if self.kind == "messages" else \
                openai_wire.usage_from_body(obj, self.kind)  # type: ignore[arg-type]
            if not complete or not wu.seen:
                wu.partial = True
        try:
            self.core.settle(self.route, self.estimate, wu, status, request_id, complete,
                             is_step(self.route.tool, self.estimate, self.body), self.seen)
        except Exception:
            log.exception("guard proxy: could not record a request's usage")

    def _write(self, data: bytes, chunked: bool) -> bool:
        if chunked:
            return self._write_raw(b"%x\r\n%b\r\n" % (len(data), data))
        return self._write_raw(data)

    def _write_raw(self, data: bytes) -> bool:
        try:
            self.h.wfile.write(data)
            return True
        except OSError:
            return False


def _no_retry_words(message: str) -> str:
    """litellm turns an error into a retried RateLimitError when its text contains "rate limit"
    or a standalone 429 (e.g. "$0.429"); keep a refusal's wording clear of both."""
    import re

    def pad(m: re.Match[str]) -> str:
        # Same value, no standalone 429: "$0.429" -> "$0.4290", "$429.00" -> "$0429.00".
        before = m.string[m.start() - 1] if m.start() else ""
        return "4290" if before == "." else "0429"

    message = re.sub(r"\b429\b", pad, message)
    return re.sub(r"(?i)rate[\s_\-]*limit", "ceiling", message)


class RunningProxy:
    def __init__(self, core: ProxyCore, server: _Server, thread: threading.Thread) -> None:
        self._core = core
        self._server = server
        self._thread = thread
        host, port = server.server_address[:2]
        self.port: int = int(port)
        self.url: str = f"http://127.0.0.1:{self.port}/{core.secret}"
        self._stopped = False
        self._env_dir: str | None = None

    def client_env(self, tool: str) -> dict[str, str]:
        from guard.proxy.env import client_env

        return client_env(self.url, tool, self._core.env)

    def client_args(self, tool: str, tool_args: list[str]) -> list[str]:
        """Extra arguments for the tool, when its environment alone cannot win. aider: a
        --set-env on the command line makes configargparse ignore AIDER_SET_ENV. The proxy URL
        carries the secret, so it never goes on the command line (every local user can read
        an argv): it goes into an env file of guard's own (0600), named by --env-file, which
        aider loads after every other .env file. codex: its own arguments (-c, --profile, -C) say
        where it would have gone, so they set its upstream; its adapter adds the `-c` that routes
        it here."""
        if tool == "codex":
            from guard.proxy.env import codex_upstream

            url = codex_upstream(self._core.env, tool_args)
            if url is not None:
                self._core.set_upstream("codex", "openai", url)
            return []
        if tool != "aider" or not _args(tool_args, "--set-env"):
            return []
        env = self.client_env(tool)
        ours = ("OPENAI_BASE_URL", "OPENAI_API_BASE", "ANTHROPIC_API_BASE", "ANTHROPIC_BASE_URL")
        for setting in _args(tool_args, "--set-env"):
            name = setting.split("=", 1)[0].strip()
            if name in ours:
                raise UsageError(f"aider: --set-env {name}=... would send aider around guard's metering "
                                 "proxy; set it in the environment or a .env file instead (guard "
                                 "forwards to it)")
        lines = []
        users = _args(tool_args, "--env-file")
        if users:  # ours replaces the user's --env-file: carry what theirs says first
            try:
                lines.append(Path(users[-1]).expanduser().read_text(errors="replace"))
            except OSError:
                pass
        lines += [f"{k}={env[k]}" for k in ours]
        self._env_dir = self._env_dir or tempfile.mkdtemp(prefix="guard-proxy-")
        path = Path(self._env_dir) / "proxy.env"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write("\n".join(lines) + "\n")
        return ["--env-file", str(path)]

    def stop(self, timeout: float = 5.0) -> None:
        """Stop accepting, give in-flight requests `timeout` seconds to end and emit their usage,
        then cut the rest (each still emits what it saw)."""
        if self._stopped:
            return
        self._stopped = True
        if self._env_dir is not None:
            shutil.rmtree(self._env_dir, ignore_errors=True)
        self._server.shutdown()
        self._server.server_close()
        if not self._core.wait_idle(timeout):
            self._core.pool.close_all()
            self._core.wait_idle(2.0)
        self._core.pool.close_all()
        self._core.outbox.close()
        self._thread.join(timeout=1.0)

    def __enter__(self) -> RunningProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_proxy(sink: Any, gate: BudgetGate, pricer: Any, env: Mapping[str, str],
                *, default_tool: str = "run") -> RunningProxy:
    """Start the proxy on 127.0.0.1 (ephemeral port) in a daemon thread."""
    import secrets

    core = ProxyCore(sink, gate, pricer, env, secrets.token_urlsafe(24), default_tool)
    server = _Server(("127.0.0.1", 0), _Handler)
    server.core = core
    # shutdown() waits for the loop's next look at its flag: keep that short on the way out
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              name="guard-proxy", daemon=True)
    thread.start()
    # The first price lookup loads genai-prices' snapshot (hundreds of ms): do it now, not in
    # the agent's first request.
    threading.Thread(target=_warm_pricer, args=(pricer,), name="guard-proxy-warmup", daemon=True).start()
    return RunningProxy(core, server, thread)


def _warm_pricer(pricer: Any) -> None:
    try:
        pricer.worst_case("claude-sonnet-4-5", 1, 1)
    except Exception:
        pass


__all__ = ["RunningProxy", "start_proxy"]


def _args(argv: list[str], name: str) -> list[str]:
    return [argv[i + 1] if a == name else a[len(name) + 1:]
            for i, a in enumerate(argv)
            if (a == name and i + 1 < len(argv)) or a.startswith(name + "=")]
