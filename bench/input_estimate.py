"""How guard's input estimate compares with real tokenizers, on the request bodies real agents
send: Claude Code (against the fake Anthropic server) and aider (against the fake OpenAI server).

    .tools/aider-venv/bin/python bench/input_estimate.py

It needs `tiktoken` and `tokenizers` with litellm's bundled tokenizer files (cl100k_base,
o200k_base and the legacy Claude tokenizer), all of which aider's environment installs. The Opus
4.7 tokenizer is not public: it is taken as the legacy Claude count x 1.45 (the most users have
measured; Anthropic says 1.0-1.35x). Each row: the estimate / the count; >= 1.00 means the
estimate does not under-count."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from guard.proxy import anthropic_wire, openai_wire  # noqa: E402
from tests.fakes import openai_server as fo  # noqa: E402
from tests.fakes.anthropic_server import FakeAnthropic, Text, ToolUse, reply  # noqa: E402

OPUS_47_FACTOR = 1.45
TOOLS = REPO / ".tools"


def tokenizers() -> dict[str, Any]:
    import litellm.litellm_core_utils.tokenizers as bundled  # noqa: PLC0415 (aider's env only)

    folder = Path(bundled.__file__).parent
    os.environ["TIKTOKEN_CACHE_DIR"] = str(folder)
    import tiktoken
    from tokenizers import Tokenizer

    claude = Tokenizer.from_file(str(folder / "anthropic_tokenizer.json"))
    cl100k, o200k = tiktoken.get_encoding("cl100k_base"), tiktoken.get_encoding("o200k_base")
    return {
        "claude-legacy": lambda s: len(claude.encode(s).ids),
        "opus-4.7 (x1.45)": lambda s: int(len(claude.encode(s).ids) * OPUS_47_FACTOR + 0.5),
        "cl100k": lambda s: len(cl100k.encode(s, disallowed_special=())),
        "o200k": lambda s: len(o200k.encode(s, disallowed_special=())),
    }


def claude_bodies(work: Path) -> list[dict[str, Any]]:
    def script(req: Any) -> Any:
        if req.is_agent_loop and req.assistant_turns < 2 and "Bash" in req.tool_names:
            return reply(Text("Listing."), ToolUse("Bash", {"command": "ls -la; cat /etc/os-release", "description": "look"}))
        return reply(Text("Done."))
    claude = TOOLS / "claude/node_modules/.bin/claude"
    with FakeAnthropic(script) as fake:
        cfg = work / "claude-config"
        cfg.mkdir()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("CLAUDE", "ANTHROPIC", "OTEL"))}
        env |= {"ANTHROPIC_BASE_URL": fake.url, "ANTHROPIC_API_KEY": "sk-ant-api03-bench-0123456789abcdefghij",
                "CLAUDE_CONFIG_DIR": str(cfg), "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1", "HOME": str(work)}
        subprocess.run([str(claude), "-p", "look around this folder", "--model", "claude-sonnet-4-5",
                        "--allowedTools", "Bash"], env=env, cwd=work, capture_output=True, timeout=300, check=False)
        return [r.body for r in fake.requests]


def aider_bodies(work: Path) -> list[dict[str, Any]]:
    repo = work / "repo"
    repo.mkdir()
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    (repo / "app.py").write_text("def main():\n    print('hello')\n\nif __name__ == '__main__':\n    main()\n")
    aider = TOOLS / "aider-venv/bin/aider"
    with fo.FakeOpenAI([fo.Reply(text=fo.edit_block("app.py", "    print('hello')\n", "    print('hi')\n"))]) as fake:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI", "AIDER"))}
        env |= {"OPENAI_API_KEY": "sk-bench", "OPENAI_API_BASE": fake.url, "HOME": str(work)}
        subprocess.run([str(aider), "--model", "gpt-4o", "--no-analytics", "--no-check-update", "--yes-always",
                        "--no-pretty", "--no-fancy-input", "--no-show-release-notes", "app.py",
                        "--message", "say hi instead of hello"], env=env, cwd=repo, capture_output=True,
                       timeout=300, check=False)
        return [r.body for r in fake.requests]


def row(label: str, body: dict[str, Any], estimate: int, counts: dict[str, Any]) -> list[float]:
    raw = json.dumps(body)
    ratios = []
    cells = []
    for name, count in counts.items():
        n = count(raw)
        ratios.append(estimate / n)
        cells.append(f"{name} {n:>7,} ({estimate / n:4.2f})")
    print(f"{label:<34} {len(raw):>8,} B  est {estimate:>7,}  " + "  ".join(cells))
    return ratios


def main() -> None:
    counts = tokenizers()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "c").mkdir()
        (work / "a").mkdir()
        claude = claude_bodies(work / "c")
        aider = aider_bodies(work / "a")
    print(f"{'request':<34} {'bytes':>10}  {'guard':>11}  tokenizer counts (estimate / count)")
    worst: dict[str, float] = {}
    for i, body in enumerate(claude, 1):
        raw = json.dumps(body).encode()
        for model in ("claude-sonnet-4-5", "claude-opus-4-7"):
            b = dict(body, model=model)
            est = anthropic_wire.estimate(json.dumps(b).encode(), b).input_tokens
            names = ["claude-legacy"] if model == "claude-sonnet-4-5" else ["opus-4.7 (x1.45)"]
            r = row(f"claude code #{i} as {model}", b, est, {n: counts[n] for n in names})
            worst[model] = min(worst.get(model, 9.0), *r)
        del raw
    for i, body in enumerate(aider, 1):
        est = openai_wire.estimate(json.dumps(body).encode(), body, "chat").input_tokens
        r = row(f"aider #{i} ({body.get('model')})", body, est, {n: counts[n] for n in ("cl100k", "o200k")})
        worst["gpt"] = min(worst.get("gpt", 9.0), *r)
    print("lowest estimate/count: " + ", ".join(f"{k} {v:.2f}" for k, v in worst.items())
          + "  (>= 1.00: never under-counts)")


if __name__ == "__main__":
    main()
