"""Dashboard figures, each beside a direct baseline measured interleaved in the same run:

  1. first paint over a 1M-event ledger in headless Chromium, charts drawn with data (the page's own
     `guard-charts-drawn` mark, from navigation start), beside the same page over a 1k-event ledger;
     target <= 1 s;
  2. a /metrics scrape at 1M events, beside /healthz on the same server (the HTTP round trip);
     target <= 50 ms;
  3. (1) and (2) again while a run writes an event every 0.2 s, on until the page has shown three
     snapshots (the server recomputes its snapshot in the background meanwhile);
  4. the git capture at run start (guard.outcomes.capture_start), beside spawning git for the same
     facts, and the first capture in a fresh process that has loaded what `guard run` loads;
     target <= 20 ms.

Also printed: how long the dashboard's snapshot (every report of the period, the ledger-wide
counters, the budgets) takes to compute at 1M and at 1k events; the server computes it before it
listens and then in the background when the ledger changes, so a page load or a scrape never waits
on it.

    python3 bench/dashboard_bench.py [--events 1000000] [--rounds 7] [--load]

--load keeps every core busy with busy loops of the bench's own while it measures.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from _common import REPO, bench_env, pct
from _load import busy_cores

sys.path.insert(0, str(REPO))
from guard.budgets import as_budget_policy  # noqa: E402
from guard.dashboard.data import Range  # noqa: E402
from guard.dashboard.server import Snapshots  # noqa: E402
from guard.ledger.sqlite import SqliteLedger  # noqa: E402
from guard.outcomes import capture_start  # noqa: E402
from guard.usage import UsageEvent  # noqa: E402
from tests.browser import CHARTS_JS, chromium  # noqa: E402
from tests.ledger_fixture import make_ledger  # noqa: E402

SMALL = 1000          # events in the baseline ledger
SMALL_RUNS = 200      # enough for some halts: the exhaustion chart has data too
# a team's budgets: /metrics then has the remaining budget of every developer and team
POLICY = {"budgets": {"developer": {"day": 2000, "week": 8000, "month": 30000},
                      "team": {"week": 50000, "month": 200000}}}
DEADLINE = 300        # seconds a page or a dashboard may take before the bench gives up on it


def loadavg() -> str:
    return "/".join(f"{x:.1f}" for x in os.getloadavg())


@contextmanager
def dashboard(env: dict[str, str], home: Path) -> Iterator[tuple[str, float]]:
    """A `guard dashboard` on a free port: its URL, and the seconds it took to listen (the first
    snapshot is computed before)."""
    t = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "guard", "dashboard", "--port", "0", "--refresh", "0.5"],
                            env={**env, "PYTHONPATH": str(REPO)}, stderr=subprocess.PIPE, text=True, cwd=home)
    stderr = proc.stderr
    assert stderr is not None
    line: list[str] = []
    reader = threading.Thread(target=lambda: line.append(stderr.readline()), daemon=True)
    reader.start()
    reader.join(DEADLINE)
    try:
        m = re.search(r"http://\S+", line[0] if line else "")
        if not m:
            raise SystemExit(f"bench: the dashboard over {home} did not start: {line[0] if line else 'timed out'}")
        yield m.group(0), time.perf_counter() - t
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def paint_once(browser: Any, url: str) -> tuple[float, str]:
    """Seconds from navigation start to the charts drawn, and which snapshot the page showed."""
    browser.get("about:blank")
    browser.get(url)
    deadline = time.monotonic() + DEADLINE
    while not browser.execute_script("return window.guardReady === true"):
        if time.monotonic() > deadline:
            raise SystemExit(f"bench: {url} did not draw its charts within {DEADLINE} s")
        time.sleep(0.01)
    charts = browser.execute_script(CHARTS_JS)
    drawn = {k: c["ink"] > 1000 and c["points"][0] > 0 for k, c in charts.items()}
    if len(drawn) != 6 or not all(drawn.values()):
        raise SystemExit(f"bench: {url}: charts without data: {drawn}")
    seconds = float(browser.execute_script(
        "return performance.getEntriesByName('guard-charts-drawn')[0].startTime")) / 1000
    return seconds, browser.find_element("id", "generated").text


@dataclass
class Phase:
    paint_big: list[float] = field(default_factory=list)
    paint_small: list[float] = field(default_factory=list)
    metrics: list[float] = field(default_factory=list)
    health: list[float] = field(default_factory=list)
    snapshots: set[str] = field(default_factory=set)   # the snapshots the big page showed
    body: bytes = b""


def measure(browser: Any, big: str, small: str, rounds: int, snapshots: int = 1) -> Phase:
    """Rounds of: a page load of each dashboard, then scrapes of /metrics and /healthz, in turn
    (the machine's load hits both sides alike); at least `rounds` of them, and on until the big
    page has shown `snapshots` different snapshots (the snapshot recomputed in between)."""
    paint_once(browser, big)      # warm-up: the browser's cache holds the chart library for both
    paint_once(browser, small)
    ph = Phase()
    deadline = time.monotonic() + DEADLINE
    while len(ph.paint_big) < rounds or (len(ph.snapshots) < snapshots and time.monotonic() < deadline):
        seconds, shown = paint_once(browser, big)
        ph.paint_big.append(seconds)
        ph.snapshots.add(shown)
        ph.paint_small.append(paint_once(browser, small)[0])
        for _ in range(5):
            dt, ph.body = fetch(big + "metrics")
            if b"guard_spend_usd_total" not in ph.body or b"guard_budget_remaining_usd{" not in ph.body:
                raise SystemExit("bench: /metrics lacks guard_spend_usd_total or guard_budget_remaining_usd")
            ph.metrics.append(dt)
            ph.health.append(fetch(big + "healthz")[0])
    return ph


def fetch(url: str) -> tuple[float, bytes]:
    t = time.perf_counter()
    with urllib.request.urlopen(url, timeout=DEADLINE) as r:
        body = r.read()
    return time.perf_counter() - t, body


def snapshot_costs(big: Path, small: Path, rounds: int) -> tuple[list[float], list[float]]:
    """The dashboard's snapshot computed in this process, over each ledger in turn."""
    out: tuple[list[float], list[float]] = ([], [])
    ledgers = [SqliteLedger(big), SqliteLedger(small)]
    try:
        snaps = [Snapshots(led, Range(), as_budget_policy(POLICY), 5.0) for led in ledgers]
        for _ in range(rounds):
            for snap, costs in zip(snaps, out, strict=True):
                t = time.perf_counter()
                snap.compute()
                costs.append(time.perf_counter() - t)
    finally:
        for led in ledgers:
            led.close()
    return out


@contextmanager
def writing(db: Path) -> Iterator[None]:
    """A run spending meanwhile: one event every 0.2 s into the first running run."""
    stop = threading.Event()

    def write() -> None:
        ledger = SqliteLedger(db)
        n = 0
        while not stop.wait(0.2):
            n += 1
            ledger.upsert_event("r0000000", UsageEvent(key=f"live-{n}", source="bench", model="claude-sonnet-4-5",
                                                       input_tokens=100, ts=time.time()), 0.01, True)
        ledger.close()

    t = threading.Thread(target=write, daemon=True)
    t.start()
    try:
        yield
    finally:
        stop.set()
        t.join(timeout=60)


def git_capture(rounds: int) -> tuple[list[float], list[float], list[float]]:
    repo = Path(tempfile.mkdtemp(prefix="guard-bench-git-"))
    env = {"GIT_AUTHOR_NAME": "b", "GIT_AUTHOR_EMAIL": "b@e", "GIT_COMMITTER_NAME": "b",
           "GIT_COMMITTER_EMAIL": "b@e", "HOME": str(repo), "PATH": "/usr/bin:/bin"}
    try:
        for cmd in (["init", "-q", "-b", "main"], ["commit", "-q", "--allow-empty", "-m", "x"],
                    ["remote", "add", "origin", "https://u:t@example.com/o/r.git"], ["pack-refs", "--all"]):
            subprocess.run(["git", "-C", str(repo), *cmd], check=True, env=env, capture_output=True)
        ours, spawned = [], []
        for _ in range(rounds):  # interleaved: the machine's load hits both alike
            t = time.perf_counter()
            capture_start(repo)
            ours.append(time.perf_counter() - t)
            t = time.perf_counter()
            subprocess.run(["git", "-C", str(repo), "rev-parse", "--abbrev-ref", "HEAD", "HEAD"], capture_output=True)
            subprocess.run(["git", "-C", str(repo), "remote", "get-url", "origin"], capture_output=True)
            spawned.append(time.perf_counter() - t)
        # a fresh process that has imported what `guard run` imports before it starts the agent: the
        # capture's first call there (its lazy imports, cold caches) is the cost at run start; the
        # module's own import is in the start-up figure (bench/startup.py)
        probe = ("import time, guard.supervisor.run; from guard.outcomes import capture_start; "
                 f"t = time.perf_counter(); capture_start({str(repo)!r}); print(time.perf_counter() - t)")
        cold = []
        for _ in range(10):
            out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=DEADLINE,
                                 env={**env, "PYTHONPATH": str(REPO)})
            if out.returncode != 0:
                raise SystemExit(f"bench: the fresh-process probe failed: {out.stderr.strip()[-500:]}")
            cold.append(float(out.stdout))
        return ours, spawned, cold
    finally:
        shutil.rmtree(repo, ignore_errors=True)


def verdict(value: float, target: float, unit: str) -> str:
    return f"target <= {target:g} {unit}: {'met' if value <= target else 'MISSED'}"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--load", action="store_true", help="keep every core busy while measuring")
    args = ap.parse_args()
    big_env, small_env = bench_env(), bench_env()
    big_home, small_home = Path(big_env["GUARD_HOME"]), Path(small_env["GUARD_HOME"])
    for env, home in ((big_env, big_home), (small_env, small_home)):
        (home / "config").mkdir(parents=True, exist_ok=True)
        (home / "config" / "guard.yaml").write_text(json.dumps(POLICY))  # JSON is YAML
        env["GUARD_CONFIG"] = str(home / "config" / "guard.yaml")
    cores = os.cpu_count() or 2
    try:
        t = time.perf_counter()
        make_ledger(big_home / "ledger.db", args.events).close()
        made = time.perf_counter() - t
        make_ledger(small_home / "ledger.db", SMALL, runs=SMALL_RUNS).close()
        shape = SqliteLedger(big_home / "ledger.db")
        runs, rolled = (int(shape._execute(q)[0][0]) for q in ("SELECT COUNT(*) FROM runs",
                                                              "SELECT COUNT(*) FROM run_usage"))
        shape.close()
        print(f"conditions: SQLite ledger of {args.events:,} events in {runs:,} runs ({rolled:,} run_usage rows), "
              f"40 developers in 5 teams, 4 models, 3 tools, 4 runs going on; developer and team budgets "
              f"(day/week/month); "
              f"baseline ledger of {SMALL:,} events in {SMALL_RUNS} runs; "
              f"{cores} cores, {'one busy loop per core added' if args.load else 'no load added'}, "
              f"load average {loadavg()}; medians of {args.rounds} interleaved rounds")
        print(f"ledger written in {made:.1f} s")
        with ExitStack() as stack:
            stack.enter_context(busy_cores(cores) if args.load else nullcontext())
            snap_big, snap_small = snapshot_costs(big_home / "ledger.db", small_home / "ledger.db", 3)
            print(f"snapshot compute (every report of the month, /metrics counters, remaining budgets): {args.events:,} events "
                  f"median {pct(snap_big, 50):.2f} s, {SMALL:,} events median {pct(snap_small, 50) * 1000:.0f} ms "
                  f"(ratio {pct(snap_big, 50) / pct(snap_small, 50):.0f}x); no target: computed off the request path")
            big, started = stack.enter_context(dashboard(big_env, big_home))
            small, _ = stack.enter_context(dashboard(small_env, small_home))
            print(f"dashboard start to listening over {args.events:,} events (first snapshot included): "
                  f"{started:.2f} s")
            browser = stack.enter_context(chromium())
            print(f"browser: Chromium {browser.capabilities.get('browserVersion', '?')}, headless, "
                  f"{'x'.join(map(str, browser.get_window_size().values()))} window")
            for label, during, snapshots in (
                    ("idle ledger", nullcontext(), 1),
                    ("while a run writes an event every 0.2 s", writing(big_home / "ledger.db"), 3)):
                with during:
                    ph = measure(browser, big, small, args.rounds, snapshots)
                a, b, m, h = ph.paint_big, ph.paint_small, ph.metrics, ph.health
                print(f"[{label}: {len(a)} rounds, {len(ph.snapshots)} snapshots shown]")
                print(f"  first paint, charts drawn with data: {args.events:,} events median {pct(a, 50):.3f} s, "
                      f"max {max(a):.3f} s; {SMALL:,} events median {pct(b, 50):.3f} s; "
                      f"ratio {pct(a, 50) / pct(b, 50):.2f}x ({verdict(pct(a, 50), 1, 's')})")
                series = sum(1 for line in ph.body.splitlines() if line and not line.startswith(b"#"))
                print(f"  /metrics scrape at {args.events:,} events ({series:,} series, {len(ph.body) / 1e3:.0f} kB): "
                      f"median {pct(m, 50) * 1000:.1f} ms, p90 {pct(m, 90) * 1000:.1f} ms; /healthz median "
                      f"{pct(h, 50) * 1000:.1f} ms; ratio {pct(m, 50) / pct(h, 50):.1f}x "
                      f"({verdict(pct(m, 50) * 1000, 50, 'ms')})")
            ours, spawned, cold = git_capture(200)
        print(f"git capture at run start: median {pct(ours, 50) * 1000:.2f} ms, p90 {pct(ours, 90) * 1000:.2f} ms; "
              f"spawning git for the same: median {pct(spawned, 50) * 1000:.2f} ms (ratio "
              f"{pct(ours, 50) / pct(spawned, 50):.2f}x); first capture in a fresh process with guard run's modules "
              f"loaded: median {pct(cold, 50) * 1000:.2f} ms, max {max(cold) * 1000:.2f} ms "
              f"({verdict(max(cold) * 1000, 20, 'ms')})")
        print(f"load average at the end: {loadavg()}")
    finally:
        shutil.rmtree(big_home, ignore_errors=True)
        shutil.rmtree(small_home, ignore_errors=True)


if __name__ == "__main__":
    main()
