"""Spend rollups for a period, grouped by developer, team, line, tool, task, model or day.

The population is the runs *started* in the period (a run is reported once, with all it spent),
so run counts, per-run percentiles and the exhaustion rate are about whole runs.
"""
from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from guard.errors import ConfigError
from guard.ledger.periods import PERIODS, period_bounds, period_label, zone
from guard.ledger.reservations import _routed
from guard.ledger.sql import SqlLedger

GROUPS = ("developer", "team", "line", "tool", "task", "model", "day")
# Halts that mean "a budget ran out" (not a stuck loop or an unknown price).
BUDGET_CEILINGS = frozenset({"usd", "tokens", "steps", "time", "developer_usd", "team_usd", "line_usd"})


@dataclass
class RunRow:
    id: str
    tool: str
    task: str
    developer: str
    team: str | None
    line: str | None
    status: str
    halt_ceiling: str | None
    started_at: float
    cost: float = 0.0
    input_tokens: int = 0
    output_tokens: int = 0
    cache_write_tokens: int = 0
    cache_read_tokens: int = 0
    by_model: dict[str, list[float]] = field(default_factory=dict)  # model -> [cost, tokens]

    @property
    def tokens(self) -> int:
        return self.input_tokens + self.output_tokens + self.cache_write_tokens + self.cache_read_tokens

    @property
    def budget_halted(self) -> bool:
        return self.status in ("halted", "refused") and (self.halt_ceiling or "") in BUDGET_CEILINGS


@dataclass
class Group:
    key: str
    spend_usd: float = 0.0
    input_tokens: int = 0
    output_tokens: int = 0
    cache_write_tokens: int = 0
    cache_read_tokens: int = 0
    run_costs: dict[str, float] = field(default_factory=dict)
    halted: int = 0

    @property
    def runs(self) -> int:
        return len(self.run_costs)

    @property
    def tokens(self) -> int:
        return self.input_tokens + self.output_tokens + self.cache_write_tokens + self.cache_read_tokens

    def as_dict(self) -> dict[str, Any]:
        costs = sorted(self.run_costs.values())
        return {
            "key": self.key,
            "spend_usd": round(self.spend_usd, 6),
            "tokens": self.tokens,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cache_write_tokens": self.cache_write_tokens,
            "cache_read_tokens": self.cache_read_tokens,
            "runs": self.runs,
            "avg_usd": round(self.spend_usd / self.runs, 6) if self.runs else 0.0,
            "p50_usd": round(percentile(costs, 50), 6),
            "p90_usd": round(percentile(costs, 90), 6),
            "halted_runs": self.halted,
            "exhaustion_rate": round(self.halted / self.runs, 4) if self.runs else 0.0,
        }


def percentile(sorted_values: Sequence[float], p: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    if not sorted_values:
        return 0.0
    k = (len(sorted_values) - 1) * p / 100
    lo = int(k)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (k - lo)


@dataclass
class Report:
    since: float
    until: float
    label: str
    timezone: str
    group_by: str
    groups: list[dict[str, Any]]
    totals: dict[str, Any]
    top_runs: list[dict[str, Any]]
    team_median_usd: float | None

    def as_json(self) -> dict[str, Any]:
        tz = zone(self.timezone)
        return {
            "period": {"label": self.label, "timezone": self.timezone,
                       "since": datetime.fromtimestamp(self.since, tz).isoformat(),
                       "until": datetime.fromtimestamp(self.until, tz).isoformat()},
            "group_by": self.group_by,
            "totals": self.totals,
            "groups": self.groups,
            "team_median_usd": self.team_median_usd,
            "top_runs": self.top_runs,
        }


def _parse_date(text: str, what: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise ConfigError(f"{what}: {text!r} is not a date (YYYY-MM-DD)") from None


def resolve_range(period: str | None, now: float, tz: str | None, *, ago: int = 0,
                  since: str | None = None, until: str | None = None) -> tuple[float, float, str]:
    """[since, until) and a label: a calendar period (`ago` periods back) or explicit dates
    (until inclusive) in the zone."""
    z = zone(tz)
    if since or until:
        d0 = _parse_date(since, "--since") if since else datetime.fromtimestamp(now, z).date().replace(day=1)
        d1 = _parse_date(until, "--until") if until else datetime.fromtimestamp(now, z).date()
        lo = datetime(d0.year, d0.month, d0.day, tzinfo=z).timestamp()
        d2 = d1 + timedelta(days=1)
        hi = datetime(d2.year, d2.month, d2.day, tzinfo=z).timestamp()
        return lo, hi, f"{d0.isoformat()}..{d1.isoformat()}"
    period = period or "month"
    if period not in PERIODS:
        raise ConfigError(f"--period {period}: not one of {', '.join(PERIODS)}")
    lo, hi = period_bounds(period, now, z)
    for _ in range(ago):
        lo, hi = period_bounds(period, lo - 1, z)
    return lo, hi, period_label(period, lo, z)


def fetch_runs(ledger: SqlLedger, since: float, until: float) -> list[RunRow]:
    def q(led: SqlLedger) -> tuple[list[Any], list[Any]]:
        runs = led._execute(
            "SELECT id, tool, task, developer, team, line, status, halt_ceiling, started_at FROM runs "
            "WHERE started_at >= ? AND started_at < ?", (since, until))
        usage = led._execute(
            "SELECT e.run_id, COALESCE(e.model, ''), SUM(e.cost_usd), SUM(e.input_tokens), "
            "SUM(e.output_tokens), SUM(e.cache_write_tokens), SUM(e.cache_read_tokens) "
            "FROM events e JOIN runs r ON r.id = e.run_id "
            "WHERE r.started_at >= ? AND r.started_at < ? GROUP BY e.run_id, e.model", (since, until))
        return runs, usage

    runs, usage = _routed(ledger, q, spool_ok=False)
    rows = {r[0]: RunRow(*r) for r in runs}
    for run_id, model, cost, i, o, cw, cr in usage:
        row = rows.get(run_id)
        if row is None:
            continue
        row.cost += float(cost)
        row.input_tokens += int(i)
        row.output_tokens += int(o)
        row.cache_write_tokens += int(cw)
        row.cache_read_tokens += int(cr)
        row.by_model[model or "(unknown)"] = [float(cost), int(i) + int(o) + int(cw) + int(cr)]
    return list(rows.values())


def build_report(ledger: SqlLedger, since: float, until: float, *, group_by: str = "developer",
                 tz: str | None = None, label: str = "", top: int = 10,
                 developer: str | None = None, team: str | None = None,
                 tool: str | None = None, fetched: Sequence[RunRow] | None = None) -> Report:
    """`fetched`: the runs `fetch_runs` returned for this range, when the caller builds several
    reports over one read."""
    if group_by not in GROUPS:
        raise ConfigError(f"--by {group_by}: not one of {', '.join(GROUPS)}")
    z = zone(tz)
    runs = [r for r in (fetch_runs(ledger, since, until) if fetched is None else fetched)
            if (developer is None or r.developer == developer) and (team is None or r.team == team)
            and (tool is None or r.tool == tool)]
    groups: dict[str, Group] = defaultdict(lambda: Group(""))

    def add(key: str, r: RunRow, cost: float, tokens: tuple[int, int, int, int]) -> None:
        g = groups[key]
        g.key = key
        g.spend_usd += cost
        g.input_tokens += tokens[0]
        g.output_tokens += tokens[1]
        g.cache_write_tokens += tokens[2]
        g.cache_read_tokens += tokens[3]
        if r.id not in g.run_costs:
            g.halted += r.budget_halted
        g.run_costs[r.id] = g.run_costs.get(r.id, 0.0) + cost

    for r in runs:
        kinds = (r.input_tokens, r.output_tokens, r.cache_write_tokens, r.cache_read_tokens)
        if group_by == "model":
            if not r.by_model:
                add("(no calls)", r, 0.0, (0, 0, 0, 0))
            for model, (cost, tokens) in r.by_model.items():
                # token kinds per model are not kept apart: attribute the total as input
                add(model, r, cost, (int(tokens), 0, 0, 0))
            continue
        if group_by == "day":
            key = datetime.fromtimestamp(r.started_at, z).date().isoformat()
        else:
            key = getattr(r, group_by) or "(none)"
        add(str(key), r, r.cost, kinds)

    group_dicts = [g.as_dict() for g in groups.values()]
    group_dicts.sort(key=lambda d: (d["key"]) if group_by == "day" else (-d["spend_usd"], d["key"]))

    per_dev: dict[str, float] = defaultdict(float)
    for r in runs:
        per_dev[r.developer] += r.cost
    median = statistics.median(per_dev.values()) if per_dev else None
    if group_by == "developer" and median is not None:
        for d in group_dicts:
            d["vs_team_median"] = round(d["spend_usd"] / median, 4) if median > 0 else None

    all_costs = sorted(r.cost for r in runs)
    halted = sum(r.budget_halted for r in runs)
    spend = sum(all_costs)
    totals = {
        "spend_usd": round(spend, 6),
        "tokens": sum(r.tokens for r in runs),
        "runs": len(runs),
        "avg_usd": round(spend / len(runs), 6) if runs else 0.0,
        "p50_usd": round(percentile(all_costs, 50), 6),
        "p90_usd": round(percentile(all_costs, 90), 6),
        "halted_runs": halted,
        "exhaustion_rate": round(halted / len(runs), 4) if runs else 0.0,
        "developers": len(per_dev),
    }
    top_runs = [
        {"id": r.id, "developer": r.developer, "tool": r.tool, "task": r.task, "status": r.status,
         "cost_usd": round(r.cost, 6), "tokens": r.tokens, "halt_ceiling": r.halt_ceiling,
         "started_at": datetime.fromtimestamp(r.started_at, z).isoformat(timespec="seconds")}
        for r in sorted(runs, key=lambda r: -r.cost)[:top]
    ]
    return Report(since=since, until=until, label=label, timezone=str(z.key), group_by=group_by,
                  groups=group_dicts, totals=totals, top_runs=top_runs,
                  team_median_usd=round(median, 6) if median is not None else None)
