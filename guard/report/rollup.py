"""Spend rollups for a period, grouped by developer, team, line, tool, task, model or day.

The population is the runs *started* in the period (a run is reported once, with all it spent),
so run counts, per-run percentiles and the exhaustion rate are about whole runs.
"""
from __future__ import annotations

import heapq
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

GROUPS = ("developer", "team", "line", "tool", "task", "model", "day", "developer_day")
# Halts that mean "a budget ran out" (not a stuck loop or an unknown price).
BUDGET_CEILINGS = frozenset({"usd", "tokens", "steps", "time", "developer_usd", "team_usd", "line_usd"})
# Runs still going have no outcome yet; imported runs had no ceiling to hit.
UNFINISHED = frozenset({"running", "paused"})
IMPORTED = "imported"     # runs.accuracy of a run read by `guard import`
EXHAUSTION_FORMULA = ("runs halted or refused by a budget ceiling (usd, tokens, steps, time, developer_usd, "
                      "team_usd, line_usd) / finished runs started in the period (not running or paused, "
                      "not imported)")

Kinds = tuple[int, int, int, int]


def canonical_model(model: str) -> str:
    """One row per model however a tool spelled it: `openai/gpt-4o` and `gpt-4o` are one."""
    return model.rsplit("/", 1)[-1] if model else "(unknown)"


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
    accuracy: str = "exact"
    cost: float = 0.0
    input_tokens: int = 0
    output_tokens: int = 0
    cache_write_tokens: int = 0
    cache_read_tokens: int = 0
    by_model: dict[str, tuple[float, Kinds]] = field(default_factory=dict)  # model -> (cost, kinds)

    @property
    def tokens(self) -> int:
        return self.input_tokens + self.output_tokens + self.cache_write_tokens + self.cache_read_tokens

    @property
    def budget_halted(self) -> bool:
        return self.status in ("halted", "refused") and (self.halt_ceiling or "") in BUDGET_CEILINGS

    @property
    def finished(self) -> bool:
        """In the exhaustion rate's denominator."""
        return self.status not in UNFINISHED and self.accuracy != IMPORTED


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
    finished: int = 0
    labels: dict[str, str] = field(default_factory=dict)

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
            **self.labels,
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
            "finished_runs": self.finished,
            "exhaustion_rate": round(self.halted / self.finished, 4) if self.finished else 0.0,
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
        if d1 < d0:
            raise ConfigError(f"--since {d0.isoformat()} is after --until {d1.isoformat()}")
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


_RUN_FIELDS = "r.id, r.tool, r.task, r.developer, r.team, r.line, r.status, r.halt_ceiling, r.started_at, r.accuracy"
_SUMS = ("COALESCE(SUM(u.cost_usd), 0), COALESCE(SUM(u.input_tokens), 0), COALESCE(SUM(u.output_tokens), 0), "
         "COALESCE(SUM(u.cache_write_tokens), 0), COALESCE(SUM(u.cache_read_tokens), 0)")


def fetch_runs(ledger: SqlLedger, since: float, until: float, *, by_model: bool = True,
               developer: str | None = None, team: str | None = None, tool: str | None = None) -> list[RunRow]:
    """The runs started in [since, until) with their usage, read from the run_usage rollup: one
    row per run (per run and model with `by_model`), however many events they hold."""
    where = ["r.started_at >= ?", "r.started_at < ?"]
    params: list[Any] = [since, until]
    for col, val in (("developer", developer), ("team", team), ("tool", tool)):
        if val is not None:
            where.append(f"r.{col} = ?")
            params.append(val)
    cond = " AND ".join(where)

    def q(led: SqlLedger) -> list[Any]:
        if by_model:   # one row per run and model: the run's figures are summed from them
            return led._execute(
                f"SELECT {_RUN_FIELDS}, u.cost_usd, u.input_tokens, u.output_tokens, u.cache_write_tokens, "
                "u.cache_read_tokens, u.model FROM runs r LEFT JOIN run_usage u ON u.run_id = r.id "
                f"AND u.calls > 0 WHERE {cond}", params)
        return led._execute(
            f"SELECT {_RUN_FIELDS}, {_SUMS}, NULL FROM runs r LEFT JOIN run_usage u ON u.run_id = r.id "
            f"AND u.calls > 0 WHERE {cond} GROUP BY r.id", params)

    rows: dict[str, RunRow] = {}
    for r in _routed(ledger, q, spool_ok=False):
        row = rows.get(r[0])
        if row is None:
            row = rows[r[0]] = RunRow(id=r[0], tool=r[1], task=r[2], developer=r[3], team=r[4], line=r[5],
                                      status=r[6], halt_ceiling=r[7], started_at=r[8], accuracy=r[9])
        if r[10] is None:
            continue
        cost, i, o, cw, cr = float(r[10]), int(r[11]), int(r[12]), int(r[13]), int(r[14])
        row.cost += cost
        row.input_tokens += i
        row.output_tokens += o
        row.cache_write_tokens += cw
        row.cache_read_tokens += cr
        if by_model:
            name = canonical_model(r[15])
            c0, k0 = row.by_model.get(name, (0.0, (0, 0, 0, 0)))
            row.by_model[name] = (c0 + cost, (k0[0] + i, k0[1] + o, k0[2] + cw, k0[3] + cr))
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
    if fetched is None:
        runs = fetch_runs(ledger, since, until, by_model=group_by == "model", developer=developer, team=team,
                          tool=tool)
    else:
        runs = [r for r in fetched
                if (developer is None or r.developer == developer) and (team is None or r.team == team)
                and (tool is None or r.tool == tool)]
    groups: dict[str, Group] = defaultdict(lambda: Group(""))

    def add(key: str, r: RunRow, cost: float, tokens: Kinds, labels: dict[str, str] | None = None) -> None:
        g = groups[key]
        g.key = key
        if labels:
            g.labels = labels
        g.spend_usd += cost
        g.input_tokens += tokens[0]
        g.output_tokens += tokens[1]
        g.cache_write_tokens += tokens[2]
        g.cache_read_tokens += tokens[3]
        if r.id not in g.run_costs:
            g.halted += r.budget_halted
            g.finished += r.finished
        g.run_costs[r.id] = g.run_costs.get(r.id, 0.0) + cost

    for r in runs:
        kinds = (r.input_tokens, r.output_tokens, r.cache_write_tokens, r.cache_read_tokens)
        if group_by == "model":
            if not r.by_model:
                add("(no calls)", r, 0.0, (0, 0, 0, 0))
            for model, (cost, model_kinds) in r.by_model.items():
                add(model, r, cost, model_kinds)
            continue
        if group_by == "developer_day":
            day = datetime.fromtimestamp(r.started_at, z).date().isoformat()
            add(f"{r.developer} {day}", r, r.cost, kinds, {"developer": r.developer, "day": day})
            continue
        if group_by == "day":
            key = datetime.fromtimestamp(r.started_at, z).date().isoformat()
        else:
            key = getattr(r, group_by) or "(none)"
        add(str(key), r, r.cost, kinds)

    group_dicts = [g.as_dict() for g in groups.values()]
    if group_by == "day":
        group_dicts.sort(key=lambda d: d["key"])
    elif group_by == "developer_day":
        group_dicts.sort(key=lambda d: (d["developer"], d["day"]))
    else:
        group_dicts.sort(key=lambda d: (-d["spend_usd"], d["key"]))

    per_dev: dict[str, float] = defaultdict(float)
    for r in runs:
        per_dev[r.developer] += r.cost
    median = statistics.median(per_dev.values()) if per_dev else None
    if group_by == "developer" and median is not None:
        for d in group_dicts:
            d["vs_team_median"] = round(d["spend_usd"] / median, 4) if median > 0 else None

    all_costs = sorted(r.cost for r in runs)
    halted = sum(r.budget_halted for r in runs)
    finished = sum(r.finished for r in runs)
    spend = sum(all_costs)
    totals = {
        "spend_usd": round(spend, 6),
        "tokens": sum(r.tokens for r in runs),
        "runs": len(runs),
        "avg_usd": round(spend / len(runs), 6) if runs else 0.0,
        "p50_usd": round(percentile(all_costs, 50), 6),
        "p90_usd": round(percentile(all_costs, 90), 6),
        "halted_runs": halted,
        "finished_runs": finished,
        "exhaustion_rate": round(halted / finished, 4) if finished else 0.0,
        "exhaustion_formula": EXHAUSTION_FORMULA,
        "imported_runs": sum(r.accuracy == IMPORTED for r in runs),
        "developers": len(per_dev),
    }
    top_runs = [
        {"id": r.id, "developer": r.developer, "tool": r.tool, "task": r.task, "status": r.status,
         "cost_usd": round(r.cost, 6), "tokens": r.tokens, "halt_ceiling": r.halt_ceiling,
         "started_at": datetime.fromtimestamp(r.started_at, z).isoformat(timespec="seconds")}
        for r in heapq.nlargest(top, runs, key=lambda r: r.cost)
    ]
    return Report(since=since, until=until, label=label, timezone=str(z.key), group_by=group_by,
                  groups=group_dicts, totals=totals, top_runs=top_runs,
                  team_median_usd=round(median, 6) if median is not None else None)
