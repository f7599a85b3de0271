"""A team policy's maxima reach the run: they clamp flags and config, and the record says so."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.helpers import SPENDER, guard_env, last_run, run_guard

pytestmark = pytest.mark.e2e


def test_policy_max_usd_is_applied_and_clamps_a_looser_flag(home: Path, tag: str) -> None:
    policy = home / "team.yaml"
    policy.write_text("max_usd: 0.05\non_limit: kill\n")
    env = guard_env(home, GUARD_POLICY=str(policy))
    # $0.0045 a line at Sonnet's $3/$15: the $0.05 policy ceiling halts it at the 12th line
    out = run_guard(home, "--max-usd", "5", "--on-limit", "stop", "run", "--", sys.executable, SPENDER,
                    "--lines", "100", "--rate", "50", "--tag", tag, env=env, timeout=120)
    assert out.returncode == 124, out.stderr
    assert "--max-usd: max_usd $5.00 is beyond the policy (team.yaml): using $0.05" in out.stderr
    assert "--on-limit: on_limit stop is beyond the policy (team.yaml): using kill" in out.stderr
    run = last_run(home, env)
    assert run["limits"] == {"usd": 0.05}
    assert run["limit_sources"] == {"usd": "policy (team.yaml)"}
    assert run["halt"]["ceiling"] == "usd" and run["halt"]["action"] == "kill"
    assert run["usage"]["cost_usd"] < 1.0      # the flag's $5 never applied


def test_a_stricter_flag_keeps_its_own_source(home: Path, tag: str) -> None:
    policy = home / "team.yaml"
    policy.write_text("max_usd: 1\n")
    env = guard_env(home, GUARD_POLICY=str(policy))
    out = run_guard(home, "--max-usd", "0.5", "run", "--", sys.executable, SPENDER, "--lines", "1", "--tag", tag,
                    env=env, timeout=60)
    assert out.returncode == 0, out.stderr
    run = last_run(home, env)
    assert run["limits"] == {"usd": 0.5} and run["limit_sources"] == {"usd": "--max-usd"}


def test_going_above_the_policy_takes_a_recorded_task_grant(home: Path, tag: str) -> None:
    policy = home / "team.yaml"
    policy.write_text("max_usd: 0.05\n")
    env = guard_env(home, GUARD_POLICY=str(policy))
    grant = run_guard(home, "budget", "grant", "--task", "big", "--usd", "1", "--reason", "approved", env=env)
    assert grant.returncode == 0, grant.stderr
    out = run_guard(home, "--task", "big", "--max-usd", "0.5", "run", "--", sys.executable, SPENDER,
                    "--lines", "1", "--tag", tag, env=env, timeout=60)
    assert out.returncode == 0, out.stderr
    run = last_run(home, env)
    assert run["limits"] == {"usd": 0.5} and run["limit_sources"] == {"usd": "--max-usd"}
