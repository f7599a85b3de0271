"""`guard report`: rollups by developer/tool/task/model/day, percentiles, exhaustion rate,
developer vs team median; JSON and CSV; the CLI command on a real SQLite ledger."""
from __future__ import annotations

import csv
import io
import json
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from click.testing import CliRunner

from guard.cli_team import report_cmd
from guard.ledger.records import Halt, RunRecord
from guard.ledger.sqlite import SqliteLedger
from guard.report import build_report, resolve_range
from guard.report.render import print_report, to_csv
from guard.report.rollup import percentile
from guard.usage import UsageEvent

TZ = "Europe/Berlin"


def ts(*a: int) -> float:
    return datetime(*a, tzinfo=ZoneInfo(TZ)).timestamp()


def add_run(led: SqliteLedger, rid: str, dev: str, tool: str, costs: list[tuple[str, float]], at: float,
            status: str = "completed", halt: str | None = None, task: str = "t") -> None:
    led.create_run(RunRecord(id=rid, tool=tool, task=task, developer=dev, team="core", status=status,
                             started_at=at, halt=Halt(halt, 1, 1, "stop") if halt else None))
    for i, (model, usd) in enumerate(costs):
        led.upsert_event(rid, UsageEvent(key=f"{rid}-{i}", source="t", model=model, input_tokens=100,
                                         output_tokens=10, ts=at + i), usd, True)


@pytest.fixture
def ledger(tmp_path: Path) -> SqliteLedger:
    led = SqliteLedger(tmp_path / "ledger.db")
    add_run(led, "a1", "alice", "claude", [("sonnet", 1.0), ("haiku", 0.5)], ts(2025, 3, 3, 10))
    add_run(led, "a2", "alice", "claude", [("sonnet", 3.0)], ts(2025, 3, 4, 10), status="halted", halt="usd")
    add_run(led, "b1", "bob", "aider", [("sonnet", 2.0)], ts(2025, 3, 4, 11))
    add_run(led, "c1", "carol", "claude", [("opus", 10.0)], ts(2025, 3, 5, 9), task="big")
    add_run(led, "c2", "carol", "claude", [], ts(2025, 3, 5, 10), status="refused", halt="developer_usd")
    add_run(led, "c3", "carol", "claude", [], ts(2025, 3, 5, 11), status="halted", halt="stuck_loop")
    add_run(led, "old", "alice", "claude", [("sonnet", 99.0)], ts(2025, 2, 28, 23, 30))   # February
    return led


def march(led: SqliteLedger, by: str) -> dict:
    lo, hi, label = resolve_range("month", ts(2025, 3, 20), TZ)
    return build_report(led, lo, hi, group_by=by, tz=TZ, label=label).as_json()


def test_by_developer_with_median_and_exhaustion(ledger: SqliteLedger) -> None:
    rep = march(ledger, "developer")
    assert rep["period"]["label"] == "2025-03"
    g = {r["key"]: r for r in rep["groups"]}
    assert [r["key"] for r in rep["groups"]] == ["carol", "alice", "bob"]   # by spend
    assert g["alice"]["spend_usd"] == 4.5 and g["alice"]["runs"] == 2
    assert g["alice"]["avg_usd"] == 2.25 and g["alice"]["p50_usd"] == 2.25 and g["alice"]["p90_usd"] == 2.85
    assert g["alice"]["exhaustion_rate"] == 0.5                 # a2 halted by `usd`
    assert g["carol"]["halted_runs"] == 1                       # refused by developer_usd; stuck_loop is not a budget
    assert rep["team_median_usd"] == 4.5
    assert g["carol"]["vs_team_median"] == pytest.approx(10 / 4.5, abs=1e-4)
    assert rep["totals"]["runs"] == 6 and rep["totals"]["spend_usd"] == 16.5
    assert rep["top_runs"][0]["id"] == "c1"


def test_by_model_tool_task_day(ledger: SqliteLedger) -> None:
    models = {r["key"]: r for r in march(ledger, "model")["groups"]}
    assert models["sonnet"]["spend_usd"] == 6.0 and models["sonnet"]["runs"] == 3
    assert models["haiku"]["runs"] == 1 and models["opus"]["spend_usd"] == 10.0
    tools = {r["key"]: r["spend_usd"] for r in march(ledger, "tool")["groups"]}
    assert tools == {"claude": 14.5, "aider": 2.0}
    assert {r["key"] for r in march(ledger, "task")["groups"]} == {"t", "big"}
    days = [r["key"] for r in march(ledger, "day")["groups"]]
    assert days == ["2025-03-03", "2025-03-04", "2025-03-05"]


def test_previous_period_and_explicit_range(ledger: SqliteLedger) -> None:
    lo, hi, label = resolve_range("month", ts(2025, 3, 20), TZ, ago=1)
    assert label == "2025-02"
    rep = build_report(ledger, lo, hi, tz=TZ).as_json()
    assert rep["totals"]["spend_usd"] == 99.0
    lo, hi, label = resolve_range(None, 0, TZ, since="2025-03-04", until="2025-03-04")
    assert build_report(ledger, lo, hi, tz=TZ).as_json()["totals"]["runs"] == 2


def test_percentile_interpolates() -> None:
    assert percentile([], 50) == 0.0
    assert percentile([1, 2, 3, 4], 50) == 2.5
    assert percentile([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 90) == pytest.approx(9.1)


def test_csv_and_table(ledger: SqliteLedger) -> None:
    lo, hi, label = resolve_range("month", ts(2025, 3, 20), TZ)
    rep = build_report(ledger, lo, hi, tz=TZ, label=label)
    rows = list(csv.DictReader(io.StringIO(to_csv(rep))))
    assert rows[0]["developer"] == "carol" and float(rows[0]["spend_usd"]) == 10.0
    buf = io.StringIO()
    print_report(rep, out=buf, width=160)
    assert "carol" in buf.getvalue() and "top-cost runs" in buf.getvalue()


def test_report_command(ledger: SqliteLedger, tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"timezone: {TZ}\n")
    env = {"GUARD_HOME": str(tmp_path), "GUARD_CONFIG": str(cfg), "GUARD_POLICY": ""}
    args = ["--ledger", f"sqlite:{ledger.path}", "--since", "2025-03-01", "--until", "2025-03-31"]
    r = CliRunner().invoke(report_cmd, [*args, "--json", "--by", "tool"], env=env)
    assert r.exit_code == 0, r.output
    assert {g["key"] for g in json.loads(r.output)["groups"]} == {"claude", "aider"}
    r = CliRunner().invoke(report_cmd, [*args, "--csv"], env=env)
    assert r.exit_code == 0 and r.output.startswith("developer,spend_usd")
    r = CliRunner().invoke(report_cmd, [*args, "--since", "March"], env=env)
    assert r.exit_code == 2 and "not a date" in r.output
