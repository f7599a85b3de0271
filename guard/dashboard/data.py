"""What the dashboard shows and /metrics exports, read from the ledger's run_usage rollup.

History goes through `build_report` (the numbers are `guard report --json`'s by construction), all
reports over one `fetch_runs` read. Live runs come from the runs table, their rollup rows and their
state files. The ledger-wide totals for /metrics and the change fingerprint are this module's own
queries, also over run_usage: none of them reads the events table, so their cost follows the number
of runs and models, not of events (and what `guard prune` deletes from events still counts).
"""
from __future__ import annotations

import json
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from guard.ledger.periods import zone
from guard.ledger.records import RunRecord, iso
from guard.ledger.reservations import _routed
from guard.ledger.sql import _RUN_COLUMNS, SqlLedger
from guard.report.rollup import build_report, fetch_runs, percentile, resolve_range
from guard.usage import Totals

BANDS = {"low": 0.02, "high": 0.20}    # exhaustion below 2%: ceilings are theatre; above 20%: too tight
TOP_DEVELOPERS = 8                    # series drawn one by one in "spend over time"; the rest are summed
HISTOGRAM_BINS = 20


@dataclass(frozen=True)
class Range:
    period: str | None = "month"
    ago: int = 0
    since: str | None = None
    until: str | None = None
    tz: str | None = None


def history_view(ledger: SqlLedger, rng: Range, *, now: float | None = None, top: int = 10) -> dict[str, Any]:
    """The period's picture: the developer report plus the other groupings, series and histogram."""
    now = time.time() if now is None else now
    lo, hi, label = resolve_range(rng.period, now, rng.tz, ago=rng.ago, since=rng.since, until=rng.until)
    rows = fetch_runs(ledger, lo, hi)

    def report(by: str, **filters: Any) -> Any:
        return build_report(ledger, lo, hi, group_by=by, tz=rng.tz, label=label, top=top, fetched=rows, **filters)

    main = report("developer")
    by_day = report("day")
    tasks = report("task")
    days = _days(lo, min(hi, now + 1), rng.tz)
    # one developer_day report holds every developer's days (the sums of `--by day --developer X`)
    dev_days: dict[str, dict[str, float]] = {}
    for g in report("developer_day").groups:
        dev_days.setdefault(g["developer"], {})[g["day"]] = g["spend_usd"]
    per_dev: dict[str, list[float]] = {}
    ranked = [g["key"] for g in main.groups]
    for dev in ranked[:TOP_DEVELOPERS]:
        spend = dev_days.get(dev, {})
        per_dev[dev] = [round(spend.get(d, 0.0), 6) for d in days]
    if len(ranked) > TOP_DEVELOPERS:
        total = {g["key"]: g["spend_usd"] for g in by_day.groups}
        per_dev[f"{len(ranked) - TOP_DEVELOPERS} others"] = [
            round(total.get(d, 0.0) - sum(s[i] for s in per_dev.values()), 6) for i, d in enumerate(days)]
    exhaustion = {g["key"]: g["exhaustion_rate"] for g in by_day.groups}
    return {
        "report": main.as_json(),
        "by_model": report("model").groups,
        "by_tool": report("tool").groups,
        "top_tasks": tasks.groups[:top],
        "task_costs": histogram([g["spend_usd"] for g in tasks.groups]),
        "days": days,
        "spend_by_developer_day": per_dev,
        "exhaustion_by_day": [exhaustion.get(d) for d in days],
        "bands": BANDS,
    }


def _days(lo: float, hi: float, tz: str | None) -> list[str]:
    z = zone(tz)
    out: list[str] = []
    t = lo
    while t < hi:
        d = datetime.fromtimestamp(t, z).date().isoformat()
        if not out or out[-1] != d:
            out.append(d)
        t += 3600
    return out


def histogram(values: Sequence[float], bins: int = HISTOGRAM_BINS) -> dict[str, Any]:
    """Equal-width bins from 0 to the 99th percentile (the tail folds into the last bin), so one
    runaway task does not flatten the shape of the rest."""
    if not values:
        return {"edges": [], "counts": [], "p50": 0.0, "p90": 0.0, "n": 0}
    s = sorted(values)
    top = percentile(s, 99) or s[-1] or 1.0
    width = top / bins
    counts = [0] * bins
    for v in s:
        counts[min(bins - 1, int(v / width)) if width else 0] += 1
    return {"edges": [round(width * i, 6) for i in range(bins + 1)], "counts": counts,
            "p50": round(percentile(s, 50), 6), "p90": round(percentile(s, 90), 6), "n": len(s)}


# -- now ----------------------------------------------------------------------------------------

def live_runs(ledger: SqlLedger, home: Path) -> list[dict[str, Any]]:
    """Running and paused runs with their budgets and spend. A run supervised on this machine has
    a state file, fresher than the ledger between writes; its paused flag is the truth there."""
    out = []
    for r in _live_records(ledger):
        state = _state(home / "runs" / r.id / "state.json")
        totals = state.get("totals") or {}
        spend = max(r.usage.cost_usd, float(totals.get("cost_usd") or 0.0))
        tokens = max(r.usage.tokens, sum(int(totals.get(k) or 0) for k in (
            "input_tokens", "output_tokens", "cache_write_tokens", "cache_read_tokens")))
        ceilings = state.get("ceilings") or [{"name": k, "limit": v, "used": spend if k == "usd" else None}
                                             for k, v in r.limits.items()]
        usd = next((c for c in ceilings if c.get("name") == "usd"), None)
        status = "paused" if state.get("paused") else r.status
        out.append({"id": r.id, "developer": r.developer, "team": r.team, "tool": r.tool, "task": r.task,
                    "status": status, "started_at": iso(r.started_at), "spend_usd": round(spend, 6),
                    "tokens": tokens, "budget_usd": usd["limit"] if usd else None,
                    "remaining_usd": round(max(0.0, usd["limit"] - spend), 6) if usd else None,
                    "ceilings": ceilings, "branch": r.branch})
    return out


def _live_records(ledger: SqlLedger) -> list[RunRecord]:
    """The running and paused runs, newest first, with their usage summed from run_usage (a few rows
    per run, however long it has run). Offline, the spool's runs: the ones this machine started."""
    def q(led: SqlLedger) -> list[RunRecord]:
        runs = [SqlLedger._run(row) for row in led._execute(
            f"SELECT {_RUN_COLUMNS} FROM runs WHERE status IN ('running', 'paused') ORDER BY started_at DESC")]
        if runs:
            marks = ", ".join("?" * len(runs))
            usage = {row[0]: row[1:] for row in led._execute(
                "SELECT run_id, SUM(input_tokens), SUM(output_tokens), SUM(cache_write_tokens), "
                "SUM(cache_read_tokens), SUM(cost_usd), SUM(steps), SUM(calls) FROM run_usage "
                f"WHERE run_id IN ({marks}) AND calls > 0 GROUP BY run_id", [r.id for r in runs])}
            for r in runs:
                u = usage.get(r.id)
                if u is not None:
                    r.usage = Totals(int(u[0]), int(u[1]), int(u[2]), int(u[3]), float(u[4]), int(u[5]),
                                     int(u[6]))
        return runs

    return _routed(ledger, q)  # type: ignore[no-any-return]


def _state(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


# -- ledger-wide totals for /metrics --------------------------------------------------------------

@dataclass
class MetricTotals:
    # (developer, team, tool, model) -> [usd, input, output, cache_write, cache_read]
    usage: dict[tuple[str, str, str, str], list[float]] = field(default_factory=dict)
    # (developer, team, tool, ceiling) -> halts
    halts: dict[tuple[str, str, str, str], int] = field(default_factory=dict)
    # (developer, team, tool, status) -> runs
    runs: dict[tuple[str, str, str, str], int] = field(default_factory=dict)


def metric_totals(ledger: SqlLedger) -> MetricTotals:
    """Everything the ledger ever recorded, by label set (counters only grow)."""
    def q(led: SqlLedger) -> tuple[list[Any], list[Any], list[Any]]:
        # the per-run rollup grouped in the database: a row per run and model read, one per label set
        # returned
        usage = led._execute(
            "SELECT r.developer, COALESCE(r.team, ''), r.tool, u.model, SUM(u.cost_usd), "
            "SUM(u.input_tokens), SUM(u.output_tokens), SUM(u.cache_write_tokens), SUM(u.cache_read_tokens) "
            "FROM run_usage u JOIN runs r ON r.id = u.run_id WHERE u.calls > 0 "
            "GROUP BY r.developer, COALESCE(r.team, ''), r.tool, u.model")
        halts = led._execute(
            "SELECT developer, COALESCE(team, ''), tool, halt_ceiling, COUNT(*) FROM runs "
            "WHERE halt_ceiling IS NOT NULL AND status IN ('halted', 'refused') "
            "GROUP BY developer, COALESCE(team, ''), tool, halt_ceiling")
        runs = led._execute("SELECT developer, COALESCE(team, ''), tool, status, COUNT(*) FROM runs "
                            "GROUP BY developer, COALESCE(team, ''), tool, status")
        return usage, halts, runs

    usage, halts, runs = _routed(ledger, q, spool_ok=False)
    out = MetricTotals()
    for dev, team, tool, model, *sums in usage:
        out.usage[(dev, team, tool, model or "(unknown)")] = [float(x or 0) for x in sums]
    out.halts = {(d, t, tl, c): int(n) for d, t, tl, c, n in halts}
    out.runs = {(d, t, tl, s): int(n) for d, t, tl, s, n in runs}
    return out


def fingerprint(ledger: SqlLedger) -> tuple[Any, ...]:
    """Changes whenever what the snapshot shows could have: a call metered or re-metered (run_usage
    moves with every event write, an update of an old call included), a run started, ended or
    changed status. One scan of the rollup and one of runs, the events table untouched."""
    def q(led: SqlLedger) -> tuple[Any, ...]:
        rows = led._execute(
            "SELECT u.n, u.calls, u.usd, u.tokens, r.n, r.last, r.live FROM "
            "(SELECT COUNT(*) AS n, SUM(calls) AS calls, SUM(cost_usd) AS usd, "
            "SUM(input_tokens + output_tokens) AS tokens FROM run_usage) u, "
            "(SELECT COUNT(*) AS n, MAX(COALESCE(ended_at, started_at)) AS last, "
            "SUM(CASE WHEN status IN ('running', 'paused') THEN 1 ELSE 0 END) AS live FROM runs) r")
        # rounded: a parallel scan may add the same floats in another order
        return tuple(round(float(v), 6) if isinstance(v, float) else v for v in rows[0])

    return _routed(ledger, q, spool_ok=False)  # type: ignore[no-any-return]


def period_budgets(ledger: SqlLedger, policy: Any, people: Iterable[tuple[str, str | None]],
                   now: float | None = None) -> list[dict[str, Any]]:
    """Each developer and team ceiling of the current periods (from the budget policy), once per
    scope and period, with what is left of it: `guard run`'s own figures (budgets.period_ceilings),
    each scope's spend read once however many developers share it (a team's spend is the costly
    read: every member's events in the period)."""
    import dataclasses

    from guard import budgets

    policy = budgets.as_budget_policy(policy)
    seen: set[str] = set()
    out = []
    for dev, team in people:
        new_dev = bool(policy.developer) and f"developer:{dev}" not in seen
        new_team = bool(team and policy.team) and f"team:{team}" not in seen
        if not (new_dev or new_team):
            continue
        # only the scopes not read yet: the others' limits left out of this call's policy
        only = dataclasses.replace(policy, developer=policy.developer if new_dev else {},
                                   team=policy.team if new_team else {})
        ident = budgets.Identity(developer=dev, team=team if new_team else None)
        for c in budgets.period_ceilings(ledger, ident, only, now):
            seen.add(c.scope)
            kind, _, name = c.scope.partition(":")
            out.append({"scope": kind, "name": name, "period": c.period, "ceiling": c.name,
                        "remaining_usd": round(c.remaining, 6), "limit_usd": round(c.hard_limit, 6)})
    return out


def people(ledger: SqlLedger, since: float) -> list[tuple[str, str | None]]:
    """The developers (with their team) who ran anything since `since`."""
    def q(led: SqlLedger) -> list[Any]:
        return led._execute("SELECT DISTINCT developer, team FROM runs WHERE started_at >= ?", (since,))

    return [(r[0], r[1]) for r in _routed(ledger, q, spool_ok=False)]
