"""8 processes charge one developer ceiling at once, through PostgreSQL and through SQLite.

Each worker is its own process with its own ledger connection (as guards on different machines
would be): reserve the call's cost, record the event (twice: a second source reporting the same
call), release. Afterwards the ledger must hold exactly what was admitted, nothing lost or
doubled, and the ceiling must be filled but never passed.
"""
from __future__ import annotations

import multiprocessing as mp
import time
from pathlib import Path
from typing import Any

import pytest

from guard.errors import Refused
from guard.ledger import open_ledger
from guard.ledger.records import RunRecord
from guard.ledger.reservations import release, reserve, scope_totals
from guard.usage import UsageEvent
from tests.pgtest import pg_schema

WORKERS = 8
COST = 0.25          # exact in binary, so totals compare exactly
LIMIT = 40.0         # 160 admissions in all: ~20 per worker


class Lim:
    def __init__(self, scope: str, limit: float) -> None:
        self.scope, self.limit, self.since, self.until = scope, limit, 0.0, 4e9
        self.name = "developer_usd"


def charge(url: str, home: str, worker: int, start: Any, out: Any) -> None:
    ledger = open_ledger(url, Path(home))
    run_id = f"run-{worker}"
    ledger.create_run(RunRecord(id=run_id, tool="claude", task="t", developer="alice", team="core",
                                started_at=time.time()))
    lim = Lim("developer:alice", LIMIT)
    admitted = refused = 0
    start.wait(30)
    for k in range(1000):
        try:
            rid = reserve(ledger, [lim], COST, run_id)
        except Refused:
            refused += 1
            break
        ev = UsageEvent(key=f"req:{worker}:{k}", source="proxy", model="claude-sonnet-4-5",
                        input_tokens=100, output_tokens=10)
        ledger.upsert_event(run_id, ev, COST, True)
        ledger.upsert_event(run_id, ev.merge(ev), COST, True)   # same call from a second source
        release(ledger, rid)
        admitted += 1
    ledger.close()
    out.put((worker, admitted, refused))


def _run_workers(url: str, tmp: Path) -> dict[int, int]:
    ctx = mp.get_context("spawn")
    # a barrier, not an event: every worker is connected before any charges
    start, out = ctx.Barrier(WORKERS), ctx.Queue()
    procs = [ctx.Process(target=charge, args=(url, str(tmp / f"home{i}"), i, start, out))
             for i in range(WORKERS)]
    for p in procs:
        p.start()
    results: dict[int, int] = {}
    deadline = time.monotonic() + 240
    while len(results) < WORKERS and time.monotonic() < deadline:
        try:
            w, admitted, _refused = out.get(timeout=max(0.1, deadline - time.monotonic()))
        except Exception:  # noqa: BLE001 -- queue.Empty at the deadline
            break
        results[w] = admitted
    for p in procs:
        p.join(timeout=30)
        assert p.exitcode == 0, f"worker {p.name} exited {p.exitcode}"
    assert len(results) == WORKERS, f"only {len(results)} workers reported"
    return results


def _check(url: str, tmp: Path, results: dict[int, int]) -> None:
    ledger = open_ledger(url, tmp / "checker")
    admitted = sum(results.values())
    total = scope_totals(ledger, "developer:alice", 0.0, 4e9)
    # nothing lost, nothing doubled: exactly one event per admission, costed once
    assert total.calls == admitted
    assert total.cost_usd == pytest.approx(admitted * COST, abs=1e-9)
    for w, n in results.items():
        assert ledger.run_totals(f"run-{w}").calls == n
    # never past the ceiling, and filled: the last refusals were real
    assert total.cost_usd <= LIMIT + 1e-9
    assert LIMIT - total.cost_usd < COST
    # contention was real: more than one worker got admissions
    assert sum(1 for n in results.values() if n) > 1
    ledger.close()


@pytest.mark.e2e
@pytest.mark.pg
def test_eight_processes_share_a_ceiling_through_postgres(tmp_path: Path) -> None:
    with pg_schema() as url:
        open_ledger(url, tmp_path / "setup").close()   # migrate once up front
        results = _run_workers(url, tmp_path)
        _check(url, tmp_path, results)


@pytest.mark.e2e
@pytest.mark.pg
def test_eight_processes_migrate_a_fresh_postgres_schema_at_once(tmp_path: Path) -> None:
    with pg_schema() as url:
        results = _run_workers(url, tmp_path)
        _check(url, tmp_path, results)


@pytest.mark.e2e
def test_eight_processes_share_a_ceiling_through_sqlite(tmp_path: Path) -> None:
    url = f"sqlite:{tmp_path / 'shared.db'}"
    results = _run_workers(url, tmp_path)
    _check(url, tmp_path, results)
