"""Round trip of guard's Claude Code hooks, run the way Claude Code runs them (`sh -c CMD` with
the JSON payload on stdin): the PreToolUse hook on every tool call while the run is within
budget (the common case), once halted, and the SessionStart/UserPromptSubmit hook.

    python bench/claude_hook_latency.py [--runs 50]
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from guard.adapters.claude_launch import hook_command

PAYLOAD = json.dumps({
    "session_id": "0ffeb810-68bb-4a12-9302-1e56b0894a0a", "transcript_path": "/dev/null", "cwd": "/",
    "hook_event_name": "PreToolUse", "tool_name": "Bash", "tool_input": {"command": "ls", "description": "x"},
}).encode()


def measure(cmd: str, runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        t = time.perf_counter()
        subprocess.run(["sh", "-c", cmd], input=PAYLOAD, stdout=subprocess.DEVNULL, check=False)
        out.append((time.perf_counter() - t) * 1000)
    return out


def report(name: str, ms: list[float]) -> None:
    ms = sorted(ms)
    p99 = ms[min(len(ms) - 1, int(round(0.99 * (len(ms) - 1))))]
    print(f"{name:32s} p50 {statistics.median(ms):6.1f} ms   p99 {p99:6.1f} ms   (n={len(ms)})")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=50)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        state, sessions = Path(d) / "state.json", Path(d) / "sessions.jsonl"
        base = {"run_id": "bench", "totals": {}, "ceilings": [{"name": "usd", "limit": 10, "used": 1}],
                "paused": False, "updated_at": time.time()}
        state.write_text(json.dumps(base | {"halt": None}))
        report("PreToolUse, within budget", measure(hook_command("pre", state, sessions), a.runs))
        report("PostToolUse, within budget", measure(hook_command("post", state, sessions), a.runs))
        report("UserPromptSubmit (records id)", measure(hook_command("prompt", state, sessions), a.runs))
        state.write_text(json.dumps(base | {"halt": {"ceiling": "usd", "message": "spent"}}))
        report("PreToolUse, halted (deny)", measure(hook_command("pre", state, sessions), a.runs))


if __name__ == "__main__":
    main()
