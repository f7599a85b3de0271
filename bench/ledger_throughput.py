"""Ledger write throughput: events/s for SQLite and PostgreSQL.

    python bench/ledger_throughput.py [--events 5000] [--writers 1,4] [--pg postgresql://...]

Each writer is a process with its own connection (as separate guards are), upserting events
one transaction each, as the meter does. PostgreSQL (GUARD_TEST_PG or --pg) runs in a scratch
schema that is dropped afterwards, whatever happens (a crash, Ctrl-C, SIGTERM). Target: >= 1,000
events/s on PostgreSQL.
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import signal
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from guard.ledger import open_ledger  # noqa: E402
from guard.ledger.records import RunRecord  # noqa: E402
from guard.usage import UsageEvent  # noqa: E402


def with_search_path(url: str, schema: str) -> str:
    from urllib.parse import quote

    sep = "&" if "?" in url else "?"
    return f"{url}{sep}options={quote(f'-csearch_path={schema}')}"


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # so the finally that drops the scratch schema runs


def writer(url: str, home: str, wid: int, n: int, start: Any, out: Any) -> None:
    led = open_ledger(url, Path(home))
    run_id = f"bench-{wid}-{uuid.uuid4().hex[:6]}"
    led.create_run(RunRecord(id=run_id, tool="bench", task="bench", developer=f"dev{wid}", started_at=time.time()))
    start.wait()
    t0 = time.perf_counter()
    for i in range(n):
        led.upsert_event(run_id, UsageEvent(key=f"req:{i}", source="bench", model="claude-sonnet-4-5",
                                            input_tokens=1000, output_tokens=100), 0.0045, True)
    out.put(time.perf_counter() - t0)
    led.close()


def measure(url: str, events: int, writers: int) -> float:
    ctx = mp.get_context("spawn")
    start, out = ctx.Barrier(writers + 1), ctx.Queue()
    per = events // writers
    with tempfile.TemporaryDirectory() as home:
        procs = [ctx.Process(target=writer, args=(url, home, w, per, start, out)) for w in range(writers)]
        for p in procs:
            p.start()
        start.wait()
        t0 = time.perf_counter()
        try:
            for _ in procs:
                out.get(timeout=600)
        finally:
            wall = time.perf_counter() - t0
            for p in procs:
                p.join(timeout=10)
                if p.is_alive():
                    p.kill()
                    p.join()
    return per * writers / wall


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=5000)
    ap.add_argument("--writers", default="1,4")
    ap.add_argument("--pg", default=os.environ.get("GUARD_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test"))
    args = ap.parse_args()
    counts = [int(x) for x in args.writers.split(",")]
    with tempfile.TemporaryDirectory() as d:
        url = f"sqlite:{Path(d) / 'bench.db'}"
        open_ledger(url, Path(d)).close()
        for w in counts:
            print(f"sqlite      writers={w}: {measure(url, args.events, w):8.0f} events/s", flush=True)
    import psycopg

    schema = f"guard_bench_{uuid.uuid4().hex[:8]}"
    signal.signal(signal.SIGTERM, _raise_interrupt)
    signal.signal(signal.SIGHUP, _raise_interrupt)
    try:
        with psycopg.connect(args.pg, autocommit=True, connect_timeout=5) as c:
            c.execute(f'CREATE SCHEMA "{schema}"')
    except psycopg.Error as e:
        print(f"postgresql: skipped ({str(e).strip().splitlines()[0]})")
        return
    url = with_search_path(args.pg, schema)
    try:
        with tempfile.TemporaryDirectory() as d:
            open_ledger(url, Path(d)).close()
        for w in counts:
            rate = measure(url, args.events, w)
            print(f"postgresql  writers={w}: {rate:8.0f} events/s  (target >= 1000)", flush=True)
    finally:
        with psycopg.connect(args.pg, autocommit=True, connect_timeout=10) as c:
            c.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


if __name__ == "__main__":
    main()
