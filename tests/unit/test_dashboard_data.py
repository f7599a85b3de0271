"""The dashboard's reads over run_usage: /metrics totals equal the raw sums of events and keep what
`guard prune` deleted, the per-developer series equal `--by day --developer X`, the live panel's
spend and the change fingerprint follow every event write."""
from __future__ import annotations

import time
from pathlib import Path

import pytest

from guard.dashboard.data import Range, fingerprint, history_view, live_runs, metric_totals, period_budgets
from guard.history.maintenance import prune
from guard.ledger.sqlite import SqliteLedger
from guard.report.rollup import build_report, resolve_range
from guard.usage import UsageEvent
from tests.ledger_fixture import make_ledger

RAW_USAGE = (
    "SELECT r.developer, COALESCE(r.team, ''), r.tool, COALESCE(e.model, ''), SUM(e.cost_usd), "
    "SUM(e.input_tokens), SUM(e.output_tokens), SUM(e.cache_write_tokens), SUM(e.cache_read_tokens) "
    "FROM events e JOIN runs r ON r.id = e.run_id GROUP BY r.developer, r.team, r.tool, COALESCE(e.model, '')")


@pytest.fixture
def ledger(tmp_path: Path) -> SqliteLedger:
    return make_ledger(tmp_path / "ledger.db", 1500, runs=60, developers=11, running=2)


def test_metric_totals_equal_the_raw_events_and_survive_a_prune(ledger: SqliteLedger) -> None:
    raw = {(d, t, tl, m or "(unknown)"): [float(x) for x in sums]
           for d, t, tl, m, *sums in ledger._execute(RAW_USAGE)}
    got = metric_totals(ledger).usage
    assert got.keys() == raw.keys() and len(raw) > 20
    for key, sums in raw.items():
        assert got[key] == pytest.approx(sums, abs=1e-9)
    assert prune(ledger, time.time() + 1) == 1500
    assert not ledger._execute("SELECT 1 FROM events")
    after = metric_totals(ledger).usage    # counters never go down: the rollup kept the pruned calls
    assert after.keys() == raw.keys()
    for key, sums in raw.items():
        assert after[key] == pytest.approx(sums, abs=1e-9)


def test_spend_over_time_per_developer_is_the_day_report_of_each(ledger: SqliteLedger) -> None:
    now = time.time()
    view = history_view(ledger, Range(), now=now)
    lo, hi, _ = resolve_range("month", now, None)
    series = view["spend_by_developer_day"]
    assert len(series) == 9     # 8 drawn one by one and the others summed
    for dev in [g["key"] for g in view["report"]["groups"]][:8]:
        by_day = {g["key"]: g["spend_usd"] for g in build_report(ledger, lo, hi, group_by="day",
                                                                   developer=dev).groups}
        assert series[dev] == [round(by_day.get(d, 0.0), 6) for d in view["days"]]
    total = sum(g["spend_usd"] for g in view["report"]["groups"])
    assert sum(map(sum, series.values())) == pytest.approx(total, abs=1e-4)


def test_live_spend_and_the_fingerprint_follow_each_write(ledger: SqliteLedger, tmp_path: Path) -> None:
    before = {r["id"]: r for r in live_runs(ledger, tmp_path)}
    assert set(before) == {"r0000000", "r0000001"}
    assert before["r0000000"]["spend_usd"] == pytest.approx(ledger.run_totals("r0000000").cost_usd, abs=1e-6)
    assert before["r0000000"]["tokens"] == ledger.run_totals("r0000000").tokens
    fp = fingerprint(ledger)
    assert fingerprint(ledger) == fp
    # an old call re-metered with more output: its ts (and the newest ts) unchanged
    old, cost, _ = ledger.run_events("r0000000")[0]
    ledger.upsert_event("r0000000", UsageEvent(key=old.key, source=old.source, model=old.model,
                                               input_tokens=old.input_tokens, output_tokens=old.output_tokens + 50,
                                               cache_read_tokens=old.cache_read_tokens, ts=old.ts), cost + 1.0, True)
    assert fingerprint(ledger) != fp
    after = {r["id"]: r for r in live_runs(ledger, tmp_path)}
    assert after["r0000000"]["spend_usd"] == pytest.approx(before["r0000000"]["spend_usd"] + 1.0, abs=1e-6)
    assert after["r0000000"]["tokens"] == before["r0000000"]["tokens"] + 50
    fp = fingerprint(ledger)
    ledger.update_run("r0000001", status="completed", ended_at=time.time())
    assert fingerprint(ledger) != fp
    assert [r["id"] for r in live_runs(ledger, tmp_path)] == ["r0000000"]


def test_a_run_without_calls_is_live_with_nothing_spent(tmp_path: Path) -> None:
    led = make_ledger(tmp_path / "l.db", 10, runs=10, running=1)
    led._execute("DELETE FROM run_usage WHERE run_id = 'r0000000'")
    [run] = live_runs(led, tmp_path)
    assert run["spend_usd"] == 0 and run["tokens"] == 0 and run["remaining_usd"] == 5.0


def test_period_budgets_read_each_scope_once_with_guard_runs_figures(ledger: SqliteLedger,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from guard import budgets

    policy = budgets.as_budget_policy({"budgets": {"developer": {"month": 900.0, "day": 300.0},
                                                   "team": {"month": 5000.0, "week": 2000.0}}})
    now = time.time()
    people = ledger._execute("SELECT DISTINCT developer, team FROM runs ORDER BY developer")
    truth = {}
    for dev, team in people:
        for c in budgets.period_ceilings(ledger, budgets.Identity(developer=dev, team=team), policy, now):
            truth[(c.scope, c.period)] = (round(c.remaining, 6), round(c.hard_limit, 6))
    reads: list[str] = []
    real = budgets.scope_totals

    def counted(led: object, scope: str, *a: object, **kw: object) -> object:
        reads.append(scope)
        return real(led, scope, *a, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(budgets, "scope_totals", counted)
    got = period_budgets(ledger, policy, people, now)
    assert {(f"{b['scope']}:{b['name']}", b["period"]): (b["remaining_usd"], b["limit_usd"]) for b in got} == truth
    assert len(got) == len(truth) == len(reads) and len(set(reads)) * 2 == len(reads)
    assert any(b["remaining_usd"] < b["limit_usd"] for b in got)
