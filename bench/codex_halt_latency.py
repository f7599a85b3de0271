"""Halt latency for the Codex CLI under guard, with a 5 s tool in flight.

The fake Responses API answers Codex's first request with an `exec_command` call (`sleep 5`) and
a usage that crosses the run's $0.50 ceiling. Codex writes its token_usage_record as the response
lands and starts the tool; guard must stop the whole tree (Codex, its sandbox, the shell, the
sleep) without waiting for the tool. Measured from the fake writing the response's last byte to
the last process of the tree gone, over N runs of each meter and --on-limit action, interleaved.
Prints p50/p90/max per configuration, and the part until the halt is written to the state file.

    python bench/codex_halt_latency.py [--runs 7] [--meter native,proxy] [--on-limit kill,stop]
"""
from __future__ import annotations

import argparse
import json
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

from bench._common import pct
from tests.fakes.responses_server import FakeResponses, Usage, run, say
from tests.helpers import guard_cmd, guard_env

CODEX = os.environ.get("GUARD_TEST_CODEX") or str(REPO / ".tools/codex/node_modules/.bin/codex")
TOOL_SECONDS = 5
RUN_TIMEOUT = 60.0
PRICES = {"gpt-6.2-sol": {"input_cost_per_token": 1e-6, "output_cost_per_token": 2e-6}}


def _alive(p: psutil.Process) -> bool:
    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _tree(guard: psutil.Process) -> set[psutil.Process]:
    try:
        kids = guard.children(recursive=True)
    except psutil.Error:
        return set()
    out = set()
    for k in kids:
        try:
            if "guard.supervisor" not in " ".join(k.cmdline()):   # guard's own sentinel
                out.add(k)
        except psutil.Error:
            pass
    return out


def one_run(tmp: Path, i: int, meter: str, action: str) -> tuple[float, float, int]:
    """(tree stopped, halt written) in seconds after the crossing response, and guard's exit code."""
    root = tmp / f"r{i}-{meter}-{action}"
    home, codex_home, work = root / "guard", root / "codex", root / "work"
    for d in (home, codex_home, work):
        d.mkdir(parents=True)
    prices = root / "prices.json"
    prices.write_text(json.dumps(PRICES))
    crossing = run(f"sleep {TOOL_SECONDS}", usage=Usage(input_tokens=1_000_000, output_tokens=100))
    # 426: a direct (native) Codex falls back from its WebSocket at once, as through the proxy
    with FakeResponses([crossing, say("done")], ws_status=426) as fake:
        # no writable /tmp: Codex's sandbox would show an empty /tmp/.git to other programs
        (codex_home / "config.toml").write_text(f'openai_base_url = "{fake.url}"\n[sandbox_workspace_write]\n'
                                                'exclude_slash_tmp = true\nexclude_tmpdir_env_var = true\n')
        env = guard_env(home, CODEX_HOME=str(codex_home), OPENAI_API_KEY="sk-bench")
        env["PATH"] = f"{Path(CODEX).parent}{os.pathsep}{env['PATH']}"
        env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])   # this tree's guard
        argv = guard_cmd("--meter", meter, "--prices", str(prices), "--max-usd", "0.50", "--on-limit", action,
                         "codex", "exec", "--skip-git-repo-check", "-s", "workspace-write", "run the tool")
        proc = subprocess.Popen(argv, env=env, cwd=work, stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            guard = psutil.Process(proc.pid)
            members: set[psutil.Process] = set()
            halt_at: float | None = None
            deadline = time.monotonic() + RUN_TIMEOUT
            last_scan = 0.0
            while not fake.completed():
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError(f"run {i}: codex never got its response (guard exit {proc.poll()})")
                if time.monotonic() - last_scan > 0.05:
                    last_scan = time.monotonic()
                    members |= _tree(guard)
                time.sleep(0.002)
            served_at = fake.completed()[0].finished_at or time.time()
            members |= _tree(guard)
            while True:
                now = time.time()
                if halt_at is None:
                    for st in home.glob("runs/*/state.json"):
                        try:
                            if '"halt": {' in st.read_text():
                                halt_at = now
                        except OSError:
                            pass
                if not any(_alive(m) for m in members) and not _tree(guard):
                    gone_at = now
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"run {i}: the tree was still running after {RUN_TIMEOUT:.0f} s")
                time.sleep(0.002)
            rc = proc.wait(timeout=RUN_TIMEOUT)
            if len(fake.requests) != 1:
                raise RuntimeError(f"run {i}: codex sent {len(fake.requests)} requests: the tool was not in flight")
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return gone_at - served_at, (halt_at or gone_at) - served_at, rc


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--meter", default="native,proxy")
    ap.add_argument("--on-limit", default="kill,stop")
    a = ap.parse_args()
    if not Path(CODEX).exists():
        sys.exit(f"codex not installed at {CODEX}: run scripts/install-test-deps")
    configs = [(m, act) for m in a.meter.split(",") for act in a.on_limit.split(",")]
    stopped: dict[tuple[str, str], list[float]] = {c: [] for c in configs}
    written: dict[tuple[str, str], list[float]] = {c: [] for c in configs}
    failures = 0
    with tempfile.TemporaryDirectory(prefix="guard-bench-codex-") as d:
        for i in range(a.runs):
            for meter, action in configs:       # interleaved: a busy moment hits every configuration
                try:
                    dt, halt_dt, rc = one_run(Path(d), i, meter, action)
                except (RuntimeError, subprocess.TimeoutExpired, psutil.Error) as e:
                    failures += 1
                    print(f"run {i + 1:2d} {meter:6s} {action:4s}: failed: {e}", flush=True)
                    continue
                stopped[(meter, action)].append(dt * 1000)
                written[(meter, action)].append(halt_dt * 1000)
                print(f"run {i + 1:2d} {meter:6s} {action:4s}: tree stopped {dt * 1000:7.1f} ms, "
                      f"halt written {halt_dt * 1000:7.1f} ms (guard exit {rc})", flush=True)
    print(f"codex halt latency, crossing response to tree stopped, {TOOL_SECONDS} s tool in flight:")
    for c in configs:
        lat = stopped[c]
        if not lat:
            print(f"  --meter {c[0]:6s} --on-limit {c[1]:4s}: no successful run")
            continue
        print(f"  --meter {c[0]:6s} --on-limit {c[1]:4s}: p50 {statistics.median(lat):6.0f} ms, "
              f"p90 {pct(lat, 90):6.0f} ms, max {max(lat):6.0f} ms over {len(lat)} runs; "
              f"halt written p50 {statistics.median(written[c]):5.0f} ms")
    if failures:
        print(f"  {failures} run(s) failed")


if __name__ == "__main__":
    main()
