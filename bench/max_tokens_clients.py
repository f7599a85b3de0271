"""What the real clients do when an answer stops at max_tokens (as it does when guard lowers a
request's output allowance to fit a ceiling): how many requests follow, how much each resends,
and what they cost, by the fake server's own bill.

    python3 bench/max_tokens_clients.py

Scenarios (every cut answer bills 1,000 output tokens on 1,000 input; the server's usage):
- Claude Code, text cut: every answer cut.
- Claude Code, tool call cut: the first answer is cut inside a Bash tool_use, then text cut.
- aider + Claude (prefill): the first 5 answers cut, then one that ends.
- aider + gpt-4o (no prefill): every answer cut."""
from __future__ import annotations

import json
import os
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from _common import REPO

from guard.pricing import Pricer
from guard.usage import UsageEvent
from tests.fakes import openai_server as fo
from tests.fakes.anthropic_server import FakeAnthropic, Text, ToolUse, Usage, reply

TOOLS = REPO / ".tools"
CLAUDE = TOOLS / "claude/node_modules/.bin/claude"
AIDER = TOOLS / "aider-venv/bin/aider"
CUT = Usage(1000, 1000)


def clean_env(home: Path) -> dict[str, str]:
    drop = ("CLAUDE", "ANTHROPIC", "OPENAI", "AIDER", "OTEL", "GUARD")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    return env | {"HOME": str(home), "GIT_AUTHOR_NAME": "b", "GIT_AUTHOR_EMAIL": "b@example.com",
                  "GIT_COMMITTER_NAME": "b", "GIT_COMMITTER_EMAIL": "b@example.com"}


def cost(model: str, served: list[Any]) -> float:
    p = Pricer()
    total = 0.0
    for s in served:
        u = s.usage
        if hasattr(u, "prompt_tokens"):
            ev = UsageEvent(key="b", source="b", model=model, input_tokens=u.prompt_tokens - u.cached_tokens,
                            cache_read_tokens=u.cached_tokens, output_tokens=u.completion_tokens)
        else:
            ev = UsageEvent(key="b", source="b", model=model, input_tokens=u.input_tokens,
                            output_tokens=u.output_tokens, cache_read_tokens=u.cache_read,
                            cache_write_tokens=u.cache_write)
        total += p.price(ev).usd
    return total


def claude(tool_first: bool, work: Path) -> tuple[int, list[dict[str, Any]], list[Any], str]:
    def script(req: Any) -> Any:
        if not req.is_agent_loop:
            return reply(Text("Title"), usage=Usage(10, 5))
        if tool_first and req.assistant_turns == 0:
            return reply(Text("Running it."), ToolUse("Bash", {"command": "echo " + "y" * 3000, "description": "x"}),
                         usage=CUT, stop_reason="max_tokens")
        return reply(Text("word " * 400), usage=CUT, stop_reason="max_tokens")
    with FakeAnthropic(script) as fake:
        cfg = work / "cfg"
        cfg.mkdir()
        env = clean_env(work) | {"ANTHROPIC_BASE_URL": fake.url, "CLAUDE_CONFIG_DIR": str(cfg),
                                 "ANTHROPIC_API_KEY": "sk-ant-api03-bench-0123456789abcdefghij",
                                 "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1"}
        out = subprocess.run([str(CLAUDE), "-p", "write a long essay", "--model", "claude-sonnet-4-5",
                              "--allowedTools", "Bash", "--output-format", "json"], env=env, cwd=work,
                             capture_output=True, text=True, timeout=300, check=False)
        agent = [r for r in fake.requests if r.is_agent_loop]
        served = [s for s in fake.completed() if s.agent_loop]
        try:
            result = json.loads(out.stdout).get("result", "")
        except ValueError:
            result = out.stdout[-200:]
        return out.returncode, [r.body for r in agent], served, str(result)


def aider(claude_model: bool, work: Path) -> tuple[int, list[dict[str, Any]], list[Any], str]:
    repo = work / "repo"
    repo.mkdir()
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    args = ["--no-analytics", "--no-check-update", "--no-show-release-notes", "--yes-always", "--no-pretty",
            "--no-fancy-input", "--no-auto-commits", "--no-show-model-warnings", "--message", "write a long essay"]
    env = clean_env(work)
    if claude_model:
        count = {"n": 0}

        def script(req: Any) -> Any:
            count["n"] += 1
            if count["n"] <= 5:
                return reply(Text("word " * 400), usage=CUT, stop_reason="max_tokens")
            return reply(Text("The end."), usage=Usage(1000, 10))
        fake: Any = FakeAnthropic(script)
        model = "anthropic/claude-sonnet-4-5"
    else:
        fake = fo.FakeOpenAI(lambda req: fo.Reply(text="word " * 400, usage=fo.Usage(1000, 1000),
                                                  finish_reason="length"), aux=None)
        model = "gpt-4o"
    with fake:
        if claude_model:
            env |= {"ANTHROPIC_API_KEY": "sk-ant-bench", "ANTHROPIC_API_BASE": fake.url}
        else:
            env |= {"OPENAI_API_KEY": "sk-bench", "OPENAI_API_BASE": fake.url}
        out = subprocess.run([str(AIDER), "--model", model, *args], env=env, cwd=repo, capture_output=True,
                             text=True, timeout=300, check=False)
        lines = [ln for ln in out.stdout.splitlines() if "token limit" in ln.lower()]
        return out.returncode, [r.body for r in fake.requests], fake.completed(), (lines[0] if lines else "")


def main() -> None:
    if not CLAUDE.exists() or not AIDER.exists():
        print("needs the pinned agents in .tools (scripts/install-test-deps)")
        return
    print(f"{'scenario':<34} {'exit':>4} {'requests':>8} {'after the cut':>13} {'resent bytes':>13} "
          f"{'server bill':>11}  what the client said")
    for name, fn, arg, model in (
        ("claude code, text cut", claude, False, "claude-sonnet-4-5"),
        ("claude code, tool call cut", claude, True, "claude-sonnet-4-5"),
        ("aider + claude (prefill), 5 cuts", aider, True, "claude-sonnet-4-5"),
        ("aider + gpt-4o, cut", aider, False, "gpt-4o"),
    ):
        with tempfile.TemporaryDirectory() as tmp:
            rc, bodies, served, said = fn(arg, Path(tmp))
        sizes = [len(json.dumps(b)) for b in bodies]
        print(f"{name:<34} {rc:>4} {len(bodies):>8} {max(0, len(bodies) - 1):>13} {sum(sizes[1:]):>13,} "
              f"${cost(model, served):>10.4f}  {said[:90]}")


if __name__ == "__main__":
    main()
