"""Halt latency of `guard run`: from the moment the usage line that crosses a hard ceiling is
appended to the whole tree stopped (pause) or gone (kill), beside the direct path (this script
sending the same signal itself), interleaved in one run, idle and with both cores busy.

The bench, not the agent, appends the line: an agent frozen by the pause could not report when
it wrote it. Every wait has a deadline; a trial that misses it is counted, never waited on.

    python bench/halt_latency.py [--runs 15]
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path

from _common import bench_env, pct
from _load import busy_cores

AGENT = r"""
import os, sys, time
open(sys.argv[1] + '.tmp', 'w').write(f"{os.getpid()} {os.environ.get('GUARD_USAGE_FILE', '')}")
os.rename(sys.argv[1] + '.tmp', sys.argv[1])
time.sleep(120)
"""
LINE = json.dumps({"input_tokens": 10, "output_tokens": 1, "cost_usd": 1.0}) + "\n"
DEADLINE = 60.0


def state(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "gone"


def wait_for(cond, deadline: float) -> bool:  # type: ignore[no-untyped-def]
    while not cond():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.0005)
    return True


def trial(action: str, guarded: bool, work: Path) -> float | None:
    """Milliseconds from the trigger to the agent stopped/gone; None past the deadline."""
    env = bench_env(work / f"home{time.monotonic_ns()}")
    ready = work / f"ready{time.monotonic_ns()}"
    agent = [sys.executable, "-c", AGENT, str(ready)]
    argv = ([sys.executable, "-m", "guard", "--max-usd", "1", "--on-limit", action, "run", "--", *agent]
            if guarded else agent)
    p = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + DEADLINE
    pid = 0
    try:
        if not wait_for(ready.exists, deadline):
            return None
        pid_s, usage = ready.read_text().split(" ", 1)
        pid = int(pid_s)
        if guarded:
            time.sleep(0.3)  # let guard settle into its loop
        done = ("T", "t") if action == "pause" else ("Z", "X", "gone")
        t0 = time.perf_counter()
        if guarded:
            with open(usage, "a") as f:
                f.write(LINE)
        else:
            os.kill(pid, signal.SIGSTOP if action == "pause" else signal.SIGKILL)
        if not wait_for(lambda: state(pid) in done, deadline):
            return None
        return (time.perf_counter() - t0) * 1000
    finally:
        for target in (pid, p.pid):
            if target:
                try:
                    os.killpg(os.getpgid(target), signal.SIGKILL)
                except OSError:
                    pass
        p.wait()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=15)
    args = ap.parse_args()
    print(f"halt latency: usage line crossing --max-usd appended -> agent stopped (pause) or gone (kill); "
          f"direct = this script signalling the agent itself; {args.runs} interleaved trials; "
          f"{os.cpu_count()} cores")
    with tempfile.TemporaryDirectory() as d:
        for label, load in (("idle", nullcontext()), (f"both cores busy ({os.cpu_count()} busy loops)", busy_cores())):
            print(f"  {label}:")
            with load:
                for action in ("pause", "kill"):
                    got: dict[bool, list[float]] = {False: [], True: []}
                    missed = 0
                    for _ in range(args.runs):
                        for guarded in (False, True):
                            t = trial(action, guarded, Path(d))
                            if t is None:
                                missed += 1
                            else:
                                got[guarded].append(t)
                    if not got[True] or not got[False]:
                        print(f"    {action:5s}: no trial finished within {DEADLINE:.0f} s")
                        continue
                    print(f"    {action:5s}: guard p50 {pct(got[True], 50):6.1f} ms  p99 {pct(got[True], 99):6.1f} ms"
                          f"  | direct p50 {pct(got[False], 50):5.2f} ms  p99 {pct(got[False], 99):5.2f} ms"
                          + (f"  ({missed} trials past the deadline)" if missed else ""))


if __name__ == "__main__":
    main()
