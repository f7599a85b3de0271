"""Spend after the ceiling: usage lines an agent writing 10 lines/s manages to append after the
line that crosses a hard ceiling, for each on-limit action. Target 0.

    python bench/spend_after_ceiling.py [--runs 10]
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from _common import REPO, bench_env

SPENDER = str(REPO / "tests" / "agents" / "spender.py")
CEILING = 5


def trial(action: str) -> int:
    env = bench_env()
    subprocess.run([sys.executable, "-m", "guard", "--max-steps", str(CEILING), "--on-limit", action,
                    "run", "--", sys.executable, SPENDER, "--lines", "-1", "--rate", "10"],
                   env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, timeout=60, check=False)
    runs = json.loads(subprocess.run([sys.executable, "-m", "guard", "runs", "--json"], env=env,
                                     capture_output=True, text=True, check=True).stdout)
    usage_file = Path(env["GUARD_HOME"]) / "runs" / runs[0]["id"] / "usage.jsonl"
    if action == "pause":
        # a paused tree is frozen, not gone: count what it wrote, then end it
        subprocess.run([sys.executable, "-m", "guard", "stop", runs[0]["id"]], env=env, capture_output=True)
    written = sum(1 for line in usage_file.read_text().splitlines() if line.strip())
    return written - CEILING


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=10)
    args = ap.parse_args()
    for action in ("stop", "kill"):
        extra = [trial(action) for _ in range(args.runs)]
        print(f"spend after the ceiling ({action}, 10 lines/s, {args.runs} runs): "
              f"max {max(extra)} line(s), total {sum(extra)}")


if __name__ == "__main__":
    main()
