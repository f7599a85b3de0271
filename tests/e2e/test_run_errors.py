"""Bad input never starts the agent; documented exit codes."""
from __future__ import annotations

import os

import pytest

from tests.helpers import guard_env, run_guard, runs_json

pytestmark = pytest.mark.e2e


def marker_agent(tmp_path):
    marker = tmp_path / "started"
    return marker, ["run", "--", "touch", str(marker)]


@pytest.mark.parametrize("flags,needle", [
    (["--max-usd", "-1"], "--max-usd"),
    (["--max-usd", "nan"], "--max-usd"),
    (["--max-tokens", "0"], "--max-tokens"),
    (["--max-time", "5 fortnights"], "--max-time"),
    (["--on-limit", "explode"], "--on-limit"),
    (["--no-such-flag"], "--no-such-flag"),
])
def test_bad_flags_exit_2_and_never_start_the_agent(home, tmp_path, flags, needle):
    marker, cmd = marker_agent(tmp_path)
    out = run_guard(home, *flags, *cmd)
    assert out.returncode == 2
    assert out.stderr.startswith("guard: error: ") and needle in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1
    assert not marker.exists()


def test_malformed_project_config_names_file_and_line(home, tmp_path):
    marker, cmd = marker_agent(tmp_path)
    (home / ".guard.yaml").write_text("max_usd: 3\nmax_steps: {oops\n")
    out = run_guard(home, *cmd)
    assert out.returncode == 2
    assert ".guard.yaml:" in out.stderr and "invalid YAML" in out.stderr
    assert not marker.exists()


def test_unknown_key_in_config(home, tmp_path):
    marker, cmd = marker_agent(tmp_path)
    cfg = tmp_path / "guard.yaml"
    cfg.write_text("max_usd: 3\nmax_budget: 5\n")
    out = run_guard(home, *cmd, env=guard_env(home, GUARD_CONFIG=str(cfg)))
    assert out.returncode == 2 and "guard.yaml:2: max_budget: unknown key" in out.stderr
    assert not marker.exists()


def test_agent_not_found_is_127(home):
    out = run_guard(home, "run", "--", "no-such-agent-anywhere")
    assert out.returncode == 127 and "no-such-agent-anywhere" in out.stderr


def test_agent_not_executable_is_126(home, tmp_path):
    script = tmp_path / "agent.sh"
    script.write_text("#!/bin/sh\necho hi\n")
    os.chmod(script, 0o644)
    out = run_guard(home, "run", "--", str(script))
    assert out.returncode == 126


def test_run_without_command_is_a_usage_error(home):
    out = run_guard(home, "run")
    assert out.returncode == 2


def test_unknown_run_id(home):
    out = run_guard(home, "show", "nope")
    assert out.returncode == 2 and "no run 'nope'" in out.stderr
    assert runs_json(home) == []
