"""Halt latency for Claude Code under guard.

From the fake server finishing the response that crosses the ceiling to the whole claude process
tree stopped, over N runs of `guard --max-steps K claude -p ...` against a runaway Bash loop.
Prints p50/p99 and the parts (transcript seen / tree gone) so a regression can be located.

    python bench/claude_halt_latency.py [--runs 20] [--steps 3] [--meter native|proxy]
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import psutil

from tests.fakes.anthropic_server import FakeAnthropic, Served, bash_loop
from tests.helpers import guard_cmd, guard_env

CLAUDE = os.environ.get("GUARD_TEST_CLAUDE") or str(REPO / ".tools/claude/node_modules/.bin/claude")


def _is_claude(p: psutil.Process) -> bool:
    try:
        cmd = p.cmdline()
    except psutil.Error:
        return False
    return bool(cmd) and "--session-id" in cmd and "guard.supervisor" not in " ".join(cmd)


def _alive(p: psutil.Process) -> bool:
    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def one_run(tmp: Path, i: int, ceiling: str, steps: int, meter: str) -> tuple[float, float, int]:
    home, cfg, proj = tmp / f"home{i}", tmp / f"cfg{i}", tmp / f"proj{i}"
    for d in (home, proj):
        d.mkdir()
    crossing: dict[str, float] = {}

    def on_served(s: Served) -> None:
        if s.agent_loop and s.n == steps and "t" not in crossing:
            crossing["t"] = s.finished_at or time.time()

    limit = ["--meter", meter, *{"steps": ["--max-steps", str(steps)]}[ceiling]]
    with FakeAnthropic(bash_loop(vary=True), on_served=on_served) as fake:
        env = guard_env(home, ANTHROPIC_BASE_URL=fake.url, ANTHROPIC_API_KEY="sk-ant-bench",
                        CLAUDE_CONFIG_DIR=str(cfg), CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC="1")
        env["PATH"] = f"{Path(CLAUDE).parent}{os.pathsep}{env['PATH']}"
        proc = subprocess.Popen(
            guard_cmd(*limit, "claude", "-p", "loop", "--model", "claude-sonnet-4-5", "--allowedTools", "Bash"),
            env=env, cwd=proj, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        gone_at: float | None = None
        halt_at: float | None = None
        agent: psutil.Process | None = None
        members: set[psutil.Process] = set()
        last_scan = 0.0
        while True:
            now = time.time()
            if agent is None:
                try:
                    kids = psutil.Process(proc.pid).children()
                except psutil.Error:
                    kids = []
                agent = next((k for k in kids if _is_claude(k)), None)
                if agent is not None:
                    members.add(agent)
            elif now - last_scan > 0.05 and "t" not in crossing:
                # tool shells come and go: keep the set of the tree's processes current (cheaply)
                last_scan = now
                try:
                    members |= set(agent.children(recursive=True))
                except psutil.Error:
                    pass
            if "t" in crossing:
                if halt_at is None:
                    for st in home.glob("runs/*/state.json"):
                        try:
                            if '"halt": {' in st.read_text():
                                halt_at = now
                        except OSError:
                            pass
                if members and not any(_alive(m) for m in members):
                    gone_at = now
                    break
            if proc.poll() is not None and "t" in crossing:
                gone_at = now
                break
            time.sleep(0.002)
        proc.wait(timeout=60)
        assert gone_at is not None
        halt_dt = (halt_at - crossing["t"]) if halt_at else float("nan")
        return gone_at - crossing["t"], halt_dt, proc.returncode


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--ceiling", default="steps", choices=["steps"])
    ap.add_argument("--meter", default="native", choices=["native", "proxy", "auto"])
    a = ap.parse_args()
    lat: list[float] = []
    halts: list[float] = []
    with tempfile.TemporaryDirectory() as d:
        for i in range(a.runs):
            dt, halt_dt, rc = one_run(Path(d), i, a.ceiling, a.steps, a.meter)
            lat.append(dt * 1000)
            halts.append(halt_dt * 1000)
            print(f"run {i + 1:2d}: tree stopped {dt * 1000:7.1f} ms, halt in state file {halt_dt * 1000:6.1f} ms "
                  f"(guard exit {rc})", flush=True)
    lat.sort()
    p50 = statistics.median(lat)
    p99 = lat[min(len(lat) - 1, int(round(0.99 * (len(lat) - 1))))]
    print(f"claude halt latency (--meter {a.meter}) over {len(lat)} runs: p50 {p50:.0f} ms, p99 {p99:.0f} ms, "
          f"min {lat[0]:.0f} ms, max {lat[-1]:.0f} ms; halt written p50 {statistics.median(halts):.0f} ms")


if __name__ == "__main__":
    main()
