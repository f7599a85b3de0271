"""The metering proxy as users get it: `guard --meter proxy run -- CLIENT` (run loop, pricing
and ledger included) against the same client talking straight to the upstream, interleaved in one
run, idle and with both cores busy:

- req/s with 8 keep-alive connections (small streamed response);
- a 10 MB streamed response, MB/s;
- added time to first byte, p50 and p99 (sequential requests on one connection);
- guard's CPU per proxied request (psutil cpu_times of the guard process / requests).

    python bench/proxy_latency.py [--rounds 3] [--requests 300] [--seconds 2] [--mb 10] [--baseline CHECKOUT]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from contextlib import nullcontext
from pathlib import Path

from _common import REPO, bench_env, pct
from _load import CONDITIONS, busy_cores
from _upstream import Upstream

HERE = Path(__file__).resolve().parent
CLIENT = str(HERE / "_client.py")
TIMEOUT = 300


def run_client(base: str, args: list[str], guard_home: Path | None, repo: Path = REPO) -> dict | None:
    """One client run, direct (guard_home None) or under the guard of `repo`; None if it failed or hung."""
    if guard_home is None:
        env = {**os.environ, "ANTHROPIC_BASE_URL": base}
        argv = [sys.executable, CLIENT, *args]
    else:
        # this tree's guard, not whichever one is installed
        env = {**bench_env(guard_home), "ANTHROPIC_BASE_URL": base,
               "PYTHONPATH": os.pathsep.join([str(repo), os.environ.get("PYTHONPATH", "")])}
        argv = [sys.executable, "-m", "guard", "--meter", "proxy", "run", "--",
                sys.executable, CLIENT, *args, "--parent-cpu"]
    try:
        out = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=TIMEOUT,
                             stdin=subprocess.DEVNULL, cwd=HERE)
    except subprocess.TimeoutExpired:
        return None
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
    if out.returncode != 0 or not lines:
        sys.stderr.write(f"client {' '.join(args)} failed ({out.returncode}): {out.stderr[-400:]}\n")
        return None
    return json.loads(lines[-1])  # type: ignore[no-any-return]


def measure(small: str, big: str, a: argparse.Namespace, home: Path) -> dict[str, dict[str, list]]:
    paths = {"direct": REPO, "guard": REPO, **({"baseline": a.baseline} if a.baseline else {})}
    got: dict[str, dict[str, list]] = {p: {"rps": [], "mb_s": [], "ttfb": [], "cpu_ms": []} for p in paths}
    for r in range(a.rounds):
        for path, repo in paths.items():  # interleaved: all see the same machine
            gh = home / f"{path}{r}" if path != "direct" else None
            res = run_client(small, ["rps", "8", str(a.seconds)], gh, repo)
            if res:
                got[path]["rps"].append(res["rps"])
                if "parent_cpu_s" in res:
                    got[path]["cpu_ms"].append(res["parent_cpu_s"] * 1000 / res["requests"])
            res = run_client(big, ["stream"], gh, repo)
            if res:
                got[path]["mb_s"].append(res["mb_s"])
            res = run_client(small, ["latency", str(a.requests)], gh, repo)
            if res:
                got[path]["ttfb"].extend(res["ttfb_ms"])
    return got


def report(label: str, got: dict[str, dict[str, list]], mb: float, which: str = "guard") -> None:
    d, g = got["direct"], got[which]
    print(f"  {label}" + ("" if which == "guard" else f", {which} guard") + ":")

    def med(xs: list[float]) -> float | None:
        return statistics.median(xs) if xs else None

    def row(name: str, dv: float | None, gv: float | None, unit: str) -> None:
        if dv is None or gv is None:
            print(f"    {name:28s} (failed: see stderr)")
            return
        print(f"    {name:28s} direct {dv:9.1f} {unit:5s} guard {gv:9.1f} {unit:5s} = {gv / dv:4.0%} of direct")

    row("req/s, 8 connections", med(d["rps"]), med(g["rps"]), "req/s")
    row(f"{mb:g} MB stream", med(d["mb_s"]), med(g["mb_s"]), "MB/s")
    if d["ttfb"] and g["ttfb"]:
        for p in (50, 99):
            dv, gv = pct(d["ttfb"], p), pct(g["ttfb"], p)
            print(f"    TTFB p{p:<2d}                     direct {dv:9.2f} ms    guard {gv:9.2f} ms    "
                  f"= +{gv - dv:.2f} ms added")
    if g["cpu_ms"]:
        print(f"    guard CPU per proxied request {statistics.median(g['cpu_ms']):.3f} ms "
              f"(run loop, pricing, ledger and proxy; median over runs)")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--requests", type=int, default=300)
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--mb", type=float, default=10)
    ap.add_argument("--idle-only", action="store_true")
    ap.add_argument("--baseline", type=Path, help="another guard checkout, measured in the same rounds")
    a = ap.parse_args()
    print(f"guard --meter proxy run -- CLIENT vs CLIENT -> upstream; {CONDITIONS}; "
          f"{a.rounds} interleaved rounds; {os.cpu_count()} cores")
    with tempfile.TemporaryDirectory() as d, Upstream(4096) as small, Upstream(int(a.mb * 1e6)) as big:
        loads = [("idle", nullcontext())]
        if not a.idle_only:
            loads.append((f"both cores busy ({os.cpu_count()} busy loops)", busy_cores()))
        for label, load in loads:
            with load:
                got = measure(small.url, big.url, a, Path(d) / label[:4])
                report(label, got, a.mb)
                if a.baseline:
                    report(label, got, a.mb, "baseline")


if __name__ == "__main__":
    main()
