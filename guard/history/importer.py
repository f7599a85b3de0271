"""`guard import`: read what the sources appended since the last import, count each model call
once, price it at its own time, and write it to the ledger in one transaction.

A call already in the ledger under its key is not added again: under a live run it was metered
by guard and is left alone; under an imported run it is max-merged (a response whose later lines
were written after the last import grows). Imported runs are completed runs with accuracy
`imported`, charged to the importing developer and team, so their spend counts toward period
ceilings like any other; their events keep the sources' `estimated` flag.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar, cast

from guard.budgets import Identity
from guard.errors import LedgerError
from guard.history.cursor import Cursor, ReadJob, bytes_read, unchanged
from guard.history.found import RUN_PREFIX, Found
from guard.history.pricing import BulkPricer
from guard.history.store import load_cursors, save_cursors
from guard.ledger.records import RunRecord
from guard.ledger.reservations import _routed
from guard.ledger.sql import SqlLedger
from guard.report.rollup import IMPORTED
from guard.usage import UsageEvent

T = TypeVar("T")


class HistorySource(Protocol):
    name: str

    def files(self, paths: list[Path]) -> list[Path]: ...

    def read_all(self, jobs: list[ReadJob], meanwhile: Callable[[], None]) -> list[Cursor]:
        """Read the jobs' new lines; call `meanwhile` once, while waiting on anything."""

    def found(self) -> list[Found]: ...


@dataclass
class SourceSummary:
    files: int = 0
    files_read: int = 0
    bytes_read: int = 0
    calls: int = 0          # calls found in what was read
    new: int = 0
    grown: int = 0          # already imported, now with higher figures
    live: int = 0           # already metered live by guard
    same: int = 0           # already imported as they are
    estimated: int = 0
    usd: float = 0.0        # what the ledger gains
    runs: set[str] = field(default_factory=set)

    def as_dict(self) -> dict[str, Any]:
        return {"files": self.files, "files_read": self.files_read, "bytes_read": self.bytes_read,
                "calls": self.calls, "new": self.new, "grown": self.grown, "already_live": self.live,
                "already_imported": self.same, "estimated": self.estimated, "usd": round(self.usd, 6),
                "runs": len(self.runs)}


@dataclass
class ImportResult:
    dry_run: bool
    sources: dict[str, SourceSummary]

    @property
    def usd(self) -> float:
        return sum(s.usd for s in self.sources.values())

    def as_dict(self) -> dict[str, Any]:
        return {"dry_run": self.dry_run, "usd": round(self.usd, 6),
                "sources": {k: v.as_dict() for k, v in self.sources.items()}}


@dataclass
class _Write:
    run_id: str
    event: UsageEvent
    cost: float
    known: bool


def _figures(ev: UsageEvent) -> tuple[Any, ...]:
    return (ev.model, ev.input_tokens, ev.output_tokens, ev.cache_write_tokens, ev.cache_write_1h_tokens,
            ev.cache_read_tokens, ev.cost_usd, ev.steps, ev.estimated, ev.interrupted)


def import_history(ledger: SqlLedger, requests: Sequence[tuple[HistorySource, list[Path]]],
                   identity: Identity, pricer: BulkPricer, *, dry_run: bool = False) -> ImportResult:
    cursors = _on(ledger, load_cursors)
    moved: list[Cursor] = []
    summaries: dict[str, SourceSummary] = {}
    found: list[tuple[str, Found]] = []
    for source, paths in requests:
        summary = summaries.setdefault(source.name, SourceSummary())
        jobs: list[ReadJob] = []
        for path in source.files(paths):
            summary.files += 1
            try:
                st = path.stat()
            except OSError:
                continue
            cursor = cursors.get(str(path))
            if not unchanged(cursor, st):
                jobs.append(ReadJob(len(jobs), path, cursor, st.st_size))
        # genai-prices' data (a quarter second, more when busy) loads while workers read;
        # nothing to read, nothing to price: a repeat import never loads it
        for job, after in zip(jobs, source.read_all(jobs, pricer.pricer.warm) if jobs else [], strict=True):
            moved.append(after)
            summary.files_read += 1
            summary.bytes_read += bytes_read(job.cursor, after)
        found += [(source.name, f) for f in source.found()]

    writes, firsts = _on(ledger, lambda led: _plan(led, found, summaries, pricer))

    def write(led: SqlLedger) -> None:
        with led.transaction():
            _write_runs(led, writes, firsts, identity)
            led.upsert_events([(w.run_id, w.event, w.cost, w.known) for w in writes.values()])
            save_cursors(led, moved)

    if not dry_run:
        _on(ledger, write)
    return ImportResult(dry_run, summaries)


def _on(ledger: SqlLedger, fn: Callable[[SqlLedger], T]) -> T:
    """`fn` on the ledger itself: a team ledger's history is read from and written to the
    shared server, never one machine's offline spool."""
    def run(led: SqlLedger) -> T:
        if led is not ledger:
            raise LedgerError(f"ledger {ledger.describe()} is unreachable: history is imported "
                              "into the shared ledger only")
        return fn(led)

    return cast(T, _routed(ledger, run, spool_ok=False))


def _plan(ledger: SqlLedger, found: list[tuple[str, Found]], summaries: dict[str, SourceSummary],
          pricer: BulkPricer) -> tuple[dict[str, _Write], dict[str, Found]]:
    existing = ledger.events_by_key([f.event.key for _, f in found])
    writes: dict[str, _Write] = {}
    firsts: dict[str, Found] = {}      # run id -> a call of it (tool, cwd, for a new run record)
    for name, f in found:
        s = summaries[name]
        s.calls += 1
        ev = f.event
        prior = existing.get(ev.key)
        pending = writes.get(ev.key)
        if pending is not None:           # the same call twice in one import: one call, max-merged
            ev = pending.event.merge(ev)
        if prior is not None:
            run_id, old, old_cost = prior
            if not run_id.startswith(RUN_PREFIX):
                s.live += 1
                continue
            merged = old.merge(ev)
            if _figures(merged) == _figures(old):
                s.same += 1
                continue
            s.grown += pending is None
            price = pricer.price(merged)
            s.usd += price.usd - old_cost - (pending.cost - old_cost if pending else 0.0)
            writes[ev.key] = _Write(run_id, merged, price.usd, price.known)
        else:
            price = pricer.price(ev)
            if pending is None:
                s.new += 1
            s.usd += price.usd - (pending.cost if pending else 0.0)
            writes[ev.key] = _Write(f.run_id, ev, price.usd, price.known)
        s.estimated += ev.estimated and pending is None
        s.runs.add(writes[ev.key].run_id)
        firsts.setdefault(writes[ev.key].run_id, f)
    return writes, firsts


def _write_runs(ledger: SqlLedger, writes: dict[str, _Write], firsts: dict[str, Found],
                identity: Identity) -> None:
    spans: dict[str, list[float]] = {}
    for w in writes.values():
        span = spans.setdefault(w.run_id, [w.event.ts, w.event.ts])
        span[0] = min(span[0], w.event.ts)
        span[1] = max(span[1], w.event.ts)
    ids = sorted(spans)
    known: dict[str, tuple[float, float | None]] = {}
    for i in range(0, len(ids), 500):
        chunk = ids[i:i + 500]
        for rid, started, ended in ledger._execute(
                f"SELECT id, started_at, ended_at FROM runs WHERE id IN ({', '.join('?' * len(chunk))})", chunk):
            known[rid] = (float(started), ended)
    for rid, (lo, hi) in spans.items():
        if rid in known:
            started, ended = known[rid]
            if lo < started or ended is None or hi > float(ended):
                ledger.update_run(rid, started_at=min(lo, started), ended_at=max(hi, float(ended or hi)))
            continue
        f = firsts[rid]
        ledger.create_run(RunRecord(
            id=rid, tool=f.tool, task=Path(f.cwd).name or "history", developer=identity.developer,
            status="completed", team=identity.team, machine=identity.machine, line=identity.line,
            started_at=lo, ended_at=hi, cwd=f.cwd, accuracy=IMPORTED))
