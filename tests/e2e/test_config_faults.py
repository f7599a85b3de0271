"""Every config fault exits 2 with one line naming the file and key, and the agent never starts."""
from __future__ import annotations

import os

import pytest

from tests.helpers import guard_env, run_guard

pytestmark = pytest.mark.e2e


def agent_cmd(tmp_path):
    marker = tmp_path / "started"
    return ["run", "--", "python3", "-c", f"open({str(marker)!r}, 'w')"], marker


def assert_config_fault(out, marker, *needles):
    assert out.returncode == 2, (out.returncode, out.stderr)
    lines = [ln for ln in out.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in out.stderr, out.stderr
    for n in needles:
        assert n in lines[0], lines[0]
    assert not marker.exists(), "the agent was started"


@pytest.mark.parametrize("yaml_text, key", [
    ("claude: {stuck_loop: {repeat: abc}}\n", "claude.stuck_loop.repeat"),
    ("claude: {stuck_loop: {failng: 3}}\n", "claude.stuck_loop.failng"),
    ("claude: {task_budgt: true}\n", "claude.task_budgt"),
    ("claude: {graceful_print: maybe}\n", "claude.graceful_print"),
    ("aider: {executabel: /bin/true}\n", "aider.executabel"),
    ("codex: {max_usd: 3}\n", "codex.max_usd"),
    ("run: {x: 1}\n", "run.x"),
    ("budgets: {developers: {day: 5}}\n", "budgets.developers"),
    ("budgets: {developer: {dya: 5}}\n", "budgets.developer.dya"),
    ("budgets: {team: {day: lots}}\n", "budgets.team.day"),
    ("budgets: {hard: 7}\n", "budgets.hard"),
    ("budgets: {soft: [0.5, nope]}\n", "budgets.soft"),
    ("budgets: {line_rules: [{lin: x}]}\n", "budgets.line_rules[0].lin"),
    ("budgets: {lines: {web: {day: 5, match: {cwdd: x}}}}\n", "budgets.lines.web.match.cwdd"),
    ("notify: {webhok: http://x}\n", "notify.webhok"),
    ("max_steps: 0.4\n", "max_steps"),
    ("max_usd: -1\n", "max_usd"),
])
def test_a_bad_key_or_value_anywhere_exits_2(home, tmp_path, yaml_text, key):
    (home / ".guard.yaml").write_text(yaml_text)
    args, marker = agent_cmd(tmp_path)
    assert_config_fault(run_guard(home, *args), marker, ".guard.yaml", key)


@pytest.mark.parametrize("content, needle", [
    ("max_usd: 5\nteam: caf\xe9\n".encode("latin-1"), "not UTF-8"),
    (b"\x00\x01\x02binary\xff", ".guard.yaml"),
    (("a:\n" + "".join("  " * i + "- \n" for i in range(1))).encode() + b"[" * 5000 + b"]" * 5000, ".guard.yaml"),
])
def test_unreadable_config_content_exits_2(home, tmp_path, content, needle):
    (home / ".guard.yaml").write_bytes(content)
    args, marker = agent_cmd(tmp_path)
    assert_config_fault(run_guard(home, *args), marker, needle)


def test_a_directory_named_like_the_config_is_an_error(home, tmp_path):
    (home / ".guard.yaml").mkdir()
    args, marker = agent_cmd(tmp_path)
    assert_config_fault(run_guard(home, *args), marker, ".guard.yaml", "directory")


def test_a_fifo_named_like_the_config_is_an_error_not_a_hang(home, tmp_path):
    os.mkfifo(home / ".guard.yaml")
    args, marker = agent_cmd(tmp_path)
    assert_config_fault(run_guard(home, *args, timeout=30), marker, ".guard.yaml", "not a regular file")


def test_a_path_entry_that_cannot_be_looked_into_is_skipped(home):
    """A PATH entry stat() fails on with an error other than "no such file" (EACCES for an
    unprivileged user in a mode-000 directory; ENAMETOOLONG here, which root gets too)."""
    env = guard_env(home, PATH=f"/{'x' * 5000}:{os.environ['PATH']}")
    out = run_guard(home, "run", "--", "true", env=env)
    assert out.returncode == 0 and "Error" not in out.stderr, out.stderr
