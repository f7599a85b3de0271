"""`guard dashboard` and `guard report --html` in a real headless Chromium; /metrics; the token."""
from __future__ import annotations

import json
import re
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.browser import CHARTS_JS, chromium
from tests.helpers import guard_cmd, guard_env, run_guard, wait_until
from tests.ledger_fixture import make_ledger
from tests.pgtest import pg_schema

pytestmark = pytest.mark.e2e
CHARTS = ("chart-developer-time", "chart-task-costs", "chart-exhaustion", "chart-developer-median",
          "chart-model", "chart-tool")


@pytest.fixture
def home(tmp_path: Path) -> Path:
    h = tmp_path / "home"
    make_ledger(h / "ledger.db", 3000, runs=90, developers=12, running=2).close()
    # the first running run is supervised here: its state file is fresher than the ledger
    state = h / "runs" / "r0000000" / "state.json"
    state.parent.mkdir(parents=True)
    state.write_text(json.dumps({"run_id": "r0000000", "paused": True, "updated_at": time.time(),
                                 "totals": {"cost_usd": 1234.5, "input_tokens": 10},
                                 "ceilings": [{"name": "usd", "limit": 2000.0, "used": 1234.5}]}))
    return h


@pytest.fixture
def server(home: Path) -> Iterator[str]:
    with dashboard(home) as url:
        yield url


class dashboard:  # noqa: N801 - used as a context manager, like open()
    def __init__(self, home: Path, *args: str, env: dict[str, str] | None = None) -> None:
        self.cmd = guard_cmd("dashboard", "--port", "0", "--refresh", "0.5", *args)
        self.env = env or guard_env(home)
        self.home = home

    def __enter__(self) -> str:
        self.proc = subprocess.Popen(self.cmd, env=self.env, cwd=self.home, stderr=subprocess.PIPE, text=True)
        assert self.proc.stderr is not None
        line = self.proc.stderr.readline()
        m = re.search(r"http://\S+", line)
        assert m, f"dashboard did not start: {line}{self.proc.stderr.read() if self.proc.poll() is not None else ''}"
        return m.group(0)

    def __exit__(self, *exc: Any) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)
        assert self.proc.stderr is not None
        self.proc.stderr.close()


def report_json(home: Path, *args: str) -> dict[str, Any]:
    out = run_guard(home, "report", "--json", *args)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)  # type: ignore[no-any-return]


def usd(v: float) -> str:
    return f"${v:.2f}" if v >= 0.01 or v == 0 else f"${v:.4f}"


def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, str]:
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def table(browser: Any, table_id: str) -> list[list[str]]:
    """A table's cells in one read (the live table is redrawn every few seconds)."""
    return browser.execute_script(  # type: ignore[no-any-return]
        "return [...document.querySelectorAll('#' + arguments[0] + ' tbody tr')]"
        ".map(tr => [...tr.cells].map(td => td.textContent))", table_id)


def assert_page_matches(browser: Any, home: Path, *, live: bool) -> None:
    wait_until(lambda: browser.execute_script("return window.guardReady === true"), 30, message="charts drawn")
    rep = report_json(home)
    t = rep["totals"]
    text = lambda el_id: browser.find_element("id", el_id).text  # noqa: E731
    assert text("total-spend") == usd(t["spend_usd"])
    assert text("total-runs") == str(t["runs"])
    assert text("total-developers") == str(t["developers"])
    assert text("exhaustion-rate") == f"{t['exhaustion_rate'] * 100:.1f}%"
    assert text("team-median") == usd(rep["team_median_usd"])
    devs = table(browser, "developers")
    assert devs == [[g["key"], usd(g["spend_usd"]), str(g["runs"]), str(g["halted_runs"]),
                     f"{g['vs_team_median']:.2f}x"] for g in rep["groups"]]
    top = [row[0] for row in table(browser, "top-runs")]
    assert top == [r["id"] for r in rep["top_runs"]]

    charts = browser.execute_script(CHARTS_JS)
    assert set(charts) == set(CHARTS)
    for name, c in charts.items():
        assert c["ink"] > 1000, f"{name} drew nothing"
        assert c["points"][0] > 0, f"{name} has no data"
    # 12 developers: 8 drawn one by one, the rest summed; every day adds up to the period's spend
    assert charts["chart-developer-time"]["datasets"] == 9
    assert sum(charts["chart-developer-time"]["sums"]) == pytest.approx(t["spend_usd"], abs=1e-4)
    by_model = report_json(home, "--by", "model")
    assert charts["chart-model"]["labels"] == len(by_model["groups"])
    assert charts["chart-model"]["sums"][0] == pytest.approx(by_model["totals"]["spend_usd"], abs=1e-4)
    assert charts["chart-tool"]["sums"][0] == pytest.approx(t["spend_usd"], abs=1e-4)
    by_task = report_json(home, "--by", "task")
    assert charts["chart-task-costs"]["sums"][0] == len(by_task["groups"])
    assert charts["chart-developer-median"]["sums"][0] == pytest.approx(t["spend_usd"], abs=1e-4)
    # the daily rate, with the 2% / 20% bands drawn across and in view
    assert charts["chart-exhaustion"]["plugins"] == ["guardBands"] and charts["chart-exhaustion"]["ymax"] >= 20
    by_day = {g["key"]: g["exhaustion_rate"] for g in report_json(home, "--by", "day")["groups"]}
    assert charts["chart-exhaustion"]["sums"][0] == pytest.approx(sum(by_day.values()) * 100, abs=1e-6)

    live_rows = {row[0]: row for row in table(browser, "live-runs")}
    if live:
        assert set(live_rows) == {"r0000000", "r0000001"}
        assert live_rows["r0000000"][4:] == ["paused", "$1234.50", "$2000.00", "$765.50"]
        assert live_rows["r0000001"][4] == "running" and live_rows["r0000001"][6] == "$5.00"


def test_page_shows_the_report_in_chromium(server: str, home: Path) -> None:
    with chromium() as browser:
        browser.get(server)
        assert_page_matches(browser, home, live=True)
        # going on now follows the state file and the runs table without a reload
        state = home / "runs" / "r0000000" / "state.json"
        data = json.loads(state.read_text())
        data.update(paused=False, totals={"cost_usd": 1500.25})
        state.write_text(json.dumps(data))
        from guard.ledger.sqlite import SqliteLedger

        ledger = SqliteLedger(home / "ledger.db")
        ledger.update_run("r0000001", status="completed", ended_at=time.time())
        ledger.close()
        wait_until(lambda: [(r[0], r[4], r[5]) for r in table(browser, "live-runs")]
                   == [("r0000000", "running", "$1500.25")], 60, message="the live table to follow")


def test_report_html_is_the_same_view_offline(home: Path, tmp_path: Path) -> None:
    out_file = tmp_path / "team.html"
    out = run_guard(home, "report", "--html", str(out_file))
    assert out.returncode == 0, out.stderr
    html = out_file.read_text()
    assert "<script src=" not in html and 'rel="stylesheet"' not in html
    with chromium() as browser:
        browser.get(out_file.as_uri())
        assert_page_matches(browser, home, live=True)


def test_metrics_sum_to_the_ledger_without_run_ids(server: str, home: Path) -> None:
    code, body = get(server + "metrics")
    assert code == 200
    assert "run_id" not in body and "r0000000" not in body
    series = [line for line in body.splitlines() if line and not line.startswith("#")]
    spend = sum(float(s.rsplit(" ", 1)[1]) for s in series if s.startswith("guard_spend_usd_total{"))
    everything = report_json(home, "--since", "2000-01-01", "--until", "2100-01-01")["totals"]
    assert spend == pytest.approx(everything["spend_usd"], abs=1e-3)
    tokens = sum(float(s.rsplit(" ", 1)[1]) for s in series if s.startswith("guard_tokens_total{"))
    assert tokens == everything["tokens"]
    halts = sum(float(s.rsplit(" ", 1)[1]) for s in series if s.startswith("guard_halts_total{"))
    assert halts == everything["halted_runs"] > 0
    assert any(re.match(r'guard_spend_usd_total\{developer="dev\d\d@example.com",model="[\w.-]+",'
                        r'team="team\d",tool="\w+"\}', s) for s in series)
    active = {s for s in series if s.startswith("guard_active_runs{")}
    assert sum(float(s.rsplit(" ", 1)[1]) for s in active) == 2
    assert any('status="paused"' in s for s in active)


def test_budget_remaining_from_the_policy(home: Path) -> None:
    (home / "config").mkdir(parents=True, exist_ok=True)
    cfg = home / "config" / "guard.yaml"
    cfg.write_text("budgets:\n  developer: {month: 100000}\n  team: {month: 500000}\n")
    env = guard_env(home, GUARD_CONFIG=str(cfg))
    with dashboard(home, env=env) as url:
        code, body = get(url + "metrics")
    assert code == 200, body
    rem = [line for line in body.splitlines() if line.startswith("guard_budget_remaining_usd{")]
    assert any('scope="developer"' in s and 'period="month"' in s for s in rem), body[-2000:]
    assert any('scope="team"' in s for s in rem)


def test_beyond_loopback_needs_a_token(home: Path) -> None:
    out = run_guard(home, "dashboard", "--bind", "0.0.0.0", "--port", "0", timeout=60)
    assert out.returncode == 2 and "needs a bearer token" in out.stderr
    env = guard_env(home, GUARD_DASHBOARD_TOKEN="s3cret-token")
    with dashboard(home, "--bind", "0.0.0.0", env=env) as url:
        url = url.replace("0.0.0.0", "127.0.0.1")
        assert get(url + "metrics")[0] == 401
        assert get(url + "metrics", {"Authorization": "Bearer wrong"})[0] == 401
        code, body = get(url + "metrics", {"Authorization": "Bearer s3cret-token"})
        assert code == 200 and "guard_spend_usd_total" in body
        with chromium() as browser:
            browser.get(url + "?token=s3cret-token")   # sets a cookie, then the page loads
            wait_until(lambda: browser.execute_script("return window.guardReady === true"), 30,
                       message="charts drawn behind the token")


@pytest.mark.pg
def test_dashboard_over_postgresql(tmp_path: Path) -> None:
    from guard.ledger import open_ledger
    from tests.ledger_fixture import copy_ledger

    home = tmp_path / "home"
    src = make_ledger(tmp_path / "src.db", 2000, runs=40, developers=5, running=1)
    with pg_schema() as url:
        dst = open_ledger(url, home)
        copy_ledger(src, dst)
        dst.close()
        env = guard_env(home, GUARD_LEDGER=url)
        with dashboard(home, env=env) as dash:
            code, body = get(dash + "api/view")
            assert code == 200, body
            view = json.loads(body)
            assert view["ledger"].startswith("postgresql")
            out = run_guard(home, "report", "--json", env=env)
            assert view["report"]["totals"] == json.loads(out.stdout)["totals"]
            assert len(view["live"]) == 1
            code, metrics = get(dash + "metrics")
            assert code == 200 and "guard_spend_usd_total" in metrics


def test_an_empty_ledger_draws_an_empty_page(tmp_path: Path) -> None:
    home = tmp_path / "empty"
    home.mkdir()
    out_file = tmp_path / "empty.html"
    out = run_guard(home, "report", "--html", str(out_file))
    assert out.returncode == 0, out.stderr
    with chromium() as browser:
        browser.get(out_file.as_uri())
        wait_until(lambda: browser.execute_script("return window.guardReady === true"), 30, message="page drawn")
        assert browser.find_element("id", "total-spend").text == "$0.00"
        assert browser.find_element("id", "live-empty").is_displayed()
        assert not [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
