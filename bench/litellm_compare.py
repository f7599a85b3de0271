"""guard's metering proxy beside LiteLLM's proxy, in front of the same fake upstream, with the
same client, interleaved in one run: req/s at 8 connections, a 10 MB stream, TTFB p50/p99.
Not part of the test suite.

    python bench/litellm_compare.py --install            # LiteLLM 1.108.7 (else the newest) in its
                                                         # own virtualenv under a temp dir
    python bench/litellm_compare.py --install --venv DIR # ... in DIR, kept for the next run
    python bench/litellm_compare.py --litellm PATH       # an existing `litellm` executable
"""
from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import tempfile
import time
import venv
from contextlib import nullcontext
from pathlib import Path

from _common import pct
from _load import CONDITIONS, busy_cores
from _upstream import MODEL, Upstream
from proxy_latency import run_client

VERSION = "1.108.7"


def install(where: Path) -> Path:
    exe = where / "bin" / "litellm"
    if exe.exists():
        return exe
    venv.create(where, with_pip=True)
    pip = [str(where / "bin" / "python"), "-m", "pip", "install", "-q"]
    if subprocess.run([*pip, f"litellm[proxy]=={VERSION}"]).returncode != 0:
        print(f"litellm {VERSION} is not available: installing the newest", flush=True)
        subprocess.run([*pip, "litellm[proxy]"], check=True)
    return where / "bin" / "litellm"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LiteLLM:
    """One LiteLLM proxy worker routing MODEL to `upstream`."""

    def __init__(self, exe: Path, upstream: str, work: Path) -> None:
        config = work / f"litellm-{free_port()}.yaml"
        config.write_text(f"model_list:\n  - model_name: {MODEL}\n    litellm_params:\n"
                          f"      model: anthropic/{MODEL}\n      api_base: {upstream}\n"
                          f"      api_key: sk-ant-bench\n")
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        self.log = open(work / f"litellm-{port}.log", "w")
        self.proc = subprocess.Popen([str(exe), "--config", str(config), "--port", str(port),
                                      "--num_workers", "1"], stdout=self.log, stderr=subprocess.STDOUT,
                                     env={**os.environ, "LITELLM_LOG": "ERROR",
                                          # no master key: a local bench, nothing to protect
                                          "LITELLM_DANGEROUSLY_PERMIT_WEAK_OR_UNSET_MASTER_KEY": "true"})
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return
            except OSError:
                if self.proc.poll() is not None:
                    break
                time.sleep(0.5)
        self.close()
        tail = Path(self.log.name).read_text()[-3000:]
        raise SystemExit(f"LiteLLM did not start:\n{tail}")

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()
        self.log.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--install", action="store_true")
    ap.add_argument("--venv", type=Path, help="where --install puts LiteLLM (default: a temp dir)")
    ap.add_argument("--litellm", type=Path)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--mb", type=float, default=10)
    a = ap.parse_args()
    if not a.install and not a.litellm:
        ap.error("--install (a private virtualenv) or --litellm PATH")
    with tempfile.TemporaryDirectory() as d:
        work = Path(d)
        exe = install(a.venv or work / "venv") if a.install else a.litellm
        print(f"guard --meter proxy run vs LiteLLM proxy (1 worker) vs direct; {CONDITIONS}; "
              f"{a.rounds} interleaved rounds; {os.cpu_count()} cores")
        with Upstream(4096) as small, Upstream(int(a.mb * 1e6)) as big:
            lite_small, lite_big = LiteLLM(exe, small.url, work), LiteLLM(exe, big.url, work)
            try:
                for label, load in (("idle", nullcontext()), (f"both cores busy ({os.cpu_count()} busy loops)", busy_cores())):
                    got = {p: {"rps": [], "mb_s": [], "ttfb": []} for p in ("direct", "guard", "litellm")}
                    with load:
                        for r in range(a.rounds):
                            for p in got:
                                s_url, b_url, home = {
                                    "direct": (small.url, big.url, None),
                                    "guard": (small.url, big.url, work / f"home-{label[:4]}{r}"),
                                    "litellm": (lite_small.url, lite_big.url, None)}[p]
                                if res := run_client(s_url, ["rps", "8", str(a.seconds)], home):
                                    got[p]["rps"].append(res["rps"])
                                if res := run_client(b_url, ["stream"], home):
                                    got[p]["mb_s"].append(res["mb_s"])
                                if res := run_client(s_url, ["latency", str(a.requests)], home):
                                    got[p]["ttfb"].extend(res["ttfb_ms"])
                    print(f"  {label}:")
                    for p, g in got.items():
                        if not (g["rps"] and g["mb_s"] and g["ttfb"]):
                            print(f"    {p:8s} failed (see stderr)")
                            continue
                        print(f"    {p:8s} {statistics.median(g['rps']):8.0f} req/s  "
                              f"{statistics.median(g['mb_s']):7.1f} MB/s  TTFB p50 {pct(g['ttfb'], 50):6.2f} ms  "
                              f"p99 {pct(g['ttfb'], 99):6.2f} ms")
            finally:
                lite_small.close()
                lite_big.close()


if __name__ == "__main__":
    main()
