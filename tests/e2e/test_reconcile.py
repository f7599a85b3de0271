"""`guard reconcile` through the real anthropic SDK against a fake Admin API on 127.0.0.1."""
from __future__ import annotations

import json
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

from guard.cli_team import reconcile_cmd
from guard.ledger.records import RunRecord
from guard.ledger.sqlite import SqliteLedger
from guard.report.reconcile import ReconcileError, make_client, reconcile
from guard.usage import UsageEvent
from tests.fakes.anthropic_admin import CostEntry, FakeAdminAPI

pytestmark = pytest.mark.e2e


def utc(y: int, m: int, d: int, h: int = 12) -> float:
    return datetime(y, m, d, h, tzinfo=UTC).timestamp()


@pytest.fixture
def ledger(tmp_path: Path) -> SqliteLedger:
    led = SqliteLedger(tmp_path / "ledger.db")
    for rid, dev, day, usd in (("a1", "alice@x.io", 1, 2.0), ("a2", "alice@x.io", 2, 3.0),
                               ("b1", "Bob@x.io", 2, 1.5), ("b2", "bob@x.io", 3, 4.0)):
        led.create_run(RunRecord(id=rid, tool="claude", task="t", developer=dev, started_at=utc(2026, 3, day)))
        led.upsert_event(rid, UsageEvent(key="k", source="t", model="claude-sonnet-4-5", input_tokens=1,
                                         ts=utc(2026, 3, day)), usd, True)
    # spend on other bills: another provider's model, and Claude through a cloud
    led.create_run(RunRecord(id="a3", tool="aider", task="t", developer="alice@x.io", started_at=utc(2026, 3, 1)))
    for key, model in (("o", "gpt-4o"), ("b", "bedrock/anthropic.claude-sonnet-4-5"), ("n", None)):
        led.upsert_event("a3", UsageEvent(key=key, source="t", model=model, input_tokens=1, ts=utc(2026, 3, 1)),
                         9.0, True)
    return led


BILL = [CostEntry(date(2026, 3, 1), "alice@x.io", 2.0), CostEntry(date(2026, 3, 2), "alice@x.io", 3.0),
        CostEntry(date(2026, 3, 2), "bob@x.io", 1.5), CostEntry(date(2026, 3, 3), "bob@x.io", 4.0),
        CostEntry(date(2026, 3, 3), "carol@x.io", 7.25),       # not metered by guard
        CostEntry(date(2026, 3, 3), None, 0.5)]                 # unattributed usage


def test_matching_and_unmetered_spend_per_day_and_developer(ledger: SqliteLedger) -> None:
    with FakeAdminAPI(costs=BILL, page_size=2) as api:     # force the SDK to follow pages
        rec = reconcile(ledger, make_client(api.url, api.key), date(2026, 3, 1), date(2026, 3, 4))
        assert len(api.requests) >= 3
        q = api.requests[0].query
        assert q["group_by[]"] == ["actor"] and q["time_bucket_width"] == ["1d"]
        assert q["starting_at"] == ["2026-03-01T00:00:00Z"] and q["ending_at"] == ["2026-03-04T00:00:00Z"]
    days = {d["day"]: d for d in rec.days}
    assert days["2026-03-01"]["status"] == "ok" and days["2026-03-02"]["status"] == "ok"
    assert days["2026-03-03"]["bill_usd"] == 11.75 and days["2026-03-03"]["ledger_usd"] == 4.0
    assert days["2026-03-03"]["status"] == "under-metered"
    devs = {d["developer"]: d for d in rec.developers}
    assert devs["alice@x.io"]["status"] == "ok"
    assert devs["bob@x.io"]["ledger_usd"] == 5.5 and devs["bob@x.io"]["status"] == "ok"   # case-insensitive
    assert devs["carol@x.io"]["ledger_usd"] == 0.0 and devs["carol@x.io"]["bill_usd"] == 7.25
    assert devs["(unattributed)"]["bill_usd"] == 0.5
    assert not rec.ok and rec.totals["diff_usd"] == pytest.approx(-7.75)


def test_long_ranges_are_asked_in_31_day_slices(ledger: SqliteLedger) -> None:
    with FakeAdminAPI(costs=BILL) as api:
        rec = reconcile(ledger, make_client(api.url, api.key), date(2026, 1, 1), date(2026, 3, 4))
        starts = sorted({r.query["starting_at"][0] for r in api.requests})
    assert starts == ["2026-01-01T00:00:00Z", "2026-02-01T00:00:00Z"]   # 31 + 31 days
    assert len(rec.days) == 62
    assert rec.totals["bill_usd"] == pytest.approx(18.25)


def test_wrong_key_is_a_one_line_error(ledger: SqliteLedger) -> None:
    with FakeAdminAPI(costs=BILL) as api:
        with pytest.raises(ReconcileError, match="401") as e:
            reconcile(ledger, make_client(api.url, "sk-wrong"), date(2026, 3, 1), date(2026, 3, 2))
    assert "\n" not in str(e.value)


def test_reconcile_command(ledger: SqliteLedger, tmp_path: Path) -> None:
    with FakeAdminAPI(costs=BILL[:4]) as api:
        env = {"GUARD_HOME": str(tmp_path), "GUARD_CONFIG": "", "GUARD_POLICY": "",
               "ANTHROPIC_ADMIN_KEY": api.key, "ANTHROPIC_API_KEY": ""}
        args = ["--ledger", f"sqlite:{ledger.path}", "--since", "2026-03-01", "--until", "2026-03-03",
                "--base-url", api.url]
        r = CliRunner().invoke(reconcile_cmd, [*args, "--json", "--check"], env=env)
        assert r.exit_code == 0, r.output
        got = json.loads(r.output)
        assert got["ok"] and got["totals"]["bill_usd"] == 10.5
        r = CliRunner().invoke(reconcile_cmd, args, env={**env, "COLUMNS": "160"})
        assert r.exit_code == 0 and "per developer" in r.output and "alice@x.io" in r.output
        r = CliRunner().invoke(reconcile_cmd, args, env={**env, "ANTHROPIC_ADMIN_KEY": ""})
        assert r.exit_code == 2 and "ANTHROPIC_ADMIN_KEY" in r.output
