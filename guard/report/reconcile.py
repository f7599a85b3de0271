"""`guard reconcile`: the ledger against the organization's bill.

Only usage Anthropic bills is compared: events for Anthropic's models called on its own API
(other providers' spend, and Claude through a cloud, are on other bills).

The bill comes from Anthropic's Usage and Cost Analytics API through the `anthropic` SDK
(`client.beta.organization.analytics.cost.list`, GET /v1/organizations/analytics/cost) with an
Admin API key from ANTHROPIC_ADMIN_KEY: daily buckets (UTC, as the API buckets them), grouped by
`actor` so a user's spend can be matched with the ledger's developer by email address. Amounts
come in cents. An SDK without that resource falls back to the generic `client.get` on the same
path. The API caps a request at 31 days; longer ranges are asked for in slices.
"""
from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from guard.errors import ConfigError, GuardError
from guard.ledger.reservations import _routed
from guard.ledger.sql import SqlLedger

COST_PATH = "/v1/organizations/analytics/cost"
COST_BETA = "analytics-usage-cost-2026-08-24"
MAX_DAYS = 31


class ReconcileError(GuardError):
    pass


@dataclass
class BillRow:
    day: date
    actor: str          # an email for a user, else "api_key:ID", "service_account:ID", "(unattributed)"
    usd: float


def make_client(base_url: str | None = None, api_key: str | None = None, timeout: float = 30.0) -> Any:
    import anthropic

    key = api_key or os.environ.get("ANTHROPIC_ADMIN_KEY")
    if not key:
        raise ConfigError("reconcile needs an Admin API key in ANTHROPIC_ADMIN_KEY")
    base = base_url or os.environ.get("ANTHROPIC_ADMIN_BASE_URL") or os.environ.get("ANTHROPIC_BASE_URL")
    kwargs: dict[str, Any] = {"api_key": key, "timeout": timeout, "max_retries": 1}
    if base:
        kwargs["base_url"] = base
    return anthropic.Anthropic(**kwargs)


def _actor_name(actor: Any) -> str:
    if actor is None:
        return "(unattributed)"
    get = actor.get if isinstance(actor, dict) else lambda k, d=None: getattr(actor, k, d)
    kind = get("type")
    if kind == "user_actor":
        return str(get("email_address") or get("user_id") or "(deleted user)").lower()
    if kind == "api_actor":
        return f"api_key:{get('api_key_id')}"
    if kind == "service_account_actor":
        return f"service_account:{get('service_account_id')}"
    return f"({kind or 'unknown'})"


def _day(v: Any) -> date:
    if isinstance(v, datetime):
        return v.astimezone(UTC).date()
    return datetime.fromisoformat(str(v).replace("Z", "+00:00")).astimezone(UTC).date()


def _slices(start: date, end: date) -> Iterator[tuple[date, date]]:
    while start < end:
        stop = min(end, start + timedelta(days=MAX_DAYS))
        yield start, stop
        start = stop


def _iso(d: date) -> str:
    return f"{d.isoformat()}T00:00:00Z"


def fetch_bill(client: Any, start: date, end: date) -> list[BillRow]:
    """Daily cost per actor for UTC days [start, end)."""
    out: list[BillRow] = []
    resource = getattr(getattr(getattr(getattr(client, "beta", None), "organization", None),
                               "analytics", None), "cost", None)
    try:
        for lo, hi in _slices(start, end):
            if resource is not None:
                items: Any = resource.list(starting_at=_iso(lo), ending_at=_iso(hi), time_bucket_width="1d",
                                           group_by=["actor"], limit=1000)
                for it in items:    # the SDK's page iterator follows next_page itself
                    out.append(BillRow(_day(it.starting_at), _actor_name(it.group.actor),
                                       float(it.cost.amount) / 100.0))
            else:
                out.extend(_fetch_generic(client, lo, hi))
    except ReconcileError:
        raise
    except Exception as e:  # noqa: BLE001 -- the SDK's errors all become one line for the user
        status = getattr(e, "status_code", None)
        detail = f"HTTP {status}: " if status else ""
        raise ReconcileError(f"cost API: {detail}{str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
    return out


def _fetch_generic(client: Any, lo: date, hi: date) -> list[BillRow]:
    out: list[BillRow] = []
    page: str | None = None
    while True:
        params: dict[str, Any] = {"starting_at": _iso(lo), "ending_at": _iso(hi), "time_bucket_width": "1d",
                                  "group_by": ["actor"], "limit": 1000}
        if page:
            params["page"] = page
        body = client.get(COST_PATH, cast_to=object,
                          options={"params": params, "headers": {"anthropic-beta": COST_BETA}})
        for it in body.get("data", []):
            out.append(BillRow(_day(it["starting_at"]), _actor_name((it.get("group") or {}).get("actor")),
                               float(it["cost"]["amount"]) / 100.0))
        page = body.get("next_page")
        if not body.get("has_more") or not page:
            return out


def ledger_by_day_developer(ledger: SqlLedger, start: date, end: date) -> dict[tuple[date, str], float]:
    lo = datetime(start.year, start.month, start.day, tzinfo=UTC).timestamp()
    hi = datetime(end.year, end.month, end.day, tzinfo=UTC).timestamp()

    def q(led: SqlLedger) -> list[tuple[Any, ...]]:
        return led._execute(
            "SELECT e.ts, r.developer, e.cost_usd, e.model FROM events e JOIN runs r ON r.id = e.run_id "
            "WHERE e.ts >= ? AND e.ts < ?", (lo, hi))

    out: dict[tuple[date, str], float] = defaultdict(float)
    for ts, dev, cost, model in _routed(ledger, q, spool_ok=False):
        if billed_by_anthropic(model):
            out[(datetime.fromtimestamp(ts, UTC).date(), str(dev).lower())] += float(cost)
    return out


def billed_by_anthropic(model: str | None) -> bool:
    """Only calls to Anthropic's own API are on its bill: not OpenAI's or Google's models, and
    not Claude through Bedrock, Vertex or OpenRouter (`bedrock/...`, `openrouter/anthropic/...`)."""
    from guard.pricing import guess_provider

    return bool(model) and guess_provider(str(model)) == "anthropic"


@dataclass
class Reconciliation:
    start: date
    end: date
    days: list[dict[str, Any]]
    developers: list[dict[str, Any]]
    totals: dict[str, Any]

    @property
    def ok(self) -> bool:
        return all(d["status"] == "ok" for d in self.days)

    def as_json(self) -> dict[str, Any]:
        return {"since": self.start.isoformat(), "until": (self.end - timedelta(days=1)).isoformat(),
                "timezone": "UTC", "ok": self.ok, "totals": self.totals, "days": self.days,
                "developers": self.developers}


def _row(key: dict[str, Any], ledger_usd: float, bill_usd: float, tol_usd: float, tol_pct: float) -> dict[str, Any]:
    diff = ledger_usd - bill_usd
    ok = abs(diff) <= max(tol_usd, tol_pct * abs(bill_usd))
    return {**key, "ledger_usd": round(ledger_usd, 6), "bill_usd": round(bill_usd, 6),
            "diff_usd": round(diff, 6),
            "diff_pct": round(diff / bill_usd, 4) if bill_usd else None,
            "status": "ok" if ok else ("under-metered" if diff < 0 else "over-metered")}


def reconcile(ledger: SqlLedger, client: Any, start: date, end: date, *, tol_usd: float = 0.01,
              tol_pct: float = 0.02) -> Reconciliation:
    """Compare UTC days [start, end). A developer is matched with the bill by email, so
    developers identified by git user.email reconcile per person; others appear as unmatched."""
    if end <= start:
        raise ConfigError("reconcile: the range is empty")
    bill = fetch_bill(client, start, end)
    mine = ledger_by_day_developer(ledger, start, end)
    bill_day: dict[date, float] = defaultdict(float)
    bill_dev: dict[str, float] = defaultdict(float)
    for b in bill:
        bill_day[b.day] += b.usd
        bill_dev[b.actor] += b.usd
    led_day: dict[date, float] = defaultdict(float)
    led_dev: dict[str, float] = defaultdict(float)
    for (d, dev), usd in mine.items():
        led_day[d] += usd
        led_dev[dev] += usd
    days = []
    d = start
    while d < end:
        days.append(_row({"day": d.isoformat()}, led_day.get(d, 0.0), bill_day.get(d, 0.0), tol_usd, tol_pct))
        d += timedelta(days=1)
    developers = [_row({"developer": k}, led_dev.get(k, 0.0), bill_dev.get(k, 0.0), tol_usd, tol_pct)
                  for k in sorted(set(led_dev) | set(bill_dev))]
    total_l, total_b = sum(led_day.values()), sum(bill_day.values())
    totals = _row({}, total_l, total_b, tol_usd, tol_pct)
    return Reconciliation(start, end, days, developers, totals)
