"""The usage-file follower under a flood: halt latency at 10k lines/s (target p99 <= 100 ms), and
guard's CPU per usage line (target <= 0.05 ms), of the reading path alone and of the whole guard.

    python bench/follow_flood.py [--runs 10] [--rate 10000] [--lines 50000] [--busy]

--busy: with both cores kept busy (one busy loop per core) throughout.

Halt latency: the agent appends lines at --rate, each costing $0.001, under --max-usd 1; it
notes when it wrote line 1000 (the crossing one) and when guard's SIGINT reached it.
CPU per line: guard (its own CPU, the agent's subtracted) while the agent writes --lines lines
as fast as it can, no ceiling reached, divided by the lines guard recorded.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path

from _common import bench_env, pct
from _load import busy_cores

FLOOD = r"""
import json, os, signal, sys, time
out, rate, lines = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
times = []
def done(*_):
    t = time.time()
    own = os.times()
    with open(out, "w") as f:
        json.dump({"signal": t, "written": times, "cpu": own.user + own.system}, f)
    os._exit(0)
signal.signal(signal.SIGINT, done)
signal.signal(signal.SIGTERM, done)
line = '{"input_tokens": 10, "output_tokens": 1, "cost_usd": 0.001, "model": "claude-sonnet-4-6", "id": "%d"}\n'
with open(os.environ["GUARD_USAGE_FILE"], "a", buffering=1) as f:
    t0 = time.monotonic()
    for i in range(lines if lines > 0 else 10**9):
        due = t0 + i / rate if rate > 0 else 0
        ahead = due - time.monotonic()
        if ahead > 0.001:  # sleep, not spin: the machine's cores are guard's too
            time.sleep(ahead)
        f.write(line % i)
        times.append(time.time())
done()
"""


def run(env: dict[str, str], agent: Path, out: Path, flags: list[str], rate: float, lines: int
        ) -> tuple[dict, resource.struct_rusage]:
    g = subprocess.Popen([sys.executable, "-m", "guard", *flags, "run", "--", sys.executable, str(agent),
                          str(out), str(rate), str(lines)], env=env, stdin=subprocess.DEVNULL,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _, _, usage = os.wait4(g.pid, 0)
    except BaseException:
        g.kill()
        raise
    g.returncode = 0
    return json.loads(out.read_text()), usage


class _CountingSink:
    def __init__(self) -> None:
        self.events = 0

    def emit(self, event: object) -> None:
        self.events += 1

    def notice(self, key: str, message: str) -> None:
        pass

    def set_accuracy(self, accuracy: str) -> None:
        pass


def follower_cpu_per_line(workdir: Path, lines: int) -> float:
    """The reading path alone (follower, JSON, numbers, event), in this process: ms per line."""
    from guard.adapters.command import CommandAdapter
    from guard.tail import JsonlFollower

    path = workdir / "usage.jsonl"
    line = '{"input_tokens": 10, "output_tokens": 1, "cost_usd": 0.001, "model": "claude-sonnet-4-6", "id": "%d"}\n'
    path.write_text("".join(line % i for i in range(lines)))
    adapter = CommandAdapter()
    sink = _CountingSink()
    adapter._sink = sink  # type: ignore[assignment]
    follower = JsonlFollower(workdir, path.name, on_ref_record=adapter._on_record, exact=True)
    t0 = time.process_time()
    follower.poll()
    cpu = time.process_time() - t0
    assert sink.events == lines
    return cpu / lines * 1000


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--rate", type=float, default=10000)
    ap.add_argument("--lines", type=int, default=50000)
    ap.add_argument("--busy", action="store_true", help="keep every core busy throughout")
    args = ap.parse_args()
    print(f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at start"
          f"{', one busy loop per core' if args.busy else ''}")
    with (busy_cores() if args.busy else nullcontext()), tempfile.TemporaryDirectory() as d:
        agent = Path(d) / "flood.py"
        agent.write_text(FLOOD)
        lat = []
        for i in range(args.runs):
            out = Path(d) / f"halt{i}.json"
            got, _ = run(bench_env(Path(d) / f"h{i}"), agent, out, ["--max-usd", "1", "--on-limit", "stop"],
                         args.rate, 0)
            crossing = got["written"][998]  # the 999th line: the earliest guard may count as crossing
            lat.append((got["signal"] - crossing) * 1000)
        print(f"halt latency at {args.rate:.0f} lines/s ({args.runs} runs): p50 {pct(lat, 50):.1f} ms, "
              f"p99 {pct(lat, 99):.1f} ms, max {max(lat):.1f} ms")

        print(f"follower CPU per usage line (reading path alone): "
              f"{follower_cpu_per_line(Path(d), args.lines):.4f} ms")
        home = Path(d) / "cpu"
        env = bench_env(home)
        got, usage = run(env, agent, Path(d) / "cpu.json", ["--max-usd", "1000000"], 0, args.lines)
        runs = json.loads(subprocess.run([sys.executable, "-m", "guard", "runs", "--json"], env=env,
                                         capture_output=True, text=True, check=True).stdout)
        recorded = runs[0]["usage"]["steps"]
        guard_cpu = usage.ru_utime + usage.ru_stime - got["cpu"]
        print(f"guard CPU per usage line: {guard_cpu / recorded * 1000:.4f} ms "
              f"({recorded} of {len(got['written'])} lines recorded, guard CPU {guard_cpu:.2f} s, "
              f"including start-up)")


if __name__ == "__main__":
    main()
