"""Developer, team and budget-line ceilings enforced by the run loop."""
from __future__ import annotations

import pytest

from tests.helpers import SPENDER, guard_env, last_run, run_guard, runs_json

pytestmark = pytest.mark.e2e


def config(home, text):
    path = home / "guard.yaml"
    path.write_text(text)
    return guard_env(home, GUARD_CONFIG=str(path))


def spend(home, env, *extra, lines="-1"):
    return run_guard(home, *extra, "run", "--", "python3", SPENDER, "--lines", lines, "--rate", "5",
                     "--cost", "0.1", env=env)


def test_developer_day_ceiling_halts_a_run_then_refuses_new_ones(home):
    env = config(home, "team: core\nbudgets:\n  developer: {day: 0.3}\n  team: {month: 100}\n")
    out = spend(home, env)
    assert out.returncode == 124, out.stderr
    run = last_run(home, env)
    assert run["halt"]["ceiling"] == "developer_usd" and run["usage"]["cost_usd"] == pytest.approx(0.3)
    assert "developer ceiling reached" in out.stderr
    refused = spend(home, env, lines="1")
    assert refused.returncode == 124
    assert "refused: developer_usd" in refused.stderr and "resets" in refused.stderr
    assert last_run(home, env)["status"] == "refused"


def test_grant_reopens_the_developer_ceiling(home):
    env = config(home, "budgets:\n  developer: {day: 0.2}\n")
    assert spend(home, env).returncode == 124
    grant = run_guard(home, "budget", "grant", "--developer", "tester@example.com", "--usd", "0.2",
                      "--reason", "release week", env=env)
    assert grant.returncode == 0, grant.stderr
    assert spend(home, env, lines="1").returncode == 0


def test_budget_line_is_charged_instead_of_the_developer(home):
    env = config(home, "budgets:\n  developer: {day: 0.15}\n  lines:\n    shared-infra: {month: 5}\n")
    out = spend(home, env, "--line", "shared-infra", lines="3")
    assert out.returncode == 0, out.stderr
    assert last_run(home, env)["line"] == "shared-infra"
    assert spend(home, env, lines="1").returncode == 0   # the developer's own day is untouched


def test_soft_threshold_of_a_period_ceiling_is_noticed_once(home):
    env = config(home, "budgets:\n  developer: {month: 1}\n")
    first = spend(home, env, lines="8")
    assert first.returncode == 0
    second = spend(home, env, lines="1")
    notices = (first.stderr + second.stderr).count("of the $1.00 developer ceiling")
    assert notices == 1
    assert len(runs_json(home, env)) == 2


def test_paused_at_developer_ceiling_resumes_with_a_grant(home):
    import os
    import signal
    import subprocess

    from tests.helpers import guard_cmd, wait_until

    env = config(home, "on_limit: pause\nbudgets:\n  developer: {day: 0.2}\n")
    p = subprocess.Popen(guard_cmd("run", "--", "python3", SPENDER, "--lines", "4", "--rate", "10", "--cost", "0.1"),
                         env=env, cwd=home, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         start_new_session=True)
    try:
        paused = wait_until(lambda: [r for r in runs_json(home, env) if r["status"] == "paused"], timeout=20,
                            message="the run to pause at the developer ceiling")[0]
        assert paused["halt"]["ceiling"] == "developer_usd"
        assert run_guard(home, "resume", paused["id"], "--raise-usd", "1", env=env).returncode == 0
        _, err = p.communicate(timeout=30)
    finally:
        if p.poll() is None:  # a failed assertion must not leave a paused run behind
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
    assert p.returncode == 0, err
    assert last_run(home, env)["usage"]["cost_usd"] == pytest.approx(0.4)
    shown = run_guard(home, "budget", "show", "--json", env=env).stdout
    assert "1.2" in shown  # the day's ceiling now includes the grant
