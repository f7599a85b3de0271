"""PostgreSQL taken away for real (a private cluster stopped with pg_ctl) while guards run on it.

The agent is never killed, a run started during the outage works, a halt during the outage is kept,
and once the server is back the ledger holds exactly what the agents wrote, each event once.
"""
from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from tests.helpers import SPENDER, guard_cmd, guard_env, run_guard, wait_until
from tests.pgcluster import Cluster, private_cluster

pytestmark = [pytest.mark.e2e, pytest.mark.pg]


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    with private_cluster() as c:
        yield c


def _db(url: str, sql: str) -> list[tuple[object, ...]]:
    with psycopg.connect(url, connect_timeout=5) as conn:
        return conn.execute(sql).fetchall()


def _count(url: str, sql: str) -> int:
    try:
        return int(_db(url, sql)[0][0])  # type: ignore[call-overload]
    except psycopg.Error:
        return -1


def test_outage_mid_run_loses_nothing_and_kills_nothing(cluster: Cluster, home: Path, tag: str) -> None:
    cfg = home / "guard.yaml"
    # a developer ceiling makes every tick read shared spend: the offline path is exercised
    cfg.write_text(f"ledger: {cluster.url}\nbudgets:\n  developer: {{day: 100}}\n")
    env = guard_env(home, GUARD_CONFIG=str(cfg), GUARD_LEDGER_RETRY="0.3")
    agent = ["python3", SPENDER, "--ids", "--cost", "0.01", "--tag", tag]
    long = subprocess.Popen(guard_cmd("--task", "long", "run", "--", *agent, "--lines", "40", "--rate", "6"),
                            env=env, cwd=home, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_until(lambda: _count(cluster.url, "SELECT COUNT(*) FROM events") >= 5, timeout=60,
                   message="the first events on the server")
        cluster.stop()

        during = run_guard(home, "--task", "during", "run", "--", *agent, "--lines", "5", env=env)
        assert during.returncode == 0, during.stderr
        halted = run_guard(home, "--task", "halted", "--max-usd", "0.03", "run", "--", *agent,
                           "--lines", "20", "--rate", "20", env=env)
        assert halted.returncode == 124, halted.stderr
        status = run_guard(home, "status", env=env)
        assert status.returncode == 0, status.stderr
        pending = int(status.stdout.rsplit(" events not yet synced", 1)[0].rsplit(" ", 1)[1])
        assert pending >= 5 + 3

        cluster.start()
        out, err = long.communicate(timeout=120)
    finally:
        if long.poll() is None:
            long.kill()
            long.communicate()
    assert long.returncode == 0, err
    assert "agent call 39" in out

    # the next guard command syncs whatever is left
    wait_until(lambda: run_guard(home, "status", env=env).stdout.endswith(": 0 events not yet synced\n"),
               timeout=60, message="spool synced")
    rows = dict(_db(cluster.url, "SELECT r.task, COUNT(e.key) FROM runs r LEFT JOIN events e "
                                 "ON e.run_id = r.id GROUP BY r.task"))
    halted_calls = rows.pop("halted")
    assert rows == {"long": 40, "during": 5}
    assert 3 <= halted_calls <= 20   # what it wrote before the kill (each counted once, by key)
    runs = dict(_db(cluster.url, "SELECT task, status FROM runs"))
    assert runs == {"long": "completed", "during": "completed", "halted": "halted"}
    halt = _db(cluster.url, "SELECT halt_ceiling FROM runs WHERE task = 'halted'")[0][0]
    assert halt == "usd"
    spent = _db(cluster.url, "SELECT ROUND(SUM(cost_usd)::numeric, 2) FROM events e JOIN runs r "
                             "ON r.id = e.run_id WHERE r.task <> 'halted'")[0][0]
    assert float(spent) == pytest.approx(0.45)  # type: ignore[arg-type]


PROXY_AGENT = """
import pathlib, sys, time, anthropic
client = anthropic.Anthropic(max_retries=0)
here = pathlib.Path(sys.argv[1])
def call():
    with client.messages.stream(model="claude-sonnet-4-5", max_tokens=400,
                                messages=[{"role": "user", "content": "go " * 50}]) as s:
        s.get_final_message()
for i in range(5):
    if i == 2:                              # the test takes the server away here
        (here / "ready").touch()
        while not (here / "go").exists():
            time.sleep(0.05)
    call()
print("calls done")
"""


def test_outage_behind_the_proxy_bills_and_records_every_call(cluster: Cluster, tmp_path: Path) -> None:
    import os
    import sys

    from tests.fakes.anthropic_server import FakeAnthropic
    from tests.tools import REPO

    (tmp_path / "agent.py").write_text(PROXY_AGENT)
    home = tmp_path / "guard-home"
    with FakeAnthropic() as fake:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC", "OPENAI", "CLAUDE", "GUARD"))}
        env.update(GUARD_HOME=str(home), HOME=str(tmp_path), ANTHROPIC_BASE_URL=fake.url,
                   ANTHROPIC_API_KEY="sk-ant-dummy", PYTHONPATH=str(REPO), GUARD_LEDGER=cluster.url,
                   GUARD_LEDGER_RETRY="0.3", XDG_CONFIG_HOME=str(tmp_path / "config"))
        guard = subprocess.Popen(guard_cmd("--meter", "proxy", "run", "--", sys.executable, "agent.py",
                                           str(tmp_path)),
                                 env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            wait_until(lambda: (tmp_path / "ready").exists() or guard.poll() is not None, timeout=60,
                       message="two calls through the proxy")
            cluster.stop()
            (tmp_path / "go").touch()
            out, err = guard.communicate(timeout=120)
        finally:
            if guard.poll() is None:
                guard.kill()
                guard.communicate()
        assert guard.returncode == 0, err
        assert "calls done" in out
        truth = fake.usage_totals()
    cluster.start()
    wait_until(lambda: run_guard(home, "status", env=env).stdout.endswith(": 0 events not yet synced\n"),
               timeout=60, message="spool synced")
    rows = _db(cluster.url, "SELECT r.status, COUNT(e.key), SUM(e.input_tokens), SUM(e.output_tokens) "
                            "FROM runs r JOIN events e ON e.run_id = r.id GROUP BY r.status")
    assert rows == [("completed", 5, truth["input_tokens"], truth["output_tokens"])]
