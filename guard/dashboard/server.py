"""`guard dashboard`: the page, its data and /metrics over the standard library's HTTP server.

The history part (a period's reports, ledger-wide counters) is a snapshot that one background thread
recomputes when the ledger has changed, so a page load or a scrape never waits on a scan; what is
going on now is read at every request (a handful of rows).
"""
from __future__ import annotations

import hmac
import ipaddress
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http import cookies
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from guard.dashboard.data import (MetricTotals, Range, fingerprint, history_view, live_runs, metric_totals, people,
                                  period_budgets)
from guard.dashboard.page import STATIC, render
from guard.errors import UsageError
from guard.ledger.records import iso
from guard.ledger.sql import SqlLedger

COOKIE = "guard_dashboard_token"
STATIC_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8",
                ".md": "text/plain; charset=utf-8"}


def is_loopback(bind: str) -> bool:
    if bind == "localhost":
        return True
    try:
        return ipaddress.ip_address(bind).is_loopback
    except ValueError:
        return False


def check_bind(bind: str, token: str | None) -> None:
    if not is_loopback(bind) and not token:
        raise UsageError(f"--bind {bind}: beyond loopback the dashboard needs a bearer token "
                         "(--token or GUARD_DASHBOARD_TOKEN)")


@dataclass
class Snapshot:
    history: dict[str, Any]
    totals: MetricTotals
    budgets: list[dict[str, Any]]
    fingerprint: tuple[Any, ...]
    computed_at: float
    exposition: bytes = b""   # the ledger's part of /metrics, rendered once per snapshot


class Snapshots:
    """The latest snapshot, and the thread that replaces it when the ledger changes."""

    def __init__(self, ledger: SqlLedger, rng: Range, policy: Any, refresh: float) -> None:
        self.ledger = ledger
        self.rng = rng
        self.policy = policy
        self.refresh = refresh
        self._current: Snapshot | None = None
        self._cost = 0.0                  # seconds the last compute took
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def fingerprint(self) -> tuple[Any, ...]:
        return fingerprint(self.ledger)

    def compute(self) -> Snapshot:
        started = time.monotonic()
        fp = self.fingerprint()
        now = time.time()
        history = history_view(self.ledger, self.rng, now=now)
        budgets = period_budgets(self.ledger, self.policy, people(self.ledger, now - 31 * 86400), now) \
            if self.policy is not None else []
        from guard.dashboard.metrics import ledger_exposition

        totals = metric_totals(self.ledger)
        snap = Snapshot(history, totals, budgets, fp, now, ledger_exposition(totals, budgets))
        self._current = snap
        self._cost = time.monotonic() - started
        return snap

    def current(self) -> Snapshot:
        return self._current or self.compute()

    def start(self) -> None:
        self.compute()
        self._thread = threading.Thread(target=self._loop, name="guard-dashboard-refresh", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        # a busy ledger changes all the time: recompute at most a fifth of the time, so a large
        # ledger's snapshot does not keep a core busy
        while not self._stop.wait(max(self.refresh, 4 * self._cost)):
            try:
                # a new period (midnight, the 1st) changes the view without changing the ledger
                if self.fingerprint() != self.current().fingerprint or \
                        time.time() - self.current().computed_at > 300:
                    self.compute()
            except Exception:  # noqa: BLE001 - keep serving the last snapshot; the next tick retries
                continue

    def stop(self) -> None:
        self._stop.set()


class DashboardServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, addr: tuple[str, int], ledger: SqlLedger, home: Path, snapshots: Snapshots,
                 token: str | None) -> None:
        super().__init__(addr, Handler)
        self.ledger = ledger
        self.home = home
        self.snapshots = snapshots
        self.token = token

    def view(self) -> dict[str, Any]:
        snap = self.snapshots.current()
        return {**snap.history, "live": live_runs(self.ledger, self.home), "generated_at": iso(snap.computed_at),
                "ledger": self.ledger.describe()}

    def metrics(self) -> bytes:
        from guard.dashboard.metrics import live_exposition

        return self.snapshots.current().exposition + live_exposition(live_runs(self.ledger, self.home))


class Handler(BaseHTTPRequestHandler):
    server: DashboardServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        pass  # a dashboard left open must not fill the terminal

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        url = urlsplit(self.path)
        if not self._authorized(url.query):
            return
        routes: dict[str, Callable[[], tuple[str, bytes]]] = {
            "/": lambda: ("text/html; charset=utf-8", render(self.server.view(), inline=False).encode()),
            "/api/view": lambda: ("application/json", json.dumps(self.server.view()).encode()),
            "/api/live": lambda: ("application/json",
                                  json.dumps(live_runs(self.server.ledger, self.server.home)).encode()),
            "/metrics": lambda: ("text/plain; version=0.0.4; charset=utf-8", self.server.metrics()),
            "/healthz": lambda: ("text/plain", b"ok\n"),
        }
        if url.path in routes:
            try:
                ctype, body = routes[url.path]()
            except Exception as e:  # noqa: BLE001 - one failed request, not a dead server
                self._send(500, "text/plain", f"guard: {e}\n".encode())
                return
            self._send(200, ctype, body)
        elif url.path.startswith("/static/") and "/" not in url.path[len("/static/"):]:
            f = STATIC / url.path[len("/static/"):]
            if f.is_file() and f.suffix in STATIC_TYPES:
                self._send(200, STATIC_TYPES[f.suffix], f.read_bytes(), cache=True)
            else:
                self._send(404, "text/plain", b"not found\n")
        else:
            self._send(404, "text/plain", b"not found\n")

    def _authorized(self, query: str) -> bool:
        token = self.server.token
        if not token:
            return True
        given = self.headers.get("Authorization", "")
        candidates = [given.removeprefix("Bearer ").strip()] if given.startswith("Bearer ") else []
        jar = cookies.SimpleCookie(self.headers.get("Cookie", ""))
        if COOKIE in jar:
            candidates.append(jar[COOKIE].value)
        from_query = parse_qs(query).get("token", [])
        candidates.extend(from_query)
        if any(hmac.compare_digest(c.encode(), token.encode()) for c in candidates):
            if from_query:
                # a browser cannot send a bearer header on navigation: the link sets a cookie once
                self.send_response(303)
                self.send_header("Location", urlsplit(self.path).path)
                self.send_header("Set-Cookie", f"{COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return False
            return True
        self._send(401, "text/plain", b"guard: a bearer token is required\n",
                   extra={"WWW-Authenticate": 'Bearer realm="guard"'})
        return False

    def _send(self, code: int, ctype: str, body: bytes, *, cache: bool = False,
              extra: dict[str, str] | None = None) -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "max-age=3600" if cache else "no-store")
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)
