"""What the metering proxy adds on loopback: time to first byte and total time of a small
streamed response (p50/p90 over many requests, keep-alive connections), and the throughput of a
10 MB streamed response, through the proxy vs straight to the upstream.

    python bench/proxy_latency.py [--requests 300] [--mb 10]

Targets (issue 5): p50 added TTFB <= 5 ms; 10 MB throughput >= 80% of direct."""
from __future__ import annotations

import argparse
import http.client
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from guard.pricing import Pricer  # noqa: E402
from guard.proxy import OpenGate, start_proxy  # noqa: E402
from tests.fakes.proxy_upstreams import RecordingSink  # noqa: E402

BODY = json.dumps({"model": "claude-sonnet-4-5", "max_tokens": 1024, "stream": True,
                   "messages": [{"role": "user", "content": "hello " * 500}]}).encode()


def timed_requests(base: str, n: int) -> tuple[list[float], list[float]]:
    u = urlsplit(base)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=60)
    ttfb, total = [], []
    for _ in range(n):
        t0 = time.perf_counter()
        conn.request("POST", u.path + "/v1/messages", body=BODY,
                     headers={"content-type": "application/json", "x-api-key": "bench"})
        resp = conn.getresponse()
        resp.read1(1)
        t1 = time.perf_counter()
        while resp.read1(65536):
            pass
        t2 = time.perf_counter()
        ttfb.append((t1 - t0) * 1000)
        total.append((t2 - t0) * 1000)
    conn.close()
    return ttfb, total


def throughput(base: str, repeats: int) -> float:
    u = urlsplit(base)
    rates = []
    for _ in range(repeats):
        conn = http.client.HTTPConnection(u.hostname, u.port, timeout=60)
        t0 = time.perf_counter()
        conn.request("POST", u.path + "/v1/messages", body=BODY, headers={"content-type": "application/json"})
        resp = conn.getresponse()
        n = 0
        while data := resp.read1(1 << 20):
            n += len(data)
        rates.append(n / (time.perf_counter() - t0) / 1e6)
        conn.close()
    return statistics.median(rates)


def pct(xs: list[float], p: float) -> float:
    return sorted(xs)[min(len(xs) - 1, int(len(xs) * p))]


def client(args: argparse.Namespace) -> None:
    """Measure from a separate process, as an agent would (one GIL per process)."""
    if args.mode == "latency":
        timed_requests(args.url, 20)                  # warm-up: pricing caches, pools
        ttfb, total = timed_requests(args.url, args.requests)
        print(json.dumps({"ttfb": ttfb, "total": total}))
    else:
        print(json.dumps({"rate": throughput(args.url, args.repeats)}))


def run_client(mode: str, url: str, args: argparse.Namespace) -> dict:
    out = subprocess.run([sys.executable, __file__, "--client", mode, "--url", url,
                          "--requests", str(args.requests), "--repeats", str(args.repeats)],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def upstream_process(size: int, chunk: int) -> tuple[subprocess.Popen, str]:
    """The fake upstream in its own process, like a remote API."""
    code = ("import sys, time; sys.path.insert(0, sys.argv[3]);"
            "from tests.fakes.proxy_upstreams import BlobUpstream;"
            "b = BlobUpstream(int(sys.argv[1]), int(sys.argv[2])).start(); print(b.url, flush=True);"
            "sys.stdin.read()")
    p = subprocess.Popen([sys.executable, "-c", code, str(size), str(chunk), str(REPO)],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert p.stdout is not None
    return p, p.stdout.readline().strip()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=300)
    ap.add_argument("--mb", type=float, default=10)
    ap.add_argument("--repeats", type=int, default=9)
    ap.add_argument("--client", choices=("latency", "throughput"))
    ap.add_argument("--url")
    args = ap.parse_args()
    if args.client:
        args.mode = args.client
        client(args)
        return

    sink = RecordingSink()
    small, small_url = upstream_process(4096, 1024)
    big, big_url = upstream_process(int(args.mb * 1024 * 1024), 16 * 1024)
    small_proxy = start_proxy(sink, OpenGate(), Pricer(), {"ANTHROPIC_BASE_URL": small_url})
    big_proxy = start_proxy(sink, OpenGate(), Pricer(), {"ANTHROPIC_BASE_URL": big_url})
    try:
        via_small = small_proxy.client_env("run")["ANTHROPIC_BASE_URL"]
        via_big = big_proxy.client_env("run")["ANTHROPIC_BASE_URL"]
        d = run_client("latency", small_url, args)
        p = run_client("latency", via_small, args)
        # Alternate direct and proxied runs so a change in machine load hits both alike.
        d_rates, p_rates = [], []
        one = argparse.Namespace(**{**vars(args), "repeats": 1})
        for _ in range(args.repeats):
            d_rates.append(run_client("throughput", big_url, one)["rate"])
            p_rates.append(run_client("throughput", via_big, one)["rate"])
        d_rate, p_rate = statistics.median(d_rates), statistics.median(p_rates)
    finally:
        small_proxy.stop()
        big_proxy.stop()
        for proc in (small, big):
            proc.kill()
            proc.wait()
    assert len(sink.events) >= args.requests, "the proxy did not meter every request"

    print(f"requests: {args.requests} (4 KB streamed response, keep-alive, loopback; "
          "client, proxy and upstream in separate processes)")
    print(f"{'':10}{'direct p50':>12}{'proxy p50':>12}{'added p50':>12}{'direct p90':>12}{'proxy p90':>12}")
    for name in ("ttfb", "total"):
        dd, pp = d[name], p[name]
        print(f"{name + ' ms':10}{statistics.median(dd):12.2f}{statistics.median(pp):12.2f}"
              f"{statistics.median(pp) - statistics.median(dd):12.2f}{pct(dd, .9):12.2f}{pct(pp, .9):12.2f}")
    ratio = p_rate / d_rate
    print(f"{args.mb:g} MB stream: direct {d_rate:.0f} MB/s, proxy {p_rate:.0f} MB/s = {ratio:.0%} of direct")
    added = statistics.median(p["ttfb"]) - statistics.median(d["ttfb"])
    print(f"targets: added TTFB p50 {added:.2f} ms <= 5 ms: {'ok' if added <= 5 else 'MISSED'}; "
          f"throughput {ratio:.0%} >= 80%: {'ok' if ratio >= 0.8 else 'MISSED'}")


if __name__ == "__main__":
    main()
