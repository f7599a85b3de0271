"""The usage-file follower against writers that do not simply append, and files built to stall it."""
from __future__ import annotations

import sys

import pytest

from tests.helpers import AGENTS, last_run, run_guard

pytestmark = pytest.mark.e2e

REWRITER = str(AGENTS / "rewriter.py")
N = 30


def expected_input(n: int) -> int:
    return sum(1000 + i % 7 for i in range(n))


@pytest.mark.parametrize("mode", ["append", "rewrite", "same-size", "rewrite-all", "truncate", "recreate",
                                  "rename", "append-noid", "rewrite-all-noid", "rewrite-noid", "rename-noid"])
def test_each_record_counts_once_however_the_file_is_written(home, mode):
    out = run_guard(home, "--max-usd", "50", "run", "--", sys.executable, REWRITER, mode, str(N), timeout=120)
    assert out.returncode == 0, out.stderr
    run = last_run(home)
    print(f"{mode}: written {N}, recorded {run['usage']['steps']}")
    assert run["usage"]["steps"] == N
    assert run["usage"]["input_tokens"] == expected_input(N)
    assert run["accuracy"] == "exact"


HOLE_AGENT = r"""
import json, os, sys, time
path = os.environ["GUARD_USAGE_FILE"]
with open(path, "a") as f:
    f.write(json.dumps({"id": "before", "input_tokens": 10, "output_tokens": 1}) + "\n")
os.truncate(path, os.path.getsize(path) + (int(sys.argv[1]) << 30))
with open(path, "a") as f:
    f.write("\n" + json.dumps({"id": "after", "input_tokens": 20, "output_tokens": 2}) + "\n")
time.sleep(120)
"""


@pytest.mark.parametrize("gib", [4, 20])
def test_a_sparse_file_neither_stalls_the_time_ceiling_nor_hides_later_records(home, tmp_path, gib):
    agent = tmp_path / "hole.py"
    agent.write_text(HOLE_AGENT)
    # before: 4 GiB delayed a 5 s --max-time kill to 36 s, 20 GiB a 6 s one to 4 minutes
    out = run_guard(home, "--max-time", "4s", "run", "--", sys.executable, str(agent), str(gib), timeout=60)
    assert out.returncode == 124, out.stderr
    run = last_run(home)
    assert run["halt"]["ceiling"] == "time"
    assert run["usage"]["input_tokens"] == 30 and run["usage"]["steps"] == 2


DEEP_AGENT = r"""
import json, os
with open(os.environ["GUARD_USAGE_FILE"], "a") as f:
    f.write("[" * 1000 + "]" * 1000 + "\n")
    f.write('{"usage": ' + '{"a": ' * 999 + '1' + '}' * 999 + '}\n')
    f.write(json.dumps({"id": "ok", "input_tokens": 5, "output_tokens": 1}) + "\n")
"""


def test_a_deeply_nested_line_is_a_skipped_record(home, tmp_path):
    agent = tmp_path / "deep.py"
    agent.write_text(DEEP_AGENT)
    out = run_guard(home, "--max-usd", "5", "run", "--", sys.executable, str(agent))
    assert out.returncode == 0, out.stderr
    run = last_run(home)
    assert run["status"] == "completed" and run["usage"]["input_tokens"] == 5
    assert run["skipped_records"] == 2


GONE_AGENT = r"""
import os, time
path = os.environ["GUARD_USAGE_FILE"]
os.unlink(path)
os.mkdir(path)
time.sleep(120)
"""


def test_a_usage_file_guard_cannot_read_is_an_adapter_error(home, tmp_path):
    agent = tmp_path / "gone.py"
    agent.write_text(GONE_AGENT)
    out = run_guard(home, "--max-usd", "5", "--on-limit", "stop", "run", "--", sys.executable, str(agent),
                    timeout=60)
    assert out.returncode == 124, out.stderr
    run = last_run(home)
    assert run["halt"]["ceiling"] == "adapter_error"
    assert "not a regular file" in run["halt"]["message"]


NUMBERS_AGENT = r"""
import json, os
with open(os.environ["GUARD_USAGE_FILE"], "a") as f:
    m = "claude-sonnet-4-6"
    f.write(json.dumps({"id": "a", "input_tokens": "900000", "output_tokens": 0, "model": m}) + "\n")
    f.write(json.dumps({"id": "b", "input_tokens": -5, "output_tokens": 0, "model": m}) + "\n")
    f.write('{"id": "c", "input_tokens": 1e20, "output_tokens": 0, "model": "claude-sonnet-4-6"}\n')
"""


def test_hostile_numbers_are_counted_high_and_flagged(home, tmp_path):
    agent = tmp_path / "numbers.py"
    agent.write_text(NUMBERS_AGENT)
    out = run_guard(home, "--max-usd", "100000", "run", "--", sys.executable, str(agent))
    assert out.returncode == 0, out.stderr
    run = last_run(home)
    # the string counts; the negative counts as the largest call so far; 1e20 is capped at 10^9
    assert run["usage"]["input_tokens"] == 900000 + 900000 + 10**9
    assert run["accuracy"] == "estimated"
