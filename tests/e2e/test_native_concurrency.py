"""Sixteen guarded agents at once against one developer ceiling, on native signals: each run
re-reads the others' spend where a decision needs it, so together they pass the ceiling by at
most the one call each had in flight."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import SPENDER, guard_cmd, guard_env, runs_json

pytestmark = pytest.mark.e2e

RUNS = 16
CALL = 0.1        # each usage line states its cost
LIMIT = 10.0


def test_sixteen_native_runs_pass_a_developer_ceiling_by_at_most_one_call_each(home: Path, tag: str) -> None:
    (home / "config" / "guard").mkdir(parents=True)
    (home / "config" / "guard" / "config.yaml").write_text(f"budgets:\n  developer: {{day: {LIMIT}}}\n")
    env = guard_env(home, GUARD_METER="native")
    procs = [subprocess.Popen(guard_cmd("--on-limit", "kill", "run", "--", sys.executable, SPENDER, "--lines", "-1",
                                        "--rate", "2", "--cost", str(CALL), "--ids", "--tag", tag),
                              env=env, cwd=home, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
             for _ in range(RUNS)]
    codes = [p.wait(timeout=240) for p in procs]
    assert all(c == 124 for c in codes), [p.stderr.read()[-400:] for p in procs if p.returncode != 124]  # type: ignore[union-attr]
    runs = runs_json(home, env)
    spent = sum(r["usage"]["cost_usd"] for r in runs)
    print(f"{RUNS} native runs, ${LIMIT:.2f}/day developer ceiling: ${spent:.2f} spent")
    assert spent >= LIMIT - CALL                      # the ceiling was used
    assert spent <= LIMIT + RUNS * CALL + 1e-9        # and passed by at most one call a run
    assert {r["halt"]["ceiling"] for r in runs} <= {"developer_usd"}
