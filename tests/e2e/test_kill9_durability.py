"""A `kill -9` of guard loses no event that a decision used, and at most the last 50 ms of
proxied usage: the ledger is written before guard acts on what it holds.

The 50 ms bound is the product's promise for proxied usage (batched commits may hold up to that
much); the test allows exactly it, measured from the kill, so it does not depend on how fast the
machine is.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from guard.ledger import open_ledger
from tests.fakes.anthropic_server import FakeAnthropic
from tests.helpers import guard_cmd, guard_env, runs_json, wait_until

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
LOSS_WINDOW = 0.050

# Appends $0.30 usage lines one by one; the fourth crosses a $1 ceiling.
SPENDER = textwrap.dedent("""
    import json, os, sys, time
    with open(os.environ["GUARD_USAGE_FILE"], "a") as f:
        for i in range(8):
            f.write(json.dumps({"input_tokens": 10, "output_tokens": 1, "cost_usd": 0.3, "id": f"u{i}"}) + "\\n")
            f.flush()
            time.sleep(0.3)
    time.sleep(600)
""")

# Sequential calls through the proxy; after each complete response, the wall-clock time.
CALLER = textwrap.dedent("""
    import http.client, json, os, sys, time
    from urllib.parse import urlsplit
    u = urlsplit(os.environ["ANTHROPIC_BASE_URL"])
    body = json.dumps({"model": "claude-sonnet-4-5", "max_tokens": 50,
                       "messages": [{"role": "user", "content": "hi"}]})
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=60)
    with open(sys.argv[1], "a") as log:
        while True:
            conn.request("POST", u.path + "/v1/messages", body=body,
                         headers={"content-type": "application/json", "x-api-key": "k",
                                  "anthropic-version": "2023-06-01"})
            resp = conn.getresponse()
            resp.read()
            if resp.status == 200:
                log.write(repr(time.time()) + "\\n")
                log.flush()
""")


def state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "gone"


def agent_pid(guard_pid: int) -> int:
    import psutil

    children = psutil.Process(guard_pid).children()
    return children[0].pid if children else 0


def test_a_kill_9_after_a_pause_keeps_every_event_the_pause_was_decided_on(tmp_path: Path) -> None:
    (tmp_path / "spender.py").write_text(SPENDER)
    env = guard_env(tmp_path / "home", PYTHONPATH=str(REPO))
    g = subprocess.Popen(guard_cmd("--max-usd", "1", "--on-limit", "pause", "run", "--",
                                   sys.executable, "spender.py"),
                         env=env, cwd=tmp_path, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    try:
        pid = wait_until(lambda: agent_pid(g.pid), timeout=60, message="the agent to start")
        wait_until(lambda: state(pid) in ("T", "t"), timeout=120, message="guard to pause the agent")
        g.send_signal(signal.SIGKILL)
        g.wait(timeout=30)
    finally:
        if g.poll() is None:
            g.kill()
            g.wait()
        try:
            os.kill(pid, signal.SIGKILL)
        except (OSError, UnboundLocalError):
            pass
    run = runs_json(tmp_path / "home", env)[0]
    ledger = open_ledger(None, tmp_path / "home")
    events = ledger.run_events(run["id"])
    ledger.close()
    # the pause was decided on the line that took spend past $1: the fourth at the earliest
    assert len(events) >= 4
    assert sum(cost for _ev, cost, _known in events) > 1.0
    assert run["halt"] and run["halt"]["ceiling"] == "usd"   # the decision itself is on record


def test_a_kill_9_of_a_proxied_run_loses_at_most_the_last_50_ms_of_usage(tmp_path: Path) -> None:
    (tmp_path / "caller.py").write_text(CALLER)
    done_log = tmp_path / "done.log"
    with FakeAnthropic() as fake:
        env = guard_env(tmp_path / "home", PYTHONPATH=str(REPO), ANTHROPIC_BASE_URL=fake.url,
                        ANTHROPIC_API_KEY="sk-ant-dummy")
        g = subprocess.Popen(guard_cmd("--meter", "proxy", "run", "--", sys.executable, "caller.py",
                                       str(done_log)),
                             env=env, cwd=tmp_path, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
        try:
            wait_until(lambda: done_log.exists() and done_log.read_text().count("\n") >= 40,
                       timeout=120, message="40 proxied calls")
            killed_at = time.time()
            g.send_signal(signal.SIGKILL)
            g.wait(timeout=30)
        finally:
            if g.poll() is None:
                g.kill()
                g.wait()
    done = [float(x) for x in done_log.read_text().split()]
    settled = sum(1 for t in done if t <= killed_at - LOSS_WINDOW)
    run = runs_json(tmp_path / "home", env)[0]
    ledger = open_ledger(None, tmp_path / "home")
    recorded = [ev for ev, _cost, _known in ledger.run_events(run["id"]) if ev.source == "proxy"]
    ledger.close()
    assert settled >= 30
    assert len(recorded) >= settled, (
        f"{settled} calls had completed more than 50 ms before the kill; the ledger holds {len(recorded)}")
