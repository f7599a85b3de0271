"""The ledger's queries, shared by SQLite and PostgreSQL. Subclasses supply a connection and a
dialect; every query is written once here with `?` placeholders."""
from __future__ import annotations

import json
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import Any

from guard.errors import UnknownRun
from guard.ledger.records import Approval, Control, Halt, RunRecord
from guard.ledger.schema import VERSIONS, statements
from guard.ledger.scrub import scrub_argv
from guard.usage import Totals, UsageEvent

_RUN_COLUMNS = (
    "id, tool, task, developer, team, machine, line, status, exit_code, started_at, ended_at, cwd, "
    "argv, limits, accuracy, guard_pid, agent_pid, skipped_records, halt_ceiling, halt_limit, "
    "halt_used, halt_action, halt_message, limit_sources, repo, branch, commit_before, commit_after, held_by"
)
_RUN_COLUMN_COUNT = len(_RUN_COLUMNS.split(","))
_USAGE_SUMS = (
    "COALESCE(SUM(e.input_tokens),0), COALESCE(SUM(e.output_tokens),0), "
    "COALESCE(SUM(e.cache_write_tokens),0), COALESCE(SUM(e.cache_read_tokens),0), "
    "COALESCE(SUM(e.cost_usd),0), COALESCE(SUM(e.steps),0), COUNT(e.key)"
)


_UPSERT_EVENT = (
    "INSERT INTO events (run_id, key, source, model, input_tokens, output_tokens, "
    "cache_write_tokens, cache_write_1h_tokens, cache_read_tokens, cost_usd, "
    "stated_cost_usd, price_known, steps, estimated, interrupted, ts) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (run_id, key) DO UPDATE SET source = excluded.source, "
    "model = excluded.model, input_tokens = excluded.input_tokens, "
    "output_tokens = excluded.output_tokens, cache_write_tokens = excluded.cache_write_tokens, "
    "cache_write_1h_tokens = excluded.cache_write_1h_tokens, "
    "cache_read_tokens = excluded.cache_read_tokens, cost_usd = excluded.cost_usd, "
    "stated_cost_usd = excluded.stated_cost_usd, price_known = excluded.price_known, "
    "steps = excluded.steps, estimated = excluded.estimated, "
    "interrupted = excluded.interrupted"
)
# What run_usage sums, in the order of its columns after (run_id, model); `estimated` counts calls.
_FIGURE_COLUMNS = (
    "COALESCE(model, ''), input_tokens, output_tokens, cache_write_tokens, cache_write_1h_tokens, "
    "cache_read_tokens, cost_usd, steps, estimated"
)
_ADD_RUN_USAGE = (
    "INSERT INTO run_usage (run_id, model, input_tokens, output_tokens, cache_write_tokens, "
    "cache_write_1h_tokens, cache_read_tokens, cost_usd, steps, calls, estimated_calls) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (run_id, model) DO UPDATE SET "
    + ", ".join(f"{c} = run_usage.{c} + excluded.{c}" for c in (
        "input_tokens", "output_tokens", "cache_write_tokens", "cache_write_1h_tokens",
        "cache_read_tokens", "cost_usd", "steps", "calls", "estimated_calls"))
)


def _add_figures(deltas: dict[tuple[str, str], list[float]], run_id: str, row: tuple[Any, ...],
                 sign: int) -> None:
    """row: (_FIGURE_COLUMNS) of one event; adds it (sign 1) or takes it away (-1), one call."""
    d = deltas.setdefault((run_id, str(row[0])), [0] * 9)
    for i, v in enumerate(row[1:8]):
        d[i] += sign * v
    d[7] += sign          # calls
    d[8] += sign * int(row[8])


def _totals(row: Sequence[Any]) -> Totals:
    return Totals(int(row[0]), int(row[1]), int(row[2]), int(row[3]), float(row[4]), int(row[5]), int(row[6]))


class SqlLedger(ABC):
    dialect: str = "sqlite"

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._depth = 0  # nesting of transaction(): only the outermost one begins and commits

    # -- dialect seam -----------------------------------------------------------------------

    @abstractmethod
    def _execute(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run one statement in the current transaction (or autocommit) and return its rows."""

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """A write transaction; nested use joins the outer one."""
        with self._lock:
            if self._depth:
                self._depth += 1
                try:
                    yield
                finally:
                    self._depth -= 1
                return
            with self._outermost_transaction():
                self._depth = 1
                try:
                    yield
                finally:
                    self._depth = 0

    @abstractmethod
    def _outermost_transaction(self) -> AbstractContextManager[None]:
        """Begin, then commit on success or roll back on any exception."""

    @abstractmethod
    def close(self) -> None: ...

    def describe(self) -> str:
        return self.dialect

    # -- schema -----------------------------------------------------------------------------

    def migrate(self) -> None:
        with self.transaction():
            self._execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            # each migration applied once by number, not by "everything above the highest": a
            # ledger that already has a later one still gets an earlier one it lacks
            applied = {int(r[0]) for r in self._execute("SELECT version FROM schema_version")}
            for version in VERSIONS:
                if version in applied:
                    continue
                for stmt in statements(self.dialect, version):
                    self._execute(stmt)
                if version in DATA_MIGRATIONS:
                    DATA_MIGRATIONS[version](self)
                self._execute("INSERT INTO schema_version (version) VALUES (?)", (version,))

    # -- runs -------------------------------------------------------------------------------

    def create_run(self, run: RunRecord) -> None:
        with self.transaction():
            self._execute(
                f"INSERT INTO runs ({_RUN_COLUMNS}) VALUES ({', '.join('?' * _RUN_COLUMN_COUNT)})",
                self._run_params(run),
            )

    def _run_params(self, r: RunRecord) -> tuple[Any, ...]:
        h = r.halt
        return (
            r.id, r.tool, r.task, r.developer, r.team, r.machine, r.line, r.status, r.exit_code,
            r.started_at, r.ended_at, r.cwd, json.dumps(r.argv), json.dumps(r.limits), r.accuracy,
            r.guard_pid, r.agent_pid, r.skipped_records,
            h.ceiling if h else None, h.limit if h else None, h.used if h else None,
            h.action if h else None, h.message if h else None, json.dumps(r.limit_sources),
            r.repo, r.branch, r.commit_before, r.commit_after, r.held_by,
        )

    def update_run(self, run_id: str, **fields: Any) -> None:
        if "halt" in fields:
            h: Halt | None = fields.pop("halt")
            fields.update(halt_ceiling=h.ceiling if h else None, halt_limit=h.limit if h else None,
                          halt_used=h.used if h else None, halt_action=h.action if h else None,
                          halt_message=h.message if h else None)
        if "argv" in fields:
            fields["argv"] = scrub_argv(fields["argv"])
        for k in ("argv", "limits", "limit_sources"):
            if k in fields:
                fields[k] = json.dumps(fields[k])
        if not fields:
            return
        cols = ", ".join(f"{k} = ?" for k in fields)
        with self.transaction():
            self._execute(f"UPDATE runs SET {cols} WHERE id = ?", (*fields.values(), run_id))

    def get_run(self, run_id: str) -> RunRecord:
        rows = self._execute(f"SELECT {_RUN_COLUMNS} FROM runs WHERE id = ?", (run_id,))
        if not rows:
            rows = self._execute(f"SELECT {_RUN_COLUMNS} FROM runs WHERE id LIKE ?", (run_id + "%",))
            if len(rows) != 1:
                raise UnknownRun(f"no run {run_id!r}" if not rows else f"run id {run_id!r} is ambiguous")
        run = self._run(rows[0])
        run.usage = self.run_totals(run.id)
        return run

    def list_runs(self, *, status: Sequence[str] | None = None, since: float | None = None,
                  until: float | None = None, limit: int | None = None) -> list[RunRecord]:
        where: list[str] = []
        params: list[Any] = []
        if status:
            where.append(f"status IN ({', '.join('?' * len(status))})")
            params.extend(status)
        if since is not None:
            where.append("started_at >= ?")
            params.append(since)
        if until is not None:
            where.append("started_at < ?")
            params.append(until)
        sql = f"SELECT {_RUN_COLUMNS} FROM runs"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY started_at DESC"
        if limit:
            sql += f" LIMIT {int(limit)}"
        runs = [self._run(r) for r in self._execute(sql, params)]
        usage = self._usage_by_run([r.id for r in runs])
        for r in runs:
            r.usage = usage.get(r.id, Totals())
        return runs

    def _usage_by_run(self, ids: list[str]) -> dict[str, Totals]:
        out: dict[str, Totals] = {}
        for i in range(0, len(ids), 500):
            chunk = ids[i:i + 500]
            rows = self._execute(
                f"SELECT e.run_id, {_USAGE_SUMS} FROM events e WHERE e.run_id IN "
                f"({', '.join('?' * len(chunk))}) GROUP BY e.run_id", chunk)
            for row in rows:
                out[row[0]] = _totals(row[1:])
        return out

    @staticmethod
    def _run(row: Sequence[Any]) -> RunRecord:
        halt = Halt(row[18], row[19], row[20], row[21], row[22] or "") if row[18] else None
        return RunRecord(
            id=row[0], tool=row[1], task=row[2], developer=row[3], team=row[4], machine=row[5],
            line=row[6], status=row[7], exit_code=row[8], started_at=row[9], ended_at=row[10],
            cwd=row[11], argv=json.loads(row[12]), limits=json.loads(row[13]), accuracy=row[14],
            guard_pid=row[15], agent_pid=row[16], skipped_records=row[17], halt=halt,
            limit_sources=json.loads(row[23] or "{}"),
            repo=row[24], branch=row[25], commit_before=row[26], commit_after=row[27], held_by=row[28],
        )

    # -- usage ------------------------------------------------------------------------------

    def upsert_event(self, run_id: str, ev: UsageEvent, cost_usd: float, price_known: bool) -> None:
        """Write the merged view of one model call. Idempotent: the same key replaces its row."""
        self.upsert_events([(run_id, ev, cost_usd, price_known)])

    def upsert_events(self, batch: Sequence[tuple[str, UsageEvent, float, bool]]) -> None:
        """Write many events in one transaction, and move run_usage by what each write changed.

        The rollup adds the difference between a row after and before its upsert, read back from
        the table rather than assumed: a replayed spool write or a re-read transcript line that
        changes nothing adds nothing, and a row the upsert max-merges adds only its growth. Both
        backends (and the PostgreSQL spool replay) write events through here."""
        if not batch:
            return
        params = [
            (run_id, ev.key, ev.source, ev.model, ev.input_tokens, ev.output_tokens,
             ev.cache_write_tokens, ev.cache_write_1h_tokens, ev.cache_read_tokens, cost_usd,
             ev.cost_usd, int(price_known), ev.steps, int(ev.estimated), int(ev.interrupted), ev.ts)
            for run_id, ev, cost_usd, price_known in batch
        ]
        ids = {(p[0], p[1]) for p in params}
        with self.transaction():
            before = self._event_figures(ids)
            self._executemany(_UPSERT_EVENT, params)
            after = self._event_figures(ids)
            deltas: dict[tuple[str, str], list[float]] = {}
            for ident, row in after.items():
                _add_figures(deltas, ident[0], row, 1)
                old = before.get(ident)
                if old is not None:
                    _add_figures(deltas, ident[0], old, -1)
            changed = [(run, model, *d) for (run, model), d in deltas.items() if any(d)]
            if changed:
                self._executemany(_ADD_RUN_USAGE, changed)

    def _event_figures(self, ids: set[tuple[str, str]]) -> dict[tuple[str, str], tuple[Any, ...]]:
        keys = sorted({k for _, k in ids})
        out: dict[tuple[str, str], tuple[Any, ...]] = {}
        for i in range(0, len(keys), 500):
            chunk = keys[i:i + 500]
            for row in self._execute(
                    f"SELECT run_id, key, {_FIGURE_COLUMNS} FROM events WHERE key IN "
                    f"({', '.join('?' * len(chunk))})", chunk):
                if (row[0], row[1]) in ids:
                    out[(row[0], row[1])] = tuple(row[2:])
        return out

    def _executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        """One statement over many parameter rows; a dialect may do it in one round trip."""
        for row in rows:
            self._execute(sql, row)

    def events_by_key(self, keys: Sequence[str]) -> dict[str, tuple[str, UsageEvent, float]]:
        """The rows already metered under these keys, in any run: key -> (run_id, event, cost)."""
        out: dict[str, tuple[str, UsageEvent, float]] = {}
        uniq = sorted(set(keys))
        for i in range(0, len(uniq), 500):
            chunk = uniq[i:i + 500]
            for r in self._execute(
                    "SELECT run_id, key, source, model, input_tokens, output_tokens, cache_write_tokens, "
                    "cache_write_1h_tokens, cache_read_tokens, stated_cost_usd, steps, estimated, "
                    f"interrupted, ts, cost_usd FROM events WHERE key IN ({', '.join('?' * len(chunk))})",
                    chunk):
                out[r[1]] = (r[0], UsageEvent(
                    key=r[1], source=r[2], model=r[3], input_tokens=r[4], output_tokens=r[5],
                    cache_write_tokens=r[6], cache_write_1h_tokens=r[7], cache_read_tokens=r[8],
                    cost_usd=r[9], steps=r[10], estimated=bool(r[11]), interrupted=bool(r[12]), ts=r[13]),
                    float(r[14]))
        return out

    _EVENT_COLUMNS = ("key, source, model, input_tokens, output_tokens, cache_write_tokens, "
                      "cache_write_1h_tokens, cache_read_tokens, cost_usd, stated_cost_usd, price_known, "
                      "steps, estimated, interrupted, ts")

    @staticmethod
    def _event(r: Sequence[Any]) -> tuple[UsageEvent, float, bool]:
        return (UsageEvent(key=r[0], source=r[1], model=r[2], input_tokens=r[3], output_tokens=r[4],
                           cache_write_tokens=r[5], cache_write_1h_tokens=r[6], cache_read_tokens=r[7],
                           cost_usd=r[9], steps=r[11], estimated=bool(r[12]), interrupted=bool(r[13]),
                           ts=r[14]), float(r[8]), bool(r[10]))

    def run_events(self, run_id: str) -> list[tuple[UsageEvent, float, bool]]:
        rows = self._execute(f"SELECT {self._EVENT_COLUMNS} FROM events WHERE run_id = ? ORDER BY ts", (run_id,))
        return [self._event(r) for r in rows]

    def run_estimated_calls(self, run_id: str) -> int:
        """Calls of the run whose usage did not come from the provider (in their merged view)."""
        return int(self._execute("SELECT COUNT(*) FROM events WHERE run_id = ? AND estimated <> 0",
                                 (run_id,))[0][0])

    def run_event(self, run_id: str, key: str) -> tuple[UsageEvent, float, bool] | None:
        """One call's merged view, by its key (the primary key's index)."""
        rows = self._execute(f"SELECT {self._EVENT_COLUMNS} FROM events WHERE run_id = ? AND key = ?",
                             (run_id, key))
        return self._event(rows[0]) if rows else None

    def run_totals(self, run_id: str) -> Totals:
        rows = self._execute(f"SELECT {_USAGE_SUMS} FROM events e WHERE e.run_id = ?", (run_id,))
        return _totals(rows[0])

    def task_totals(self, task: str, exclude_run: str | None = None) -> Totals:
        rows = self._execute(
            f"SELECT {_USAGE_SUMS} FROM events e JOIN runs r ON r.id = e.run_id "
            "WHERE r.task = ? AND r.id <> ?", (task, exclude_run or ""))
        return _totals(rows[0])

    def task_elapsed(self, task: str, exclude_run: str | None = None) -> float:
        """Wall-clock seconds the task's finished runs took (the time ceiling spans runs too)."""
        rows = self._execute(
            "SELECT COALESCE(SUM(ended_at - started_at), 0) FROM runs "
            "WHERE task = ? AND id <> ? AND ended_at IS NOT NULL", (task, exclude_run or ""))
        return float(rows[0][0])

    # -- notices, approvals, task halts ---------------------------------------------------------

    def add_notice(self, run_id: str, key: str, message: str) -> bool:
        """True when this notice is new for the run (shown once per key)."""
        with self.transaction():
            if self._execute("SELECT 1 FROM notices WHERE run_id = ? AND key = ?", (run_id, key)):
                return False
            self._execute("INSERT INTO notices (run_id, key, message, ts) VALUES (?, ?, ?, ?)",
                          (run_id, key, message, time.time()))
            return True

    def notices(self, run_id: str) -> list[tuple[str, str, float]]:
        return [(r[0], r[1], r[2]) for r in self._execute(
            "SELECT key, message, ts FROM notices WHERE run_id = ? ORDER BY ts", (run_id,))]

    def add_approval(self, a: Approval) -> None:
        with self.transaction():
            self._execute(
                "INSERT INTO approvals (run_id, task, ceiling, amount, approved_by, reason, ts) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (a.run_id, a.task, a.ceiling, a.amount, a.approved_by, a.reason, a.ts or time.time()))
            # a raise re-opens a task that this ceiling had halted
            self._execute("DELETE FROM task_halts WHERE task = ? AND ceiling = ?", (a.task, a.ceiling))

    def approvals(self, task: str) -> list[Approval]:
        rows = self._execute(
            "SELECT run_id, task, ceiling, amount, approved_by, reason, ts FROM approvals "
            "WHERE task = ? ORDER BY ts", (task,))
        return [Approval(*r) for r in rows]

    def task_raises(self, task: str) -> dict[str, float]:
        """The total each task ceiling was raised by (approvals without a run: granted for the task)."""
        rows = self._execute(
            "SELECT ceiling, COALESCE(SUM(amount), 0) FROM approvals WHERE task = ? AND amount IS NOT NULL "
            "GROUP BY ceiling", (task,))
        return {r[0]: float(r[1]) for r in rows}

    def mark_task_halted(self, task: str, ceiling: str, run_id: str) -> None:
        with self.transaction():
            self._execute("DELETE FROM task_halts WHERE task = ? AND ceiling = ?", (task, ceiling))
            self._execute("INSERT INTO task_halts (task, ceiling, run_id, ts) VALUES (?, ?, ?, ?)",
                          (task, ceiling, run_id, time.time()))

    def task_halts(self, task: str) -> list[tuple[str, str]]:
        return [(r[0], r[1]) for r in self._execute(
            "SELECT ceiling, run_id FROM task_halts WHERE task = ?", (task,))]

    # -- controls (guard stop / guard resume from another terminal) ------------------------------

    def add_control(self, run_id: str, action: str, payload: dict[str, Any]) -> None:
        with self.transaction():
            self._execute("INSERT INTO controls (run_id, action, payload, created_at) VALUES (?, ?, ?, ?)",
                          (run_id, action, json.dumps(payload), time.time()))

    def take_controls(self, run_id: str) -> list[Control]:
        with self.transaction():
            rows = self._execute(
                "SELECT id, run_id, action, payload FROM controls WHERE run_id = ? AND done_at IS NULL "
                "ORDER BY id", (run_id,))
            for r in rows:
                self._execute("UPDATE controls SET done_at = ? WHERE id = ?", (time.time(), r[0]))
        return [Control(r[0], r[1], r[2], json.loads(r[3])) for r in rows]

    # -- spend over periods (developer / team / line ceilings, reports) -------------------------

    def spend(self, since: float, until: float, *, developer: str | None = None,
              team: str | None = None, line: str | None = None, exclude_run: str | None = None) -> Totals:
        where, params = ["e.ts >= ?", "e.ts < ?", "r.id <> ?"], [since, until, exclude_run or ""]
        for col, val in (("developer", developer), ("team", team), ("line", line)):
            if val is not None:
                where.append(f"r.{col} = ?")
                params.append(val)
        rows = self._execute(
            f"SELECT {_USAGE_SUMS} FROM events e JOIN runs r ON r.id = e.run_id WHERE "
            + " AND ".join(where), params)
        return _totals(rows[0])


def _scrub_stored_argvs(ledger: SqlLedger) -> None:
    """Migration 3: rows written before guard scrubbed command lines lose their prompts and
    flag values (see guard.ledger.scrub)."""
    for run_id, tool, raw in ledger._execute("SELECT id, tool, argv FROM runs"):
        try:
            argv = json.loads(raw)
        except ValueError:
            argv = []
        if not isinstance(argv, list):
            argv = []
        clean = scrub_argv([str(a) for a in argv], keep_command=tool == "run")
        if clean != argv:
            ledger._execute("UPDATE runs SET argv = ? WHERE id = ?", (json.dumps(clean), run_id))


# Python steps of migrations SQL alone cannot express, run right after that version's SQL.
DATA_MIGRATIONS: dict[int, Callable[[SqlLedger], None]] = {3: _scrub_stored_argvs}
