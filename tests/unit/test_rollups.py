"""run_usage, the rollup reports read: equal to the raw sums of events however events were
written (one by one, in batches, replayed, grown by max-merge, their model learned late), filled
from existing events by the migration, kept through `guard prune`."""
from __future__ import annotations

import io
import json
import sqlite3
from pathlib import Path

from guard.history.maintenance import export, prune
from guard.ledger.records import RunRecord
from guard.ledger.sqlite import SqliteLedger
from guard.report import build_report
from guard.usage import UsageEvent
from tests.rollup_check import random_writes, rollup_vs_raw


def test_rollup_equals_raw_sums_after_replays_and_merges(tmp_path: Path) -> None:
    led = SqliteLedger(tmp_path / "l.db")
    writes = random_writes(1, ["r1", "r2", "r3"], 600)
    for w in writes[:300]:
        led.upsert_event(*w)
    led.upsert_events(writes[300:])
    led.upsert_events(writes[:300])      # the whole first half replayed, as a spool sync would
    rolled, raw = rollup_vs_raw(led)
    assert rolled == raw and len(raw) >= 6


def test_a_rolled_back_write_leaves_the_rollup_alone(tmp_path: Path) -> None:
    led = SqliteLedger(tmp_path / "l.db")
    led.upsert_event("r1", UsageEvent(key="a", source="t", model="m", input_tokens=5), 1.0, True)
    try:
        with led.transaction():
            led.upsert_event("r1", UsageEvent(key="b", source="t", model="m", input_tokens=7), 2.0, True)
            raise RuntimeError("crash mid-transaction")
    except RuntimeError:
        pass
    rolled, raw = rollup_vs_raw(led)
    assert rolled == raw and rolled[("r1", "m")][0] == 5


def test_migration_fills_the_rollup_from_existing_events(tmp_path: Path) -> None:
    path = tmp_path / "l.db"
    led = SqliteLedger(path)
    for w in random_writes(2, ["r1", "r2"], 100):
        led.upsert_event(*w)
    led.close()
    # an older ledger: the same events, no rollup yet
    conn = sqlite3.connect(path)
    conn.execute("DROP TABLE run_usage")
    conn.execute("DROP TABLE import_cursors")
    conn.execute("DROP INDEX events_key")
    conn.execute("DELETE FROM schema_version WHERE version = 4")
    conn.commit()
    conn.close()
    rolled, raw = rollup_vs_raw(SqliteLedger(path))
    assert rolled == raw and raw


def test_prune_drops_events_and_keeps_report_figures(tmp_path: Path) -> None:
    led = SqliteLedger(tmp_path / "l.db")
    led.create_run(RunRecord(id="r1", tool="claude", task="t", developer="alice", status="completed",
                             started_at=1000.0, ended_at=2000.0))
    for i in range(10):
        led.upsert_event("r1", UsageEvent(key=f"k{i}", source="t", model="openai/gpt-4o", input_tokens=100,
                                          output_tokens=10, ts=1000.0 + i * 100), 0.25, True)
    before = build_report(led, 0, 10_000, group_by="model").as_json()
    buf = io.StringIO()
    assert export(led, buf, "jsonl") == 10
    assert json.loads(buf.getvalue().splitlines()[0])["developer"] == "alice"
    assert prune(led, 1500.0, dry_run=True) == 5 and led._execute("SELECT COUNT(*) FROM events")[0][0] == 10
    assert prune(led, 1500.0) == 5
    assert led._execute("SELECT COUNT(*) FROM events")[0][0] == 5
    assert build_report(led, 0, 10_000, group_by="model").as_json()["groups"] == before["groups"]
    csv_out = io.StringIO()
    assert export(led, csv_out, "csv", since=1500.0) == 5
    assert csv_out.getvalue().splitlines()[0].startswith("run_id,key,ts,developer")
