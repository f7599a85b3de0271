"""Developer/team/line ceilings per period on a real SQLite ledger: identity, refusal and reset,
grants, budget lines, once-per-period notices (terminal, webhook, command), reservations."""
from __future__ import annotations

import json
import logging
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from guard import budgets
from guard.budgets import BudgetPolicy, Identity, period_ceilings
from guard.errors import ConfigError, Refused
from guard.governor import RunState, decide, start
from guard.governor.events import Spent
from guard.ledger.records import RunRecord
from guard.ledger.reservations import release, release_run, reserve
from guard.ledger.sqlite import SqliteLedger
from guard.supervisor import ledger_view
from guard.supervisor.effects import Effects
from guard.usage import Totals, UsageEvent

TZ = "Europe/Berlin"
BERLIN = ZoneInfo(TZ)


def ts(*a: int) -> float:
    return datetime(*a, tzinfo=BERLIN).timestamp()


NOW = ts(2025, 3, 31, 20, 0)   # the last evening of March, Berlin


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[SqliteLedger]:
    led = SqliteLedger(tmp_path / "ledger.db")
    yield led
    led.close()


def charge(led: SqliteLedger, run_id: str, usd: float, at: float, developer: str = "alice",
           team: str | None = "core", line: str | None = None, key: str = "k") -> None:
    try:
        led.create_run(RunRecord(id=run_id, tool="claude", task="t", developer=developer, team=team,
                                 line=line, started_at=at))
    except Exception:  # noqa: BLE001 -- the run exists already
        pass
    led.upsert_event(run_id, UsageEvent(key=key, source="test", input_tokens=10, ts=at), usd, True)


POLICY = BudgetPolicy.from_config({
    "timezone": TZ,
    "budgets": {"developer": {"day": 20, "month": 300}, "team": {"month": 1000},
                "lines": {"shared-infra": {"month": 50, "match": {"task": "infra-*"}}}},
})
ALICE = Identity(developer="alice", team="core")


# -- identity --------------------------------------------------------------------------------------


def test_developer_from_config_then_env_then_git_then_login(tmp_path: Path) -> None:
    assert budgets.resolve_developer({"developer": "carol"}, {"GUARD_DEVELOPER": "x"}) == ("carol", "config")
    assert budgets.resolve_developer({}, {"GUARD_DEVELOPER": "dave"}) == ("dave", "env GUARD_DEVELOPER")
    repo = tmp_path / "repo"
    repo.mkdir()
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    subprocess.run(["git", "-C", str(repo), "config", "user.email", "erin@example.com"], check=True)
    assert budgets.resolve_developer({}, {}, cwd=repo) == ("erin@example.com", "git user.email")
    name, source = budgets.resolve_developer({}, {}, cwd=tmp_path / "nowhere")
    assert source in ("login name", "git user.email") and name


def test_identity_has_team_machine_and_line(tmp_path: Path) -> None:
    ident = budgets.resolve_identity({"developer": "alice", "team": "core", **{"budgets": {
        "lines": {"shared-infra": {"month": 50}}}}}, env={}, line="shared-infra", cwd=tmp_path)
    assert (ident.developer, ident.team, ident.line) == ("alice", "core", "shared-infra")
    assert ident.machine


def test_line_selection_by_flag_rule_or_refusal(tmp_path: Path) -> None:
    assert budgets.select_line(POLICY, "shared-infra") == "shared-infra"
    assert budgets.select_line(POLICY, None, task="infra-dns", cwd=tmp_path) == "shared-infra"
    assert budgets.select_line(POLICY, None, task="feature-x", cwd=tmp_path) is None
    with pytest.raises(ConfigError, match="no such budget line"):
        budgets.select_line(POLICY, "mine")
    by_cwd = BudgetPolicy.from_config({"budgets": {"lines": {"ops": {"day": 5}},
                                                   "line_rules": [{"line": "ops", "cwd": f"{tmp_path}/ops*"}]}})
    (tmp_path / "ops-repo").mkdir()
    assert budgets.select_line(by_cwd, None, cwd=tmp_path / "ops-repo") == "ops"
    assert budgets.select_line(by_cwd, None, cwd=tmp_path) is None


# -- ceilings, refusal, reset ------------------------------------------------------------------------


def test_ceilings_per_period_with_used_and_reset(ledger: SqliteLedger) -> None:
    charge(ledger, "r1", 12.0, NOW - 3600)                       # today
    charge(ledger, "r2", 100.0, ts(2025, 3, 2, 10))              # earlier this month
    charge(ledger, "r3", 7.0, ts(2025, 2, 28, 23, 30))           # last month (Berlin)
    charge(ledger, "r4", 5.0, NOW - 60, developer="bob")         # a teammate
    cs = {(c.name, c.period): c for c in period_ceilings(ledger, ALICE, POLICY, NOW)}
    assert set(cs) == {("developer_usd", "day"), ("developer_usd", "month"), ("team_usd", "month")}
    assert cs[("developer_usd", "day")].used == 12.0
    assert cs[("developer_usd", "month")].used == 112.0
    assert cs[("team_usd", "month")].used == 117.0
    assert cs[("developer_usd", "month")].resets_at == ts(2025, 4, 1)
    assert cs[("developer_usd", "day")].remaining == 8.0


def test_refused_when_exhausted_then_admitted_after_reset(ledger: SqliteLedger) -> None:
    charge(ledger, "r1", 20.5, NOW - 600)
    with pytest.raises(Refused) as e:
        check_admission(ledger, ALICE, POLICY, NOW)
    msg = str(e.value)
    assert "developer_usd" in msg and "$20.50 of $20.00" in msg and "day" in msg
    assert "resets 2025-04-01 00:00 CEST (in 4h 0m)" in msg
    assert e.value.exit_status == 124
    # a minute after local midnight: a new day (and month), nothing used yet
    after = ts(2025, 4, 1, 0, 1)
    assert all(c.used == 0 for c in check_admission(ledger, ALICE, POLICY, after)
               if c.name == "developer_usd")


def test_grant_raises_the_current_period_only(ledger: SqliteLedger) -> None:
    charge(ledger, "r1", 20.0, NOW - 600)
    with pytest.raises(Refused):
        check_admission(ledger, ALICE, POLICY, NOW)
    budgets.grant(ledger, "developer:alice", 10.0, "lead@example.com", "release day", now=NOW - 5)
    cs = check_admission(ledger, ALICE, POLICY, NOW)
    day = next(c for c in cs if c.period == "day")
    assert (day.limit, day.base_limit, day.granted) == (30.0, 20.0, 10.0)
    rec = budgets.list_grants(ledger)
    assert rec[0]["granted_by"] == "lead@example.com" and rec[0]["reason"] == "release day"
    # tomorrow the grant is gone from the day ceiling
    tomorrow = [c for c in period_ceilings(ledger, ALICE, POLICY, ts(2025, 4, 1, 9)) if c.period == "day"]
    assert tomorrow[0].limit == 20.0
    with pytest.raises(ConfigError, match="reason"):
        budgets.grant(ledger, "developer:alice", 1.0, "lead", " ")


def test_budget_line_charges_the_line_not_the_developer(ledger: SqliteLedger) -> None:
    charge(ledger, "r1", 19.0, NOW - 600)
    charge(ledger, "infra", 45.0, NOW - 500, line="shared-infra")
    ident_line = Identity(developer="alice", team="core", line="shared-infra")
    cs = {(c.name, c.period): c for c in period_ceilings(ledger, ident_line, POLICY, NOW)}
    assert set(cs) == {("line_usd", "month"), ("team_usd", "month")}   # no developer ceiling
    assert cs[("line_usd", "month")].used == 45.0
    assert cs[("team_usd", "month")].used == 64.0                        # the team pays for both
    dev = {(c.name, c.period): c for c in period_ceilings(ledger, ALICE, POLICY, NOW)}
    assert dev[("developer_usd", "day")].used == 19.0                    # the line run is not hers
    charge(ledger, "infra", 6.0, NOW - 400, line="shared-infra", key="k2")
    with pytest.raises(Refused, match="line_usd"):
        check_admission(ledger, ident_line, POLICY, NOW)
    check_admission(ledger, ALICE, POLICY, NOW)


def test_a_run_sees_what_others_spent_and_adds_its_own(ledger: SqliteLedger) -> None:
    charge(ledger, "old", 15.0, NOW - 900)
    charge(ledger, "me", 3.0, NOW - 10)
    day = next(b for b in ledger_view.read(ledger, ALICE, POLICY, "me", NOW) if b.period == "day")
    assert day.others == 15.0                      # the run's own 3 is the decision core's to add
    s = RunState(limits={}, started_at=NOW, budgets=(day,))
    s, out = decide(s, Spent(Totals(cost_usd=4.0)), NOW)
    assert s.halt is None and [c.used for c in s.ceilings(NOW)] == [19.0]
    s, out = decide(s, Spent(Totals(cost_usd=5.5)), NOW + 1)
    assert s.halt is not None and s.halt.ceiling == "developer_usd"


# -- notices ---------------------------------------------------------------------------------------------


class Hook:
    def __init__(self, status: int = 200) -> None:
        self.bodies: list[dict[str, Any]] = []
        hook = self

        class H(BaseHTTPRequestHandler):
            def log_message(self, *a: Any) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802
                n = int(self.headers.get("Content-Length", 0))
                hook.bodies.append(json.loads(self.rfile.read(n)))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def check_admission(ledger: SqliteLedger, ident: Identity, policy: object, now: float) -> list[budgets.Ceiling]:
    """What a run's start decides about the shared budgets: the ledger's figures, the core's rule."""
    state = RunState(limits={}, started_at=now, budgets=ledger_view.read(ledger, ident, policy, "new-run", now))
    halt = start.refusal(state, now, None, {})
    if halt is not None:
        raise Refused(halt.message)
    return period_ceilings(ledger, ident, policy, now)


def notify_soft(ledger: SqliteLedger, notify: dict[str, object], now: float) -> list[str]:
    """The soft notices a run decides at `now`, carried out as the run loop does."""
    shown: list[str] = []
    state = RunState(limits={}, started_at=now, budgets=ledger_view.read(ledger, ALICE, POLICY, "me", now))
    _, actions = decide(state, Spent(Totals()), now)
    fx = Effects("me", "t", "alice", ledger, None, Path("/nonexistent/state.json"), False,  # type: ignore[arg-type]
                 shown.append, lambda text: None, notify, ALICE)
    for a in actions:
        fx.do(a)
    return shown


def test_soft_notice_once_per_threshold_per_period_across_runs(ledger: SqliteLedger, tmp_path: Path) -> None:
    hook = Hook()
    out_file = tmp_path / "cmd.json"
    notify = {"webhook": hook.url,
              "command": [sys.executable, "-c", f"import sys; open({str(out_file)!r}, 'a').write(sys.stdin.read() + '\\n')"]}
    try:
        charge(ledger, "r1", 16.0, NOW - 600)                  # 80% of the day's 20
        sent = notify_soft(ledger, notify, NOW)
        assert len(sent) == 1 and "warning: 80% of the $20.00 developer ceiling ($16.00 spent this day)" in sent[0]
        assert hook.bodies[0]["scope"] == "developer:alice" and hook.bodies[0]["threshold"] == 0.75
        assert json.loads(out_file.read_text().splitlines()[0])["period"] == "day"
        # another run, another process (a second connection to the same ledger): no repeat
        other = SqliteLedger(ledger.path)
        again = notify_soft(other, notify, NOW + 60)
        assert again == [] and len(hook.bodies) == 1
        # next day: a new period, a new notice
        charge(ledger, "r2", 16.0, ts(2025, 4, 1, 9))
        nxt = notify_soft(other, notify, ts(2025, 4, 1, 10))
        assert len(nxt) == 1 and len(hook.bodies) == 2
        other.close()
    finally:
        hook.close()


def test_failing_webhook_is_logged_not_fatal(ledger: SqliteLedger, caplog: pytest.LogCaptureFixture) -> None:
    hook = Hook(status=500)
    try:
        charge(ledger, "r1", 16.0, NOW - 600)
        with caplog.at_level(logging.WARNING, logger="guard.budgets"):
            sent = notify_soft(ledger, {"webhook": hook.url, "command": "/nonexistent/notify-me"}, NOW)
        assert len(sent) == 1
        assert "webhook" in caplog.text and "notify command" in caplog.text
    finally:
        hook.close()


# -- reservations on SQLite ----------------------------------------------------------------------------------


def test_reservations_count_in_flight_spend(ledger: SqliteLedger) -> None:
    charge(ledger, "r1", 15.0, NOW - 600)
    day = next(c for c in period_ceilings(ledger, ALICE, POLICY, NOW) if c.period == "day")
    rid = reserve(ledger, [day], 4.0, "r2", now=NOW)
    with pytest.raises(Refused, match="in flight"):
        reserve(ledger, [day], 2.0, "r3", now=NOW)
    # a new run is refused while others hold the rest of the ceiling
    seen = next(c for c in period_ceilings(ledger, ALICE, POLICY, NOW) if c.period == "day")
    assert seen.reserved == 4.0 and seen.committed == 19.0
    release(ledger, rid)
    rid2 = reserve(ledger, [day], 2.0, "r3", now=NOW)
    release_run(ledger, "r3")
    assert ledger._execute("SELECT COUNT(*) FROM reservations WHERE id = ?", (rid2,))[0][0] == 0
    # a crashed guard's reservation expires
    reserve(ledger, [day], 5.0, "r4", now=NOW, ttl=30)
    reserve(ledger, [day], 5.0, "r5", now=NOW + 31)


def test_settings_with_a_team_policy_file(ledger: SqliteLedger, tmp_path: Path) -> None:
    from guard.config import Settings

    team = tmp_path / "team.yaml"
    team.write_text("timezone: Europe/Berlin\nbudgets:\n  developer: {day: 10}\n")
    s = Settings()
    s.set("budgets", {"developer": {"day": 50, "month": 100}}, "test")
    s.set("policy", str(team), "test")
    charge(ledger, "r1", 10.0, NOW - 60)
    with pytest.raises(Refused, match=r"\$10.00 of \$10.00"):   # the policy's 10, not the config's 50
        check_admission(ledger, budgets.Identity("alice", "core"), s, NOW)
    with pytest.raises(ConfigError, match="no such budget line"):
        period_ceilings(ledger, ALICE, s, NOW, line="nope")
