"""guard run -- CMD against the four task ceilings, with real processes."""
from __future__ import annotations

import pytest

from tests.helpers import SPENDER, last_run, pids_alive, run_guard

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize("flags,ceiling", [
    (["--max-usd", "0.02"], "usd"),
    (["--max-tokens", "5k"], "tokens"),
    (["--max-steps", "4"], "steps"),
    (["--max-time", "1.5s"], "time"),
])
def test_each_ceiling_halts_a_runaway_agent(home, tag, flags, ceiling):
    out = run_guard(home, *flags, "run", "--", "python3", SPENDER, "--lines", "-1", "--rate", "20",
                    "--tag", tag)
    assert out.returncode == 124, out.stderr
    assert "guard: halted at step" in out.stderr and "task ceiling reached" in out.stderr
    run = last_run(home)
    assert run["status"] == "halted" and run["exit_code"] is not None
    assert run["halt"]["ceiling"] == ceiling and run["halt"]["action"] == "stop"
    assert run["halt"]["used"] >= run["halt"]["limit"]
    assert not pids_alive(tag)


def test_steps_ceiling_stops_exactly_at_the_crossing_line(home, tag):
    # 5 lines a second leaves guard 200 ms per line even on a loaded machine
    out = run_guard(home, "--max-steps", "5", "run", "--", "python3", SPENDER, "--lines", "-1",
                    "--rate", "5", "--tag", tag)
    assert out.returncode == 124
    assert last_run(home)["usage"]["steps"] == 5


def test_agent_exit_code_passes_through_and_usage_is_recorded(home):
    out = run_guard(home, "--max-usd", "5", "run", "--", "python3", SPENDER, "--lines", "3",
                    "--exit", "7", "--input", "100", "--output", "10", "--cost", "0.5")
    assert out.returncode == 7, out.stderr
    run = last_run(home)
    assert run["status"] == "completed" and run["exit_code"] == 7
    assert run["usage"]["input_tokens"] == 300 and run["usage"]["output_tokens"] == 30
    assert run["usage"]["cost_usd"] == pytest.approx(1.5)
    assert run["usage"]["steps"] == 3


def test_soft_threshold_warns_once(home):
    out = run_guard(home, "--max-usd", "1", "run", "--", "python3", SPENDER, "--lines", "4",
                    "--cost", "0.2")
    assert out.returncode == 0
    assert out.stderr.count("warning: 80% of the $1.00 task ceiling") == 1


def test_agent_ignoring_sigint_and_sigterm_is_killed(home, tag):
    out = run_guard(home, "--max-steps", "3", "--grace", "0.5", "run", "--", "python3", SPENDER,
                    "--lines", "-1", "--rate", "20", "--ignore-signals", "--tag", tag)
    assert out.returncode == 124
    assert not pids_alive(tag)


def test_setsid_grandchild_that_keeps_spending_is_halted_too(home, tag):
    out = run_guard(home, "--max-steps", "6", "run", "--", "python3", SPENDER, "--lines", "-1",
                    "--rate", "20", "--setsid-grandchild", "--ignore-signals", "--tag", tag)
    assert out.returncode == 124
    assert not pids_alive(tag)


@pytest.mark.parametrize("action", ["kill", "stop"])
def test_thousand_lines_a_second_is_halted(home, tag, action):
    out = run_guard(home, "--max-tokens", "2M", "--on-limit", action, "run", "--", "python3", SPENDER,
                    "--lines", "-1", "--rate", "1000", "--tag", tag)
    assert out.returncode == 124
    run = last_run(home)
    assert run["halt"]["ceiling"] == "tokens"
    assert not pids_alive(tag)


def test_garbage_lines_are_skipped_and_counted(home):
    out = run_guard(home, "run", "--", "python3", SPENDER, "--lines", "6", "--garbage")
    assert out.returncode == 0, out.stderr
    run = last_run(home)
    assert run["usage"]["steps"] == 6
    assert run["skipped_records"] == 4
    assert "skipped 4 unreadable usage record(s)" in out.stderr


def test_replayed_ids_count_once(home, tmp_path):
    agent = tmp_path / "replay.py"
    agent.write_text(
        "import json, os\n"
        "with open(os.environ['GUARD_USAGE_FILE'], 'a') as f:\n"
        "    for _ in range(3):\n"
        "        for i in range(4):\n"
        "            f.write(json.dumps({'id': f'req-{i}', 'input_tokens': 10, 'output_tokens': 1, 'cost_usd': 0.1}) + '\\n')\n"
    )
    assert run_guard(home, "run", "--", "python3", str(agent)).returncode == 0
    usage = last_run(home)["usage"]
    assert usage["input_tokens"] == 40 and usage["cost_usd"] == pytest.approx(0.4)


def test_usage_file_truncated_and_replaced_mid_run(home, tmp_path):
    agent = tmp_path / "rewrite.py"
    agent.write_text(
        "import json, os, time\n"
        "p = os.environ['GUARD_USAGE_FILE']\n"
        "def line(i): return json.dumps({'id': f'c{i}', 'input_tokens': 100}) + '\\n'\n"
        "with open(p, 'a') as f: f.write(line(1) + line(2))\n"
        "time.sleep(0.3)\n"
        "open(p, 'w').write(line(3))\n"            # truncated
        "time.sleep(0.3)\n"
        "open(p + '.new', 'w').write(line(4) + line(5))\n"
        "os.replace(p + '.new', p)\n"              # replaced
        "time.sleep(0.3)\n"
    )
    assert run_guard(home, "run", "--", "python3", str(agent)).returncode == 0
    assert last_run(home)["usage"]["input_tokens"] == 500


def test_remaining_budget_is_in_the_environment(home, tmp_path):
    agent = tmp_path / "env.py"
    out_file = tmp_path / "env.txt"
    names = ["GUARD_RUN_ID", "GUARD_REMAINING_USD", "GUARD_REMAINING_TOKENS", "GUARD_REMAINING_STEPS"]
    agent.write_text(f"import os\nopen({str(out_file)!r}, 'w').write(' '.join(os.environ.get(k, '-') for k in {names!r}))\n")
    assert run_guard(home, "--max-usd", "2", "--max-tokens", "500k", "run", "--", "python3", str(agent)).returncode == 0
    run_id, usd, tokens, steps = out_file.read_text().split()
    assert run_id == last_run(home)["id"] and float(usd) == 2.0 and tokens == "500000" and steps == "-"
