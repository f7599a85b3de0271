"""The rollups and `guard import` on PostgreSQL: run_usage equals the raw sums after writes
spooled while the server was gone, replayed (some twice) and max-merged; an import needs the
shared ledger and never lands in one machine's spool."""
from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from guard.budgets import Identity
from guard.errors import LedgerError
from guard.history.claude import ClaudeHistory
from guard.history.importer import import_history
from guard.history.pricing import BulkPricer
from guard.ledger.postgres import PostgresLedger, _encode
from guard.ledger.records import RunRecord
from guard.pricing import Pricer
from guard.report import build_report
from guard.report.rollup import GROUPS, fetch_runs
from guard.report.suggest import fetch_samples
from tests.e2e.test_postgres_ledger import Relay, relay, relayed, wait_until  # noqa: F401
from tests.pgtest import pg_schema
from tests.rollup_check import random_writes, rollup_vs_raw
from tests.transcripts import write_tree

pytestmark = [pytest.mark.e2e, pytest.mark.pg]


@pytest.fixture
def pg_url() -> Iterator[str]:
    with pg_schema() as url:
        yield url


def test_rollup_equals_raw_sums_after_spool_replays(pg_url: str, relay: Relay, tmp_path: Path) -> None:  # noqa: F811
    led = PostgresLedger(relayed(pg_url, relay), tmp_path, retry_seconds=0.2, offline="open")
    runs = ["r1", "r2", "r3"]
    for r in runs:
        led.create_run(RunRecord(id=r, tool="claude", task="t", developer="alice", started_at=time.time()))
    writes = random_writes(7, runs, 450)
    for w in writes[:150]:
        led.upsert_event(*w)
    relay.cut()
    for w in writes[150:300]:            # spooled: growth of online keys, replays, new keys
        led.upsert_event(*w)
    assert not led.online and led.spooled() >= 150
    # a write that reached the server before the link died is in the spool too: replayed twice
    with led.spool.transaction():
        for w in writes[:20]:
            led.spool._execute("INSERT INTO spool_ops (op, args, ts) VALUES (?, ?, ?)",
                               ("upsert_event", json.dumps(_encode("upsert_event", w, {})), time.time()))
    relay.restore()
    wait_until(lambda: led.sync() >= 0 and led.online and led.spooled() == 0, what="spool synced")
    for w in writes[300:]:
        led.upsert_event(*w)
    rolled, raw = rollup_vs_raw(led)
    assert rolled == raw and len(raw) >= 6
    led.close()


def test_import_into_postgres_and_refused_offline(pg_url: str, relay: Relay, tmp_path: Path) -> None:  # noqa: F811
    truth = write_tree(tmp_path / "claude", 300_000, seed=21)
    led = PostgresLedger(relayed(pg_url, relay), tmp_path, retry_seconds=60, offline="open")
    ident = Identity(developer="alice", team="core")
    result = import_history(led, [(ClaudeHistory(), [tmp_path / "claude"])], ident, BulkPricer(Pricer()))
    assert result.sources["claude"].new == len(truth)
    rep = build_report(led, 0, time.time() + 86400, group_by="developer").as_json()
    assert rep["totals"]["spend_usd"] == pytest.approx(result.usd, abs=1e-6)
    assert rep["totals"]["imported_runs"] == rep["totals"]["runs"] > 0
    # every grouping's read, and suggest's, in PostgreSQL's SQL: the same totals as from fetch_runs' rows
    rows = fetch_runs(led, 0, time.time() + 86400)
    for by in GROUPS:
        read = build_report(led, 0, time.time() + 86400, group_by=by).as_json()
        given = build_report(led, 0, time.time() + 86400, group_by=by, fetched=rows).as_json()
        assert read["groups"] == given["groups"]
        assert sum(g["spend_usd"] for g in read["groups"]) == pytest.approx(result.usd, abs=1e-4)
    for by in ("task", "tool", "developer"):
        samples = fetch_samples(led, by, 0, time.time() + 86400)
        assert len(samples) == rep["totals"]["runs"] and sum(s.usd for s in samples) == pytest.approx(result.usd)
    relay.cut()
    with pytest.raises(LedgerError, match="unreachable"):
        import_history(led, [(ClaudeHistory(), [tmp_path / "claude"])], ident, BulkPricer(Pricer()))
    assert led.spooled() == 0
    led.close()
