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
    cond, params = _where(since, until, developer, team, tool)

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


# A run as the report aggregates it: (id, developer, group key, started_at, budget halted, finished,
# imported, cost, input, output, cache write, cache read). Plain tuples: a report reads one per run.
_Lean = tuple[str, str, Any, float, int, int, int, float, int, int, int, int]

_HALTED = ("CASE WHEN r.status IN ('halted', 'refused') AND COALESCE(r.halt_ceiling, '') IN ("
           + ", ".join(f"'{c}'" for c in sorted(BUDGET_CEILINGS)) + ") THEN 1 ELSE 0 END")
_FINISHED = ("CASE WHEN r.status NOT IN (" + ", ".join(f"'{s}'" for s in sorted(UNFINISHED))
             + f") AND r.accuracy <> '{IMPORTED}' THEN 1 ELSE 0 END")
_IMPORTED = f"CASE WHEN r.accuracy = '{IMPORTED}' THEN 1 ELSE 0 END"
# 0.0, not 0: a run without calls costs a float like the others
_LEAN_SUMS = _SUMS.replace("COALESCE(SUM(u.cost_usd), 0)", "COALESCE(SUM(u.cost_usd), 0.0)")
_LEAN_FIELDS = f"r.id, r.developer, {{key}}, r.started_at, {_HALTED}, {_FINISHED}, {_IMPORTED}"


def _where(since: float, until: float, developer: str | None, team: str | None,
           tool: str | None) -> tuple[str, list[Any]]:
    where = ["r.started_at >= ?", "r.started_at < ?"]
    params: list[Any] = [since, until]
    for col, val in (("developer", developer), ("team", team), ("tool", tool)):
        if val is not None:
            where.append(f"r.{col} = ?")
            params.append(val)
    return " AND ".join(where), params


def _lean_runs(ledger: SqlLedger, since: float, until: float, group_by: str, developer: str | None,
               team: str | None, tool: str | None) -> tuple[list[_Lean], dict[str, dict[str, tuple[float, Kinds]]]]:
    """The period's runs with only what the report needs, summed by the database from run_usage:
    one row per run (per run and model for `model`), the group's column already picked."""
    cond, params = _where(since, until, developer, team, tool)
    if group_by == "model":
        def q(led: SqlLedger) -> list[Any]:
            return led._execute(
                f"SELECT {_LEAN_FIELDS.format(key='u.model')}, u.cost_usd, u.input_tokens, u.output_tokens, "
                "u.cache_write_tokens, u.cache_read_tokens FROM runs r LEFT JOIN run_usage u "
                f"ON u.run_id = r.id AND u.calls > 0 WHERE {cond}", params)

        runs: dict[str, list[Any]] = {}
        models: dict[str, dict[str, tuple[float, Kinds]]] = {}
        for r in _routed(ledger, q, spool_ok=False):
            run = runs.get(r[0])
            if run is None:
                run = runs[r[0]] = [r[0], r[1], None, float(r[3]), r[4], r[5], r[6], 0.0, 0, 0, 0, 0]
                models[r[0]] = {}
            if r[2] is None:
                continue
            cost, i, o, cw, cr = float(r[7]), int(r[8]), int(r[9]), int(r[10]), int(r[11])
            run[7] += cost
            run[8] += i
            run[9] += o
            run[10] += cw
            run[11] += cr
            by = models[r[0]]
            name = canonical_model(r[2])
            c0, k0 = by.get(name, (0.0, (0, 0, 0, 0)))
            by[name] = (c0 + cost, (k0[0] + i, k0[1] + o, k0[2] + cw, k0[3] + cr))
        return [tuple(v) for v in runs.values()], models  # type: ignore[misc]
    key = "NULL" if group_by in ("day", "developer_day") else f"r.{group_by}"

    def q2(led: SqlLedger) -> list[Any]:
        return led._execute(f"SELECT {_LEAN_FIELDS.format(key=key)}, {_LEAN_SUMS} FROM runs r LEFT JOIN run_usage u "
                            f"ON u.run_id = r.id AND u.calls > 0 WHERE {cond} GROUP BY r.id", params)

    rows = _routed(ledger, q2, spool_ok=False)
    if ledger.dialect == "sqlite":   # its rows are tuples of float and int already
        return rows, {}
    # PostgreSQL's SUM of integers is numeric (Decimal)
    return [(r[0], r[1], r[2], float(r[3]), int(r[4]), int(r[5]), int(r[6]), float(r[7]), int(r[8]), int(r[9]),
             int(r[10]), int(r[11])) for r in rows], {}


def _from_rows(rows: Sequence[RunRow], group_by: str) -> tuple[list[_Lean], dict[str, dict[str, tuple[float, Kinds]]]]:
    lean: list[_Lean] = []
    for r in rows:
        key = None if group_by in ("model", "day", "developer_day") else getattr(r, group_by)
        lean.append((r.id, r.developer, key, r.started_at, int(r.budget_halted), int(r.finished),
                     int(r.accuracy == IMPORTED), r.cost, r.input_tokens, r.output_tokens,
                     r.cache_write_tokens, r.cache_read_tokens))
    return lean, ({r.id: r.by_model for r in rows} if group_by == "model" else {})


class _Days:
    """Local dates of timestamps, one zone lookup per quarter hour: every zone's offset is whole
    quarter hours today; a quarter hour whose ends fall on two dates is looked up exactly."""

    def __init__(self, z: Any) -> None:
        self.z = z
        self.cache: dict[int, str | None] = {}

    def __call__(self, ts: float) -> str:
        q = int(ts // 900)
        day = self.cache.get(q, "")
        if day == "":
            a = datetime.fromtimestamp(q * 900, self.z).date()
            b = datetime.fromtimestamp(q * 900 + 899.999, self.z).date()
            day = self.cache[q] = a.isoformat() if a == b else None
        return day if day is not None else datetime.fromtimestamp(ts, self.z).date().isoformat()


def _group_dict(key: str, labels: dict[str, str] | None, acc: list[Any], costs: list[float]) -> dict[str, Any]:
    """A group's figures, as Group.as_dict words them."""
    spend, i, o, cw, cr, halted, finished = acc
    costs.sort()
    n = len(costs)
    return {
        "key": key,
        **(labels or {}),
        "spend_usd": round(spend, 6),
        "tokens": i + o + cw + cr,
        "input_tokens": i,
        "output_tokens": o,
        "cache_write_tokens": cw,
        "cache_read_tokens": cr,
        "runs": n,
        "avg_usd": round(spend / n, 6) if n else 0.0,
        "p50_usd": round(percentile(costs, 50), 6),
        "p90_usd": round(percentile(costs, 90), 6),
        "halted_runs": halted,
        "finished_runs": finished,
        "exhaustion_rate": round(halted / finished, 4) if finished else 0.0,
    }


def build_report(ledger: SqlLedger, since: float, until: float, *, group_by: str = "developer",
                 tz: str | None = None, label: str = "", top: int = 10,
                 developer: str | None = None, team: str | None = None,
                 tool: str | None = None, fetched: Sequence[RunRow] | None = None) -> Report:
    """`fetched`: the runs `fetch_runs` returned for this range, when the caller builds several
    reports over one read."""
    if group_by not in GROUPS:
        raise ConfigError(f"--by {group_by}: not one of {', '.join(GROUPS)}")
    z = zone(tz)
    by_id: dict[str, RunRow] = {}
    if fetched is None:
        runs, models = _lean_runs(ledger, since, until, group_by, developer, team, tool)
    else:
        picked = [r for r in fetched
                  if (developer is None or r.developer == developer) and (team is None or r.team == team)
                  and (tool is None or r.tool == tool)]
        by_id = {r.id: r for r in picked}
        runs, models = _from_rows(picked, group_by)

    accs: dict[str, list[Any]] = {}
    costs: dict[str, list[float]] = {}
    labels: dict[str, dict[str, str]] = {}
    day_of = _Days(z)
    if group_by == "model":
        for r in runs:
            by = models.get(r[0]) or {"(no calls)": (0.0, (0, 0, 0, 0))}
            for model, (cost, k) in by.items():
                acc = accs.get(model)
                if acc is None:
                    acc = accs[model] = [0.0, 0, 0, 0, 0, 0, 0]
                    costs[model] = []
                acc[0] += cost
                acc[1] += k[0]
                acc[2] += k[1]
                acc[3] += k[2]
                acc[4] += k[3]
                acc[5] += r[4]
                acc[6] += r[5]
                costs[model].append(cost)   # canonical names are distinct: one entry per run
    else:
        for r in runs:
            if group_by == "day":
                key = day_of(r[3])
            elif group_by == "developer_day":
                day = day_of(r[3])
                key = f"{r[1]} {day}"
                if key not in labels:
                    labels[key] = {"developer": r[1], "day": day}
            else:
                key = str(r[2] or "(none)")
            acc = accs.get(key)
            if acc is None:
                acc = accs[key] = [0.0, 0, 0, 0, 0, 0, 0]
                costs[key] = []
            acc[0] += r[7]
            acc[1] += r[8]
            acc[2] += r[9]
            acc[3] += r[10]
            acc[4] += r[11]
            acc[5] += r[4]
            acc[6] += r[5]
            costs[key].append(r[7])

    group_dicts = [_group_dict(k, labels.get(k), acc, costs[k]) for k, acc in accs.items()]
    if group_by == "day":
        group_dicts.sort(key=lambda d: d["key"])
    elif group_by == "developer_day":
        group_dicts.sort(key=lambda d: (d["developer"], d["day"]))
    else:
        group_dicts.sort(key=lambda d: (-d["spend_usd"], d["key"]))

    per_dev: dict[str, float] = defaultdict(float)
    halted = finished = imported = tokens = 0
    for r in runs:    # one pass for all the totals
        per_dev[r[1]] += r[7]
        halted += r[4]
        finished += r[5]
        imported += r[6]
        tokens += r[8] + r[9] + r[10] + r[11]
    median = statistics.median(per_dev.values()) if per_dev else None
    if group_by == "developer" and median is not None:
        for d in group_dicts:
            d["vs_team_median"] = round(d["spend_usd"] / median, 4) if median > 0 else None

    all_costs = sorted(r[7] for r in runs)
    spend = sum(all_costs)
    totals = {
        "spend_usd": round(spend, 6),
        "tokens": tokens,
        "runs": len(runs),
        "avg_usd": round(spend / len(runs), 6) if runs else 0.0,
        "p50_usd": round(percentile(all_costs, 50), 6),
        "p90_usd": round(percentile(all_costs, 90), 6),
        "halted_runs": halted,
        "finished_runs": finished,
        "exhaustion_rate": round(halted / finished, 4) if finished else 0.0,
        "exhaustion_formula": EXHAUSTION_FORMULA,
        "imported_runs": imported,
        "developers": len(per_dev),
    }
    best = heapq.nlargest(top, runs, key=lambda r: r[7])
    details = _run_details(ledger, [r[0] for r in best if r[0] not in by_id])
    details.update({rid: (r.developer, r.tool, r.task, r.status, r.halt_ceiling, r.started_at)
                    for rid, r in by_id.items()})
    top_runs = []
    for r in best:
        dev, tool_, task, status, ceiling, started = details[r[0]]
        top_runs.append({"id": r[0], "developer": dev, "tool": tool_, "task": task, "status": status,
                         "cost_usd": round(r[7], 6), "tokens": r[8] + r[9] + r[10] + r[11],
                         "halt_ceiling": ceiling,
                         "started_at": datetime.fromtimestamp(started, z).isoformat(timespec="seconds")})
    return Report(since=since, until=until, label=label, timezone=str(z.key), group_by=group_by,
                  groups=group_dicts, totals=totals, top_runs=top_runs,
                  team_median_usd=round(median, 6) if median is not None else None)


def _run_details(ledger: SqlLedger, ids: list[str]) -> dict[str, tuple[Any, ...]]:
    """What the top runs list shows of a run, for the few runs it lists."""
    if not ids:
        return {}

    def q(led: SqlLedger) -> list[Any]:
        return led._execute("SELECT id, developer, tool, task, status, halt_ceiling, started_at FROM runs "
                            f"WHERE id IN ({', '.join('?' * len(ids))})", ids)

    return {r[0]: (r[1], r[2], r[3], r[4], r[5], float(r[6])) for r in _routed(ledger, q, spool_ok=False)}
