"""PTY passthrough: how fast the agent's terminal output reaches the developer's terminal through
`guard run`, beside the same output written straight to the terminal (direct), through util-linux
`script`, and through a plain single-loop pty copy. Interleaved in one run, idle and with both cores
busy (this script's own busy loops), as ratios against direct.

    python bench/pty_bench.py [--mb 20] [--rounds 5]
"""
from __future__ import annotations

import argparse
import errno
import os
import select
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import REPO, bench_env
from _load import busy_cores

# The simplest correct pty proxy: one loop, select then read then write.
PLAIN_COPY = r"""
import os, pty, select, sys, tty
pid, fd = pty.fork()
if pid == 0:
    os.execvp(sys.argv[1], sys.argv[1:])
try:
    tty.setraw(0)
except Exception:
    pass
while True:
    r, _, _ = select.select([fd, 0], [], [])
    if fd in r:
        try:
            data = os.read(fd, 65536)
        except OSError:
            break
        if not data:
            break
        view = memoryview(data)
        while view:
            view = view[os.write(1, view):]
    if 0 in r:
        os.write(fd, os.read(0, 65536))
os.waitpid(pid, 0)
"""

TRIAL_TIMEOUT = 300.0


def modes(payload: Path, workdir: Path) -> dict[str, list[str]]:
    cat = ["cat", str(payload)]
    copier = workdir / "plain_copy.py"
    copier.write_text(PLAIN_COPY)
    return {
        "direct": cat,
        "script": ["script", "-q", "-e", "-c", " ".join(cat), "/dev/null"],
        "plain pty copy": [sys.executable, str(copier), *cat],
        "guard run": [sys.executable, "-m", "guard", "run", "--", *cat],
    }


def trial(argv: list[str], env: dict[str, str]) -> float | None:
    """Seconds from the first byte the terminal sees to the last (start-up excluded: this is
    the copy's throughput); None if the command did not end within TRIAL_TIMEOUT."""
    master, slave = os.openpty()
    t0 = time.perf_counter()
    p = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, env=env, start_new_session=True)
    os.close(slave)
    deadline = t0 + TRIAL_TIMEOUT
    first = last = 0.0
    try:
        while True:
            left = deadline - time.perf_counter()
            if left <= 0:
                return None
            ready, _, _ = select.select([master], [], [], left)
            if not ready:
                continue
            try:
                data = os.read(master, 1 << 16)
            except OSError as e:
                if e.errno == errno.EIO:  # every slave fd closed
                    break
                raise
            if not data:
                break
            last = time.perf_counter()
            first = first or last
        p.wait(timeout=max(1.0, deadline - time.perf_counter()))
        return last - first
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        os.close(master)


def measure(cmds: dict[str, list[str]], env: dict[str, str], rounds: int) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {name: [] for name in cmds}
    for _ in range(rounds):
        for name, argv in cmds.items():  # interleaved: every mode sees the same machine
            t = trial(argv, env)
            if t is not None:
                times[name].append(t)
    return times


def report(label: str, times: dict[str, list[float]], mb: float) -> None:
    direct = statistics.median(times["direct"]) if times["direct"] else None
    print(f"  {label}:")
    for name, ts in times.items():
        if not ts:
            print(f"    {name:15s} timed out")
            continue
        t = statistics.median(ts)
        ratio = f"{direct / t:6.0%} of direct" if direct else ""
        print(f"    {name:15s} {mb / t:7.1f} MB/s  {ratio}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mb", type=float, default=20.0, help="output size (default 20 MB)")
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        work = Path(d)
        payload = work / "out.txt"
        line = b"guard pty bench: " + b"0123456789abcdef" * 4 + b"\n"
        payload.write_bytes(line * int(args.mb * 1e6 / len(line)))
        mb = payload.stat().st_size / 1e6
        env = bench_env(work / "home")
        env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])   # this tree's guard
        cmds = modes(payload, work)
        print(f"PTY passthrough of {mb:.0f} MB of text lines (`cat` in a pty), median of {args.rounds} "
              f"interleaved rounds, {os.cpu_count()} cores")
        report("idle", measure(cmds, env, args.rounds), mb)
        with busy_cores():
            report(f"both cores busy ({os.cpu_count()} busy loops)", measure(cmds, env, args.rounds), mb)


if __name__ == "__main__":
    main()
