"""Halt latency of `guard run`: from the moment the usage line that crosses a hard ceiling is
appended to the whole tree stopped (pause) or gone (kill). Target p50 <= 20 ms, p99 <= 100 ms.

    python bench/halt_latency.py [--runs 30]
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import bench_env, pct

AGENT = r"""
import json, os, sys, time
out = sys.argv[1]
open(out + '.pid', 'w').write(str(os.getpid()))
while not os.path.exists(out + '.go'):
    time.sleep(0.005)
with open(os.environ['GUARD_USAGE_FILE'], 'a') as f:
    t0 = time.time()
    f.write(json.dumps({'input_tokens': 10, 'output_tokens': 1, 'cost_usd': 1.0}) + '\n')
    f.flush()
open(out + '.t0', 'w').write(repr(t0))
time.sleep(60)
"""


def state(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "gone"


def trial(action: str, workdir: Path) -> float:
    env = bench_env()
    out = str(workdir / f"t{time.monotonic_ns()}")
    agent = workdir / "agent.py"
    agent.write_text(AGENT)
    g = subprocess.Popen([sys.executable, "-m", "guard", "--max-usd", "1", "--on-limit", action, "run", "--",
                          sys.executable, str(agent), out], env=env, stdin=subprocess.DEVNULL,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while not os.path.exists(out + ".pid"):
        time.sleep(0.005)
    time.sleep(0.3)  # let guard settle into its loop
    pid = int(Path(out + ".pid").read_text())
    Path(out + ".go").touch()
    done = ("T", "t") if action == "pause" else ("Z", "X", "gone")
    while state(pid) not in done:
        pass
    t1 = time.time()
    while not os.path.exists(out + ".t0") or not Path(out + ".t0").read_text():
        time.sleep(0.001)
    t0 = float(Path(out + ".t0").read_text())
    if action == "pause":
        subprocess.run([sys.executable, "-m", "guard", "stop", "--", ""], env=env, capture_output=True)
        g.kill()
        os.kill(pid, 9)
    g.wait()
    return (t1 - t0) * 1000


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=30)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        for action in ("pause", "kill"):
            lat = [trial(action, Path(d)) for _ in range(args.runs)]
            print(f"halt latency ({action}, {args.runs} runs): p50 {pct(lat, 50):.1f} ms, "
                  f"p99 {pct(lat, 99):.1f} ms, max {max(lat):.1f} ms")


if __name__ == "__main__":
    main()
