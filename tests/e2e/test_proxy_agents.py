"""Real Claude Code and real aider through the metering proxy, against fake LLM servers: every
call recorded exactly (tool loops, aider's commit-message call), and a refusal ends the agent's
attempt at once instead of being retried."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from guard.pricing import Pricer
from guard.proxy import OpenGate, start_proxy
from guard.proxy.env import aider_upstream_env
from tests.fakes import anthropic_server as fa
from tests.fakes import openai_server as fo
from tests.fakes.proxy_upstreams import CeilingGate, RecordingSink
from tests.tools import aider_bin, claude_bin

pytestmark = pytest.mark.e2e

PRICER = Pricer()


def clean_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC", "OPENAI", "AIDER", "CLAUDE"))}
    env.update(HOME=str(home), GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@example.com",
               GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@example.com")
    return env


def claude_env(home: Path) -> dict[str, str]:
    env = clean_env(home)
    env.update(CLAUDE_CONFIG_DIR=str(home / ".claude"), ANTHROPIC_API_KEY="sk-ant-dummy")
    return env


def test_claude_code_tool_loop_through_proxy_is_recorded_exactly(tmp_path: Path) -> None:
    script = fa.sequence([fa.reply(fa.Text("Running."), fa.ToolUse("Bash", {"command": "echo hi", "description": "x"})),
                          fa.reply(fa.Text("Again."), fa.ToolUse("Bash", {"command": "echo ho", "description": "y"}))])
    sink = RecordingSink()
    with fa.FakeAnthropic(script) as fake:
        proxy = start_proxy(sink, OpenGate(), PRICER, {"ANTHROPIC_BASE_URL": fake.url})
        try:
            env = claude_env(tmp_path) | proxy.client_env("claude")
            out = subprocess.run([claude_bin(), "-p", "run two commands", "--allowedTools", "Bash",
                                  "--output-format", "json"], env=env, cwd=tmp_path,
                                 capture_output=True, text=True, timeout=120)
        finally:
            proxy.stop()
    assert out.returncode == 0, out.stderr[-2000:]
    truth = fake.usage_totals()
    assert truth["calls"] == 3 and truth["tool_uses"] == 2
    got = sink.totals()
    for k in ("input_tokens", "output_tokens", "cache_write_tokens", "cache_read_tokens", "calls"):
        assert got[k] == truth[k], k
    # Same keys the transcript adapter derives from requestId: the two sources merge, not add.
    assert {e.key for e in sink.events} == {f"req:{s.request_id}" for s in fake.completed()}
    assert all(e.steps == 0 and not e.estimated for e in sink.events)   # the adapter counts steps


def test_claude_code_stops_at_the_first_refusal(tmp_path: Path) -> None:
    gate = CeilingGate(limit_usd=0.001, pricer=PRICER)
    with fa.FakeAnthropic(fa.bash_loop()) as fake:
        proxy = start_proxy(gate.sink, gate, PRICER, {"ANTHROPIC_BASE_URL": fake.url})
        try:
            env = claude_env(tmp_path) | proxy.client_env("claude")
            out = subprocess.run([claude_bin(), "-p", "loop", "--allowedTools", "Bash"], env=env, cwd=tmp_path,
                                 capture_output=True, text=True, timeout=120)
        finally:
            proxy.stop()
    assert out.returncode != 0
    # the refusal says what is true: the ceiling, what was spent, what the next request needs
    assert "$0.0010 task ceiling: $0.00 spent, the next request needs at least" in out.stdout + out.stderr
    assert fake.requests == [] and gate.refused == 1        # 402 is final: no retry


def init_repo(repo: Path) -> None:
    repo.mkdir()
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    subprocess.run(["git", "commit", "-q", "--allow-empty", "-m", "init"], cwd=repo, check=True,
                   env=clean_env(repo.parent))


AIDER_ARGS = ["--model", "gpt-4o", "--no-analytics", "--no-check-update", "--no-show-release-notes",
              "--yes-always", "--no-pretty", "--no-fancy-input"]


def test_aider_through_proxy_counts_commit_messages_and_a_dotenv_cannot_bypass(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    init_repo(repo)
    sink = RecordingSink()
    with fo.FakeOpenAI([fo.create_file("hello.py", "print('hi')\n")]) as fake:
        # The project's .env points litellm straight at "the user's gateway" (the fake): guard
        # must forward there, and aider must still go through guard.
        (repo / ".env").write_text(f"OPENAI_BASE_URL={fake.url}\nOPENAI_API_BASE={fake.url}\n")
        env = clean_env(tmp_path) | {"OPENAI_API_KEY": "sk-dummy"}
        proxy = start_proxy(sink, OpenGate(), PRICER, aider_upstream_env(env, repo))
        try:
            out = subprocess.run([aider_bin(), *AIDER_ARGS, "--message", "create hello.py"],
                                 env=env | proxy.client_env("aider"), cwd=repo,
                                 capture_output=True, text=True, timeout=180)
        finally:
            proxy.stop()
    assert out.returncode == 0, out.stdout[-2000:]
    assert (repo / "hello.py").exists()
    kinds = [s.kind for s in fake.completed()]
    assert kinds == ["main", "commit"]                     # aider itself never counts the commit call
    truth = fake.usage_totals()
    got = sink.totals()
    assert (got["input_tokens"], got["output_tokens"], got["calls"]) == (
        truth["input_tokens"], truth["output_tokens"], truth["calls"])
    assert {e.key for e in sink.events} == {f"req:{s.request_id}" for s in fake.completed()}
    assert not any(e.estimated for e in sink.events)


def test_aider_makes_one_attempt_when_refused(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    init_repo(repo)
    gate = CeilingGate(limit_usd=0.001, pricer=PRICER)
    with fo.FakeOpenAI() as fake:
        env = clean_env(tmp_path) | {"OPENAI_API_KEY": "sk-dummy", "OPENAI_API_BASE": fake.url}
        proxy = start_proxy(gate.sink, gate, PRICER, env)
        try:
            out = subprocess.run([aider_bin(), *AIDER_ARGS, "--message", "hello"],
                                 env=env | proxy.client_env("aider"), cwd=repo,
                                 capture_output=True, text=True, timeout=180)
        finally:
            proxy.stop()
    said = " ".join((out.stdout + out.stderr).split())   # aider wraps its output
    assert "$0.0010 task ceiling: $0.00 spent, the next request needs at least" in said
    assert "Retrying" not in out.stdout + out.stderr
    assert fake.requests == [] and gate.refused == 1
