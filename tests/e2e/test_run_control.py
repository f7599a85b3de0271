"""Tasks across runs, pause/resume/stop from elsewhere, and guard's own death."""
from __future__ import annotations

import os
import signal
import subprocess

import pytest

from tests.helpers import SPENDER, guard_cmd, guard_env, last_run, pids_alive, run_guard, runs_json, wait_until

pytestmark = pytest.mark.e2e


def test_task_ceiling_spans_runs_and_a_halted_task_is_refused_until_raised(home, tag):
    spend = ["run", "--", "python3", SPENDER, "--lines", "3", "--cost", "0.1", "--tag", tag]
    first = run_guard(home, "--task", "fix-login", "--max-usd", "0.5", *spend)
    assert first.returncode == 0
    second = run_guard(home, "--task", "fix-login", "--max-usd", "0.5", "run", "--", "python3", SPENDER,
                       "--lines", "-1", "--rate", "5", "--cost", "0.1")
    assert second.returncode == 124
    halted = last_run(home)
    assert halted["halt"]["ceiling"] == "usd" and halted["usage"]["cost_usd"] == pytest.approx(0.2)
    third = run_guard(home, "--task", "fix-login", "--max-usd", "0.5", *spend)
    assert third.returncode == 124 and "refused" in third.stderr and "fix-login" in third.stderr
    refused = last_run(home)
    assert refused["status"] == "refused" and refused["usage"]["steps"] == 0
    # raising the ceiling (recorded) lets the task run again
    raised = run_guard(home, "resume", halted["id"], "--raise-usd", "1")
    assert raised.returncode == 0, raised.stderr
    fourth = run_guard(home, "--task", "fix-login", "--max-usd", "0.5", *spend)
    assert fourth.returncode == 0, fourth.stderr
    shown = run_guard(home, "show", halted["id"], "--json")
    assert '"amount": 1.0' in shown.stdout and "tester@example.com" in shown.stdout


def test_without_task_each_run_is_its_own_task(home):
    for _ in range(2):
        out = run_guard(home, "--max-usd", "0.25", "run", "--", "python3", SPENDER, "--lines", "2", "--cost", "0.1")
        assert out.returncode == 0


_started: list[subprocess.Popen] = []


@pytest.fixture(autouse=True)
def _no_guard_left_behind():
    """A failed assertion must not leave a paused guard (and its agent) running."""
    yield
    while _started:
        p = _started.pop()
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()


def start_guard(home, *args, **kw):
    p = subprocess.Popen(guard_cmd(*args), env=guard_env(home), cwd=home, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, start_new_session=True, **kw)
    _started.append(p)
    return p


def wait_status(home, status):
    return wait_until(lambda: [r for r in runs_json(home) if r["status"] == status], timeout=20,
                      message=f"a run to be {status}")[0]


def test_paused_without_terminal_waits_for_resume_with_raise(home, tag):
    p = start_guard(home, "--on-limit", "pause", "--max-steps", "3", "run", "--", "python3", SPENDER,
                    "--lines", "6", "--rate", "20", "--tag", tag)
    run = wait_status(home, "paused")
    assert run["halt"]["ceiling"] == "steps"
    import psutil

    pids = pids_alive(tag)
    assert pids and all(psutil.Process(pid).status() == psutil.STATUS_STOPPED for pid in pids)
    status = run_guard(home, "status", "--json")
    assert run["id"] in status.stdout
    assert run_guard(home, "resume", run["id"], "--raise-steps", "10").returncode == 0
    out, err = p.communicate(timeout=30)
    assert p.returncode == 0, err
    done = last_run(home)
    assert done["status"] == "completed" and done["usage"]["steps"] == 6
    assert "paused:" in err


def test_paused_run_stopped_from_elsewhere(home, tag):
    p = start_guard(home, "--on-limit", "pause", "--max-usd", "0.01", "run", "--", "python3", SPENDER,
                    "--lines", "-1", "--rate", "20", "--tag", tag)
    run = wait_status(home, "paused")
    assert run_guard(home, "stop", run["id"]).returncode == 0
    p.communicate(timeout=30)
    assert p.returncode == 124
    assert last_run(home)["status"] == "halted"
    assert not pids_alive(tag)


def test_running_run_stopped_from_elsewhere(home, tag):
    p = start_guard(home, "run", "--", "python3", SPENDER, "--lines", "-1", "--rate", "5", "--tag", tag)
    run = wait_status(home, "running")
    wait_until(lambda: last_run(home)["usage"]["steps"] >= 1, message="a first usage line")
    assert run_guard(home, "stop", run["id"]).returncode == 0
    p.communicate(timeout=30)
    assert p.returncode == 124
    assert last_run(home)["halt"]["ceiling"] == "manual"
    assert not pids_alive(tag)


def test_guard_killed_takes_the_agent_with_it_and_is_marked_crashed(home, tag):
    p = start_guard(home, "run", "--", "python3", SPENDER, "--lines", "-1", "--rate", "10",
                    "--setsid-grandchild", "--tag", tag)
    wait_until(lambda: [r for r in runs_json(home) if r["usage"]["steps"] >= 3], timeout=20,
               message="some usage recorded")
    assert pids_alive(tag)
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    wait_until(lambda: not pids_alive(tag), timeout=10, message="the agent tree to die with guard")
    run = last_run(home)  # any guard command notices the dead run
    assert run["status"] == "crashed" and run["usage"]["steps"] >= 3


def test_sigterm_to_guard_is_passed_to_the_agent(home, tag):
    p = start_guard(home, "run", "--", "python3", SPENDER, "--lines", "-1", "--rate", "5", "--tag", tag)
    wait_until(lambda: pids_alive(tag), message="the agent to start")
    p.send_signal(signal.SIGTERM)
    p.communicate(timeout=30)
    assert p.returncode in (143, 128 + 15, 1)  # the agent's own death by SIGTERM
    assert not pids_alive(tag)
    assert last_run(home)["status"] == "completed"


def test_concurrent_guards_share_one_ledger_without_loss(home):
    procs = [start_guard(home, "run", "--", "python3", SPENDER, "--lines", "50", "--rate", "200",
                         "--input", "7", "--output", "3", "--cost", "0.001") for _ in range(6)]
    for p in procs:
        p.communicate(timeout=60)
        assert p.returncode == 0
    runs = runs_json(home)
    assert len(runs) == 6
    assert all(r["usage"]["input_tokens"] == 350 and r["usage"]["steps"] == 50 for r in runs)
    assert sum(r["usage"]["cost_usd"] for r in runs) == pytest.approx(0.3)
