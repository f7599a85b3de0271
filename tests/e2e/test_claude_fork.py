"""`--resume ID --fork-session`: Claude Code copies the source session's lines (same message and
request ids, old timestamps) into the new session's file; only the new responses are this run's."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.e2e.claude_env import MODEL, ClaudeWorld, make_world, truth_usage
from tests.fakes.anthropic_server import FakeAnthropic, Request, Text, ToolUse, reply

pytestmark = pytest.mark.e2e


def test_forked_session_counts_only_new_responses(tmp_path: Path, tag: str) -> None:
    def script(req: Request) -> object:
        if not req.is_agent_loop:
            return reply(Text("Title"))
        # a few tool turns per prompt, so the copied history holds several responses; Glob runs
        # in-process (a Bash call waits on the shell's startup, slow on a busy machine)
        if req.assistant_turns % 4 < 3 and "Glob" in req.tool_names:
            return reply(ToolUse("Glob", {"pattern": f"*{tag}{req.n}*"}))
        return reply(Text("done"))

    with FakeAnthropic(script) as fake:
        world: ClaudeWorld = make_world(tmp_path, fake)
        first = world.guard("claude", "-p", f"first {tag}", "--model", MODEL, "--allowedTools", "Glob",
                            "--output-format", "json")
        assert first.returncode == 0, first.stderr
        session = json.loads(first.stdout)["session_id"]
        before = len(fake.completed())
        assert before >= 4
        second = world.guard("claude", "-p", f"second {tag}", "--resume", session, "--fork-session",
                             "--model", MODEL, "--allowedTools", "Glob", "--output-format", "json")
        assert second.returncode == 0, second.stderr
        assert json.loads(second.stdout)["session_id"] != session
        new = fake.completed()[before:]
        assert len(new) >= 4
        runs = world.runs()
        assert len(runs) == 2
        latest = max(runs, key=lambda r: r["started_at"])
        truth = truth_usage(new)
        used = latest["usage"]
        assert used["input_tokens"] == truth["input_tokens"]
        assert used["output_tokens"] == truth["output_tokens"]
        assert used["cost_usd"] == pytest.approx(truth["cost_usd"], rel=1e-6)
        assert used["steps"] == truth["steps"]
