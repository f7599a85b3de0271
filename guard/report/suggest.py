"""`guard budget suggest`: ceilings from history, each the quantile of what runs really took plus
headroom (the p90 + 20-30% rule), with how many runs it rests on and today's exhaustion rate.

Per task or tool: per-run ceilings (max_usd, max_tokens, max_steps, max_time) over the finished
runs that started in the window. Per developer: period ceilings (budgets.developer day, week and
month), the quantile of every developer's spend per calendar period, a run counted in the period it
started in. A run halted by a ceiling shows what it was allowed, not what it wanted: the rate says
how much of the sample that is. Read from run_usage, so it costs the same at any number of events.
"""
from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import yaml

from guard.errors import ConfigError
from guard.ledger.periods import PERIODS, period_bounds, zone
from guard.ledger.reservations import _routed
from guard.ledger.sql import SqlLedger
from guard.report.rollup import BUDGET_CEILINGS, IMPORTED, UNFINISHED, percentile

BY = ("task", "tool", "developer")


@dataclass(frozen=True)
class RunSample:
    group: str
    developer: str
    started_at: float
    usd: float
    tokens: int
    steps: int
    seconds: float | None
    budget_halted: bool
    supervised: bool       # not imported: a ceiling could have stopped it


@dataclass
class Suggestion:
    group: str
    runs: int
    finished_supervised: int
    halted: int
    limits: dict[str, float]

    @property
    def exhaustion_rate(self) -> float:
        return self.halted / self.finished_supervised if self.finished_supervised else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {"group": self.group, "runs": self.runs, "finished_supervised_runs": self.finished_supervised,
                "halted_runs": self.halted, "exhaustion_rate": round(self.exhaustion_rate, 4),
                "limits": self.limits}


def fetch_samples(ledger: SqlLedger, by: str, since: float, until: float) -> list[RunSample]:
    if by not in BY:
        raise ConfigError(f"--by {by}: not one of {', '.join(BY)}")

    def q(led: SqlLedger) -> list[Any]:
        return led._execute(
            f"SELECT r.{by}, r.developer, r.started_at, r.ended_at, r.status, r.halt_ceiling, r.accuracy, "
            "COALESCE(SUM(u.cost_usd), 0), COALESCE(SUM(u.input_tokens + u.output_tokens + "
            "u.cache_write_tokens + u.cache_read_tokens), 0), COALESCE(SUM(u.steps), 0) "
            "FROM runs r LEFT JOIN run_usage u ON u.run_id = r.id "
            # by the primary key alone (the other columns depend on it): listing them made SQLite
            # sort every run in a temporary tree, half the read
            "WHERE r.started_at >= ? AND r.started_at < ? GROUP BY r.id", (since, until))

    out = []
    for g, dev, started, ended, status, ceiling, accuracy, usd, tokens, steps in _routed(ledger, q, spool_ok=False):
        if status in UNFINISHED:
            continue
        halted = status in ("halted", "refused") and (ceiling or "") in BUDGET_CEILINGS
        seconds = float(ended) - float(started) if ended is not None and status != "refused" else None
        out.append(RunSample(str(g or "(none)"), dev, float(started), float(usd), int(tokens), int(steps),
                             seconds, halted, accuracy != IMPORTED))
    return out


def _up(value: float, step: float) -> float:
    """Rounded up to a step, so a suggestion never falls below what it rests on."""
    return math.ceil(value / step - 1e-9) * step if value > 0 else 0.0


def per_run(samples: list[RunSample], quantile: float, headroom: float) -> list[Suggestion]:
    groups: dict[str, list[RunSample]] = defaultdict(list)
    for s in samples:
        groups[s.group].append(s)
    out = []
    for name, runs in sorted(groups.items()):
        # a run refused before it started says nothing of what the task takes
        spent = [r for r in runs if r.seconds is not None or r.usd or r.tokens]

        def q(values: list[float]) -> float:
            return percentile(sorted(values), quantile * 100) * (1 + headroom)

        limits: dict[str, float] = {}
        if spent:
            limits["max_usd"] = round(_up(q([r.usd for r in spent]), 0.01), 2)
            limits["max_tokens"] = int(_up(q([float(r.tokens) for r in spent]), 1000))
            limits["max_steps"] = int(_up(q([float(r.steps) for r in spent]), 1))
            timed = [r.seconds for r in spent if r.seconds is not None]
            if timed:
                limits["max_time"] = int(_up(q(timed), 60))
        out.append(Suggestion(name, len(spent), sum(r.supervised for r in runs),
                              sum(r.budget_halted and r.supervised for r in runs),
                              {k: v for k, v in limits.items() if v}))
    return out


def per_developer_period(samples: list[RunSample], quantile: float, headroom: float,
                         tz: str | None) -> Suggestion:
    z = zone(tz)
    limits: dict[str, float] = {}
    days = [(s, datetime.fromtimestamp(s.started_at, z).date()) for s in samples]
    for period in PERIODS:
        starts: dict[Any, float] = {}
        cells: dict[tuple[str, float], float] = defaultdict(float)
        for s, day in days:
            if day not in starts:
                noon = datetime(day.year, day.month, day.day, 12, tzinfo=z).timestamp()
                starts[day] = period_bounds(period, noon, z)[0]
            cells[(s.developer, starts[day])] += s.usd
        if cells:
            value = percentile(sorted(cells.values()), quantile * 100) * (1 + headroom)
            limits[period] = round(_up(value, 1.0), 2)
    supervised = [s for s in samples if s.supervised]
    return Suggestion("developer", len(samples), len(supervised),
                      sum(s.budget_halted for s in supervised), {k: v for k, v in limits.items() if v})


def _duration(seconds: float) -> str:
    minutes = int(seconds // 60)
    return f"{minutes // 60}h{minutes % 60:02d}m" if minutes >= 60 and minutes % 60 else (
        f"{minutes // 60}h" if minutes >= 60 else f"{minutes}m")


def _header(s: Suggestion) -> str:
    return (f"# {s.group}: {s.runs} runs; exhaustion rate {s.exhaustion_rate:.1%} "
            f"({s.halted} halted or refused by a ceiling / {s.finished_supervised} finished under guard)")


def to_yaml(by: str, suggestions: list[Suggestion], quantile: float, headroom: float, since: float,
            until: float, tz: str | None) -> str:
    z = zone(tz)
    window = (f"{datetime.fromtimestamp(since, z).date().isoformat()}.."
              f"{datetime.fromtimestamp(until - 1, z).date().isoformat()}")
    lines = [f"# guard budget suggest --by {by}: p{quantile * 100:g} of {window} + {headroom:.0%} headroom"]
    if by == "developer":
        s = suggestions[0]
        lines.append(_header(s))
        lines.append("# paste into a team policy or ~/.config/guard/config.yaml")
        lines.append(yaml.safe_dump({"budgets": {"developer": s.limits}}, sort_keys=False).rstrip())
        return "\n".join(lines) + "\n"
    lines.append(f"# one document per {by}: paste it into the .guard.yaml of the projects it runs in")
    for s in suggestions:
        doc: dict[str, Any] = {"task": s.group} if by == "task" else {}
        doc.update({k: _duration(v) if k == "max_time" else v for k, v in s.limits.items()})
        lines += ["---", _header(s), yaml.safe_dump(doc, sort_keys=False).rstrip() if doc else "{}"]
    return "\n".join(lines) + "\n"
