"""guard's memory and CPU through a long session on the usage-file protocol (`guard run`):

- RSS of the guard process as usage events accumulate in one run, sampled every --every events
  once guard has metered them, with the growth per event and the RSS projected at 1M events (run
  `--events 1000000` for the measured figure; the default keeps the bench short);
- guard's CPU while the agent appends --rate lines/s (10 per write), idle and with both cores
  busy, interleaved round by round with a direct run of the same writer (GUARD_USAGE_FILE set,
  no guard): guard's own CPU (its process, all threads, the agent not included) in % of one
  core and ms per line, beside the writer's own CPU direct and under guard.

    python bench/memory_bench.py [--events 100000] [--every 20000] [--rate 1000] [--rate-seconds 10] [--rounds 3]
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
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path

import psutil
from _common import bench_env
from _load import busy_cores

# Appends `total` distinct usage lines at `rate` lines/s (0: as fast as it can; then, with
# `batch`, it waits for DONE.N before writing batch N), then waits.
AGENT = r"""
import json, os, sys, time
total, rate, done, batch = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3], int(sys.argv[4])
line = '{"input_tokens": 1, "output_tokens": 1, "model": "claude-sonnet-4-5", "id": "e%d"}\n'
t0 = time.monotonic()
with open(os.environ["GUARD_USAGE_FILE"], "a") as f:
    for i in range(0, total, 10):
        if batch and i and i % batch == 0:
            while not os.path.exists(f"{done}.{i // batch}"):
                time.sleep(0.05)
        f.write("".join(line % j for j in range(i, min(i + 10, total))))
        f.flush()
        if rate:
            delay = t0 + (i + 10) / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
open(done, "w").close()
time.sleep(3600)
"""
DEADLINE = 3600.0


def metered(env: dict[str, str]) -> int:
    """Input tokens guard has recorded for the (only) run: one per event."""
    out = subprocess.run([sys.executable, "-m", "guard", "runs", "--json"], env=env,
                         capture_output=True, text=True, timeout=120)
    runs = json.loads(out.stdout or "[]")
    return int(runs[0]["usage"]["input_tokens"]) if runs else 0


def start(total: int, rate: float, work: Path, batch: int = 0) -> tuple[subprocess.Popen, dict[str, str], Path]:
    env = bench_env(work / f"home{time.monotonic_ns()}")
    done = work / f"done{time.monotonic_ns()}"
    g = subprocess.Popen([sys.executable, "-m", "guard", "run", "--", sys.executable, "-c", AGENT,
                          str(total), str(rate), str(done), str(batch)], env=env, stdin=subprocess.DEVNULL,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    return g, env, done


def stop(g: subprocess.Popen) -> None:
    try:
        os.killpg(g.pid, 9)
    except OSError:
        pass
    g.wait()


def memory(total: int, every: int, work: Path) -> None:
    every = max(10, every // 10 * 10)
    g, env, done = start(total, 0, work, every)
    proc = psutil.Process(g.pid)
    samples: list[tuple[int, float]] = []
    deadline = time.monotonic() + DEADLINE
    try:
        time.sleep(1.0)
        samples.append((0, proc.memory_info().rss / 2**20))
        target = every
        while target <= total and time.monotonic() < deadline:
            n = metered(env)
            if n >= target:
                samples.append((n, proc.memory_info().rss / 2**20))
                print(f"    {n:>9,d} events metered: RSS {samples[-1][1]:7.1f} MB", flush=True)
                Path(f"{done}.{target // every}").touch()  # the next batch
                target += every
            else:
                time.sleep(1.0)
    finally:
        stop(g)
    if len(samples) < 3:
        print("    not enough samples before the deadline")
        return
    (n1, r1), (n2, r2) = samples[1], samples[-1]
    per = (r2 - r1) * 2**20 / max(1, n2 - n1)
    projected = r2 + per * (1_000_000 - n2) / 2**20
    print(f"  growth {per / 1024:.3f} KB per event; RSS projected at 1M events: {projected:.0f} MB "
          f"(target <= 60 MB){'' if n2 < 1_000_000 else f'; measured at {n2:,d}: {r2:.0f} MB'}")


def _window(proc: psutil.Process, writer: psutil.Process | None, done: Path, settled: Callable[[], bool],
            seconds: float) -> tuple[float, float, float] | None:
    """(elapsed, CPU of proc, CPU of writer) from 1.5 s after the start (past guard's start-up)
    until the writer is done and `settled`; None if that does not come in time."""
    time.sleep(1.5)
    c0 = proc.cpu_times()
    w0 = writer.cpu_times() if writer else None
    t0 = time.monotonic()
    deadline = t0 + seconds * 10 + 60
    while not done.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    w1 = writer.cpu_times() if writer else None
    while not settled() and time.monotonic() < deadline:
        time.sleep(0.2)
    c1 = proc.cpu_times()
    if not done.exists() or not settled():
        return None
    wcpu = (w1.user + w1.system - w0.user - w0.system) if w0 and w1 else 0.0
    return time.monotonic() - t0, (c1.user + c1.system) - (c0.user + c0.system), wcpu


def cpu_guarded(rate: float, seconds: float, work: Path) -> tuple[float, float] | None:
    """guard's own CPU in % of a core, and the writer's, while the writer appends at `rate`."""
    total = int(rate * seconds)
    g, env, done = start(total, rate, work)
    proc = psutil.Process(g.pid)
    try:
        time.sleep(0.5)
        writer = next((p for p in proc.children(recursive=True) if AGENT in p.cmdline()), None)
        got = _window(proc, writer, done, lambda: metered(env) >= total, seconds)
    finally:
        stop(g)
    if got is None:
        return None
    elapsed, cpu, wcpu = got
    return cpu / elapsed * 100, wcpu / elapsed * 100


def cpu_direct(rate: float, seconds: float, work: Path) -> float | None:
    """The same writer without guard: its own CPU in % of a core."""
    total = int(rate * seconds)
    env = bench_env(work / f"home{time.monotonic_ns()}")
    env["GUARD_USAGE_FILE"] = str(work / f"direct{time.monotonic_ns()}.jsonl")
    done = work / f"done{time.monotonic_ns()}"
    w = subprocess.Popen([sys.executable, "-c", AGENT, str(total), str(rate), str(done), "0"], env=env,
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         start_new_session=True)
    try:
        proc = psutil.Process(w.pid)
        got = _window(proc, None, done, lambda: True, seconds)
    finally:
        stop(w)
    return None if got is None else got[1] / got[0] * 100


def cpu_at_rate(label: str, rate: float, seconds: float, rounds: int, work: Path) -> None:
    guard_pct: list[float] = []
    writer_under: list[float] = []
    writer_direct: list[float] = []
    for _ in range(rounds):   # interleaved: both see the same moment of the machine
        d = cpu_direct(rate, seconds, work)
        g = cpu_guarded(rate, seconds, work)
        if d is not None:
            writer_direct.append(d)
        if g is not None:
            guard_pct.append(g[0])
            writer_under.append(g[1])
    if not guard_pct or not writer_direct:
        print(f"  {label}: the agent did not finish writing in time")
        return
    pct = statistics.median(guard_pct)
    wd, wg = statistics.median(writer_direct), statistics.median(writer_under)
    print(f"  {label}: guard {pct:.1f}% of a core, {pct * 10 / rate:.4f} ms per line "
          f"(median of {len(guard_pct)}; rounds {', '.join(f'{p:.1f}%' for p in guard_pct)}); "
          f"the writer itself: {wd:.2f}% of a core direct, {wg:.2f}% under guard")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=100_000)
    ap.add_argument("--every", type=int, default=20_000)
    ap.add_argument("--rate", type=float, default=1000.0)
    ap.add_argument("--rate-seconds", type=float, default=10.0)
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        work = Path(d)
        print(f"guard run -- AGENT appending {a.events:,d} distinct usage lines as fast as it can, "
              f"one run; {os.cpu_count()} cores")
        memory(a.events, a.every, work)
        print(f"guard CPU while the agent appends {a.rate:.0f} lines/s (10 per write) for {a.rate_seconds:.0f} s, "
              f"interleaved with the writer alone (target <= 5% of a core, <= 0.05 ms per line):")
        for label, load in (("idle", nullcontext()), (f"both cores busy ({os.cpu_count()} busy loops)", busy_cores())):
            with load:
                cpu_at_rate(label, a.rate, a.rate_seconds, a.rounds, work)


if __name__ == "__main__":
    main()
