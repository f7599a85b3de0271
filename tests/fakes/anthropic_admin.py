"""A fake Anthropic Admin API on 127.0.0.1: GET /v1/organizations/analytics/cost.

Serves daily cost rows per actor from a list the test gives, with the real API's shapes (amounts
in cents as strings, `group.actor`, cursor paging through `next_page`/`has_more`), checks the
Admin key, and records each request so a test can assert what the client asked.

    with FakeAdminAPI(key="sk-ant-admin-test", costs=[CostEntry(date(2026, 3, 1), "a@x.io", 12.5)]) as api:
        client = anthropic.Anthropic(api_key=api.key, base_url=api.url)
"""
from __future__ import annotations

import json
import threading
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


@dataclass(frozen=True)
class CostEntry:
    day: date
    email: str | None         # None: usage with no attributable identity
    usd: float
    requests: int = 1


@dataclass
class Seen:
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]


@dataclass
class FakeAdminAPI:
    key: str = "sk-ant-admin01-test"
    costs: list[CostEntry] = field(default_factory=list)
    page_size: int | None = None     # force paging below the client's `limit`
    requests: list[Seen] = field(default_factory=list)

    def __enter__(self) -> FakeAdminAPI:
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a: Any) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802
                parts = urlsplit(self.path)
                q = parse_qs(parts.query)
                api.requests.append(Seen(parts.path, q, {k.lower(): v for k, v in self.headers.items()}))
                auth = self.headers.get("x-api-key") or (self.headers.get("authorization") or "").removeprefix("Bearer ")
                if auth != api.key:
                    return self._send(401, {"type": "error", "error": {"type": "authentication_error",
                                                                       "message": "invalid x-api-key"}})
                if parts.path != "/v1/organizations/analytics/cost":
                    return self._send(404, {"type": "error", "error": {"type": "not_found_error",
                                                                       "message": parts.path}})
                try:
                    self._send(200, api._cost_page(q))
                except (KeyError, ValueError) as e:
                    self._send(400, {"type": "error", "error": {"type": "invalid_request_error",
                                                                "message": str(e)}})

            def _send(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.send_header("request-id", f"req_fake_{len(api.requests)}")
                self.end_headers()
                self.wfile.write(data)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._server.shutdown()
        self._server.server_close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def _cost_page(self, q: dict[str, list[str]]) -> dict[str, Any]:
        start = _parse(q["starting_at"][0])
        end = _parse(q["ending_at"][0]) if "ending_at" in q else start + timedelta(days=31)
        if (end - start) > timedelta(days=31):
            raise ValueError("the range may span at most 31 days")
        if q.get("time_bucket_width", ["1d"])[0] != "1d":
            raise ValueError("fake supports time_bucket_width=1d only")
        by_actor = "actor" in q.get("group_by[]", [])
        cells: dict[tuple[date, str | None], list[float]] = defaultdict(lambda: [0.0, 0])
        for c in self.costs:
            t = datetime(c.day.year, c.day.month, c.day.day, tzinfo=UTC)
            if start <= t < end:
                cell = cells[(c.day, c.email if by_actor else None)]
                cell[0] += c.usd
                cell[1] += c.requests
        rows = []
        for (day, email), (usd, reqs) in sorted(cells.items(), key=lambda kv: (kv[0][0], kv[0][1] or "")):
            s = datetime(day.year, day.month, day.day, tzinfo=UTC)
            actor = ({"type": "user_actor", "user_id": f"user_{abs(hash(email)) % 10**8}",
                      "email_address": email, "name": None, "deleted": False} if email else None)
            cents = f"{usd * 100:.6f}"
            rows.append({"starting_at": _fmt(s), "ending_at": _fmt(s + timedelta(days=1)),
                         "group": {"actor": actor} if by_actor else {},
                         "cost": {"amount": cents, "list_amount": cents, "currency": "USD",
                                  "requests": int(reqs)}})
        limit = int(q.get("limit", ["20"])[0])
        if self.page_size:
            limit = min(limit, self.page_size)
        offset = int(q.get("page", ["0"])[0] or 0)
        chunk = rows[offset:offset + limit]
        more = offset + limit < len(rows)
        return {"data": chunk, "has_more": more, "next_page": str(offset + limit) if more else None,
                "data_refreshed_at": _fmt(datetime.now(UTC))}


def _parse(s: str) -> datetime:
    return datetime.fromisoformat(s.replace("Z", "+00:00")).astimezone(UTC)


def _fmt(d: datetime) -> str:
    return d.strftime("%Y-%m-%dT%H:%M:%SZ")
