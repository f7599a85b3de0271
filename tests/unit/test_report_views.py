"""Report views added with history: per-model tokens by kind with provider prefixes folded, the
developer x day view, the exhaustion rate's formula; and `guard budget suggest`."""
from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from guard.budgets import BudgetPolicy
from guard.cli_team import budget_suggest
from guard.config import Settings, load_file
from guard.ledger.records import Halt, RunRecord
from guard.ledger.sqlite import SqliteLedger
from guard.report import build_report
from guard.report.render import print_report, to_csv
from guard.report.rollup import percentile
from guard.report.suggest import fetch_samples, per_developer_period, per_run
from guard.usage import UsageEvent

DAY = 86400.0
T0 = 1_790_000_000.0


def add(led: SqliteLedger, rid: str, *, dev: str = "alice", task: str = "t", status: str = "completed",
        halt: str | None = None, at: float = T0, secs: float = 600, accuracy: str = "exact",
        calls: tuple[tuple[str, int, int, int, int, float], ...] = ()) -> None:
    led.create_run(RunRecord(id=rid, tool="claude", task=task, developer=dev, status=status, started_at=at,
                             ended_at=None if status in ("running", "paused") else at + secs, accuracy=accuracy,
                             halt=Halt(halt, 1, 1, "stop") if halt else None))
    for i, (model, i_, o, cw, cr, usd) in enumerate(calls):
        led.upsert_event(rid, UsageEvent(key=f"{rid}:{i}", source="t", model=model, input_tokens=i_,
                                         output_tokens=o, cache_write_tokens=cw, cache_read_tokens=cr,
                                         steps=1, ts=at + i), usd, True)


@pytest.fixture
def led(tmp_path: Path) -> SqliteLedger:
    led = SqliteLedger(tmp_path / "l.db")
    add(led, "a", calls=(("gpt-4o", 100, 10, 0, 50, 1.0), ("openai/gpt-4o", 200, 20, 5, 0, 2.0),
                         ("claude-opus-4-5", 1, 2, 3, 4, 0.5)))
    add(led, "b", dev="bob", at=T0 + DAY, calls=(("anthropic/claude-opus-4-5", 10, 20, 30, 40, 4.0),))
    add(led, "c", dev="bob", at=T0 + DAY, status="halted", halt="usd", calls=(("gpt-4o", 1, 1, 1, 1, 3.0),))
    add(led, "d", dev="bob", at=T0 + DAY, status="running", calls=(("gpt-4o", 1, 1, 1, 1, 0.1),))
    add(led, "e", dev="carol", at=T0 + DAY, accuracy="imported", calls=(("gpt-4o", 1, 1, 1, 1, 0.2),))
    return led


def test_by_model_folds_prefixes_and_splits_token_kinds(led: SqliteLedger) -> None:
    rep = build_report(led, 0, T0 + 10 * DAY, group_by="model")
    g = {d["key"]: d for d in rep.as_json()["groups"]}
    assert set(g) == {"gpt-4o", "claude-opus-4-5"}
    assert (g["gpt-4o"]["input_tokens"], g["gpt-4o"]["output_tokens"], g["gpt-4o"]["cache_write_tokens"],
            g["gpt-4o"]["cache_read_tokens"]) == (303, 33, 8, 53)
    assert g["gpt-4o"]["spend_usd"] == pytest.approx(6.3) and g["gpt-4o"]["runs"] == 4
    assert g["claude-opus-4-5"]["cache_read_tokens"] == 44
    rows = {r["model"]: r for r in csv.DictReader(io.StringIO(to_csv(rep)))}
    assert rows["gpt-4o"]["output_tokens"] == "33" and rows["gpt-4o"]["input_tokens"] == "303"


def test_exhaustion_rate_is_halted_over_finished_supervised_runs(led: SqliteLedger) -> None:
    t = build_report(led, 0, T0 + 10 * DAY).as_json()["totals"]
    # a, b, c finished under guard; d is still running; e was imported
    assert t["finished_runs"] == 3 and t["halted_runs"] == 1
    assert t["exhaustion_rate"] == pytest.approx(1 / 3, abs=1e-4)
    assert "finished runs" in t["exhaustion_formula"] and t["imported_runs"] == 1


def test_developer_by_day_view(led: SqliteLedger) -> None:
    rep = build_report(led, 0, T0 + 10 * DAY, group_by="developer_day", tz="UTC")
    cells = {(d["developer"], d["day"]): d["spend_usd"] for d in rep.as_json()["groups"]}
    assert cells == {("alice", "2026-09-21"): 3.5, ("bob", "2026-09-22"): pytest.approx(7.1),
                     ("carol", "2026-09-22"): 0.2}
    rows = list(csv.DictReader(io.StringIO(to_csv(rep))))
    assert rows[0]["developer"] == "alice" and rows[0]["day"] == "2026-09-21"
    buf = io.StringIO()
    print_report(rep, out=buf, width=120)
    assert "spend by developer and day" in buf.getvalue() and "09-22" in buf.getvalue()


def _history(led: SqliteLedger, n: int = 50) -> list[float]:
    costs = [0.1 * (i + 1) for i in range(n)]
    for i, usd in enumerate(costs):
        add(led, f"s{i}", task="refactor", dev=f"dev{i % 5}", at=T0 + i * 3600, secs=60 * (i + 1),
            calls=(("claude-opus-4-5", 1000 * (i + 1), 10, 0, 0, usd),))
    add(led, "halted", task="refactor", status="halted", halt="usd", at=T0, calls=(("m", 1, 1, 0, 0, 0.05),))
    return costs


def test_suggest_per_task_is_quantile_plus_headroom(tmp_path: Path) -> None:
    led = SqliteLedger(tmp_path / "l.db")
    costs = _history(led)
    (s,) = per_run(fetch_samples(led, "task", 0, T0 + 100 * DAY), 0.9, 0.25)
    expected = percentile(sorted([*costs, 0.05]), 90) * 1.25
    assert s.limits["max_usd"] >= expected and s.limits["max_usd"] - expected < 0.01
    assert s.limits["max_steps"] == 2 and s.runs == 51
    assert s.halted == 1 and s.exhaustion_rate == pytest.approx(1 / 51)


def test_suggest_output_pastes_into_config_and_policy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    led = SqliteLedger(tmp_path / "l.db")
    _history(led)
    monkeypatch.setattr("time.time", lambda: T0 + 10 * DAY)
    env = {"GUARD_HOME": str(tmp_path), "GUARD_POLICY": "", "GUARD_CONFIG": ""}
    args = ["--ledger", f"sqlite:{led.path}", "--days", "30"]
    r = CliRunner().invoke(budget_suggest, [*args, "--by", "task"], env=env)
    assert r.exit_code == 0, r.output
    docs = [d for d in yaml.safe_load_all(r.output) if d]
    assert docs and docs[0]["task"] == "refactor" and "runs" in r.output and "exhaustion rate" in r.output
    for i, text in enumerate(r.output.split("\n---\n")[1:]):
        path = tmp_path / f"doc{i}.guard.yaml"
        path.write_text(text)
        load_file(path, Settings())                  # valid .guard.yaml: unknown keys would fail
    r = CliRunner().invoke(budget_suggest, [*args, "--by", "developer"], env=env)
    assert r.exit_code == 0, r.output
    policy = BudgetPolicy.from_config(yaml.safe_load(r.output))
    assert set(policy.developer) == {"day", "week", "month"}
    sugg = per_developer_period(fetch_samples(led, "developer", 0, T0 + 100 * DAY), 0.9, 0.25, "UTC")
    assert policy.developer == sugg.limits and sugg.limits["day"] <= sugg.limits["month"]
    r = CliRunner().invoke(budget_suggest, ["--ledger", f"sqlite:{tmp_path / 'empty.db'}"], env=env)
    assert r.exit_code == 0 and r.output.startswith("# ") and "no finished runs" in r.output


@pytest.mark.parametrize("by", ["developer", "team", "line", "tool", "task", "model", "day", "developer_day"])
def test_the_database_summed_read_equals_the_per_run_rows(led: SqliteLedger, by: str) -> None:
    """`guard report` reads runs summed by the database; the dashboard hands over fetch_runs' rows:
    every grouping, filtered or not, gives the same report both ways."""
    from guard.report.rollup import fetch_runs

    add(led, "f", dev="dan", task="other", at=T0 + 2 * DAY - 1)            # a run without calls
    add(led, "g", dev="dan", status="refused", halt="developer_usd", at=T0 + 2 * DAY,
        calls=(("gpt-4o", 5, 5, 5, 5, 0.7), ("claude-haiku-4-5", 1, 1, 1, 1, 0.01)))
    rows = fetch_runs(led, 0, T0 + 10 * DAY)
    for filters in ({}, {"developer": "bob"}, {"tool": "claude"}, {"developer": "nobody"}):
        read = build_report(led, 0, T0 + 10 * DAY, group_by=by, tz="Asia/Kathmandu", top=3, **filters).as_json()
        given = build_report(led, 0, T0 + 10 * DAY, group_by=by, tz="Asia/Kathmandu", top=3, fetched=rows,
                             **filters).as_json()
        assert read == given
        assert sum(g["runs"] for g in read["groups"]) >= read["totals"]["runs"]
