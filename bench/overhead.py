"""guard's own cost: CPU and RSS while supervising an idle agent, and PTY passthrough throughput.
Targets: CPU <= 0.5% of a core over 30 s idle, RSS <= 60 MB, 50 MB through the PTY at >= 70%
of the throughput without guard.

    python bench/overhead.py [--idle 30] [--mb 50]
"""
from __future__ import annotations

import argparse
import os
import pty
import subprocess
import sys
import time

import psutil
from _common import bench_env


def idle_cost(seconds: float) -> tuple[float, float]:
    env = bench_env()
    g = subprocess.Popen([sys.executable, "-m", "guard", "run", "--", "sleep", str(seconds + 5)],
                         env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    proc = psutil.Process(g.pid)
    time.sleep(2)  # past start-up
    c0 = proc.cpu_times()
    t0 = time.monotonic()
    rss = 0
    while time.monotonic() - t0 < seconds:
        rss = max(rss, proc.memory_info().rss)
        time.sleep(1)
    c1 = proc.cpu_times()
    cpu = (c1.user + c1.system - c0.user - c0.system) / (time.monotonic() - t0) * 100
    g.terminate()
    g.wait()
    return cpu, rss / 2**20


def pty_throughput(cmd: list[str], env: dict[str, str], total: int) -> float:
    """MB/s read from the PTY master while `cmd` writes `total` bytes to its terminal, timed
    from the first byte (start-up is not throughput)."""
    pid, master = pty.fork()
    if pid == 0:
        os.execvpe(cmd[0], cmd, env)
    got = 0
    t0 = 0.0
    while True:
        try:
            chunk = os.read(master, 1 << 16)
        except OSError:
            break
        if not chunk:
            break
        if not got:
            t0 = time.monotonic()
        got += len(chunk)
    os.waitpid(pid, 0)
    elapsed = time.monotonic() - t0
    if got < total:
        raise SystemExit(f"only {got} of {total} bytes arrived")
    return got / elapsed / 2**20


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--idle", type=float, default=30)
    ap.add_argument("--mb", type=int, default=50)
    args = ap.parse_args()
    total = args.mb * 2**20
    writer = [sys.executable, "-c",
              f"import os\nb=b'x'*1023+b'\\n'\nfor _ in range({total // 1024}): os.write(1, b)"]
    env = bench_env()
    direct = pty_throughput(writer, env, total)
    guarded = pty_throughput([sys.executable, "-m", "guard", "run", "--", *writer], env, total)
    print(f"PTY passthrough of {args.mb} MB: {guarded:.0f} MB/s under guard vs {direct:.0f} MB/s direct "
          f"({guarded / direct * 100:.0f}%)")
    cpu, rss = idle_cost(args.idle)
    print(f"idle agent for {args.idle:.0f} s: guard CPU {cpu:.2f}% of a core, max RSS {rss:.1f} MB")


if __name__ == "__main__":
    main()
