"""The shared ledger: PostgreSQL, so guards on many machines enforce one set of team ceilings.

Same schema and queries as SQLite (guard.ledger.sql); `?` placeholders become `%s`.

Offline behaviour (PostgreSQL unreachable at start or mid-run):

* Nothing is lost. Every write (runs, events, notices, approvals, halts, controls) is committed
  first to an operation log in a local SQLite spool under GUARD_HOME/spool/ (and applied to the
  spool's own tables: the local view while offline), then replayed to PostgreSQL in order, and
  removed from the log only once the server committed it. While offline, the server is retried
  at most every `retry_seconds`, from any read or write; the log is replayed before anything else.
  Replay is idempotent: events are keyed by (run_id, key) and upserted, runs are inserted once.
* What shared ceilings count meanwhile is guard.ledger.offline.offline_spend (the `offline`
  setting, or env GUARD_LEDGER_OFFLINE), from the facts this class exposes: `reachable()`,
  `last_known(query, exclude_run)` (figure and age) and the spool's own figure. Last-known
  figures are kept per query with each asking run's part beside them, and what a sync sends is
  added to them before it leaves the spool.
* Grants and reports need the shared truth: they call `require_online()` and fail with a
  LedgerError rather than answer from one machine's spool.
"""
from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import json
import os
import re
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import psycopg
from psycopg import conninfo

from guard.errors import LedgerError
from guard.ledger.offline import LastKnown, Query, minus, offline_spend, policy_named
from guard.ledger.records import Approval, Halt, RunRecord
from guard.ledger.sql import _RUN_COLUMN_COUNT, _RUN_COLUMNS, SqlLedger
from guard.ledger.sqlite import SqliteLedger
from guard.usage import Totals, UsageEvent

T = TypeVar("T")

_MIGRATE_LOCK = 0x6775617264  # "guard": one migrator at a time per database


class _Unreachable(Exception):
    """The connection is gone (refused, reset, server shut down)."""


_QUOTED = re.compile(r"('(?:[^']|'')*'|\"(?:[^\"]|\"\")*\")")


def convert_placeholders(sql: str) -> str:
    """`?` -> `%s` and a literal `%` -> `%%`, leaving quoted literals and identifiers alone."""
    parts = _QUOTED.split(sql)
    for i in range(0, len(parts), 2):
        parts[i] = parts[i].replace("%", "%%").replace("?", "%s")
    for i in range(1, len(parts), 2):
        parts[i] = parts[i].replace("%", "%%")
    return "".join(parts)


def safe_url(url: str) -> str:
    """The URL without its password, for messages and spool names."""
    return re.sub(r"(://[^:/@]+):[^@]*@", r"\1:***@", url)


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__


class PostgresLedger(SqlLedger):
    dialect = "postgresql"

    def __init__(self, url: str, home: Path, *, offline: str | None = None,
                 retry_seconds: float | None = None, connect_timeout: float = 3.0) -> None:
        super().__init__()
        self.url = url
        self.home = Path(home)
        self.offline_policy = policy_named(offline or os.environ.get("GUARD_LEDGER_OFFLINE") or "last-known")
        self.retry_seconds = float(retry_seconds if retry_seconds is not None
                                   else os.environ.get("GUARD_LEDGER_RETRY", "5"))
        self.connect_timeout = connect_timeout
        self._conn: psycopg.Connection[Any] | None = None
        self._direct_depth = 0
        self._next_try = 0.0
        self._last_error = ""
        self._remembered: dict[tuple[str, str], float] = {}
        try:
            conninfo.conninfo_to_dict(url)
        except psycopg.ProgrammingError as e:
            raise LedgerError(f"ledger {safe_url(url)}: {_first_line(e)}") from None
        digest = hashlib.sha256(safe_url(url).encode()).hexdigest()[:16]
        self.spool = SqliteLedger(self.home / "spool" / f"pg-{digest}.db")
        self._spool_lock = os.open(self.home / "spool" / f"pg-{digest}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        self._init_spool()
        self._ensure_online()

    # -- connection ---------------------------------------------------------------------------

    def describe(self) -> str:
        state = "" if self.online else " (offline: spooling locally)"
        return f"{safe_url(self.url)}{state}"

    @property
    def online(self) -> bool:
        return self._conn is not None and not self._conn.closed and not self._conn.broken

    def reachable(self) -> bool:
        """Whether PostgreSQL answers now (tried at most every `retry_seconds`); on the way back,
        the spool is synced first."""
        return self._ensure_online()

    def _connect(self) -> None:
        conn = psycopg.connect(self.url, autocommit=True, connect_timeout=max(1, int(self.connect_timeout)),
                               application_name="guard")
        self._conn = conn
        with self._direct():
            self.migrate()
        self._sync()

    def _ensure_online(self) -> bool:
        with self._lock:
            if self.online:
                return True
            now = time.monotonic()
            if now < self._next_try:
                return False
            self._next_try = now + self.retry_seconds
            try:
                self._connect()
                return True
            except (psycopg.OperationalError, _Unreachable) as e:
                self._last_error = _first_line(e)
                self._drop()
                return False

    def _drop(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except psycopg.Error:
                pass
        self._conn = None
        self._depth = 0
        self._next_try = time.monotonic() + self.retry_seconds

    def require_online(self) -> None:
        if not self._ensure_online():
            raise LedgerError(f"ledger {safe_url(self.url)} is unreachable: {self._last_error}")

    def close(self) -> None:
        with self._lock:
            self._drop()
            self.spool.close()
            os.close(self._spool_lock)

    @contextmanager
    def _spool_tx(self) -> Iterator[None]:
        """A spool write transaction, queued on a file lock first: guards on this machine then
        wait in the kernel for each other's syncs instead of in SQLite's sleeping busy handler."""
        with self._lock:
            if self.spool._depth:
                with self.spool.transaction():
                    yield
                return
            fcntl.flock(self._spool_lock, fcntl.LOCK_EX)
            try:
                with self.spool.transaction():
                    yield
            finally:
                fcntl.flock(self._spool_lock, fcntl.LOCK_UN)

    @contextmanager
    def _direct(self) -> Iterator[None]:
        """Statements and transactions inside go to PostgreSQL itself (not through the spool)."""
        self._direct_depth += 1
        try:
            yield
        finally:
            self._direct_depth -= 1

    # -- dialect seam -------------------------------------------------------------------------

    def _execute(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            conn = self._conn
            if conn is None or conn.closed or conn.broken:
                raise _Unreachable(self._last_error or "not connected")
            try:
                cur = conn.execute(convert_placeholders(sql), tuple(params))  # type: ignore[arg-type]
                return cur.fetchall() if cur.description else []
            except psycopg.Error as e:
                if conn.broken or conn.closed or isinstance(e, psycopg.OperationalError):
                    self._last_error = _first_line(e)
                    raise _Unreachable(self._last_error) from None
                raise LedgerError(f"ledger {safe_url(self.url)}: {_first_line(e)}") from None

    @contextmanager
    def _outermost_transaction(self) -> Iterator[None]:
        conn = self._conn
        if conn is None or conn.closed or conn.broken:
            raise _Unreachable(self._last_error or "not connected")
        try:
            with conn.transaction():
                yield
        except psycopg.Error as e:
            if conn.broken or conn.closed or isinstance(e, psycopg.OperationalError):
                self._last_error = _first_line(e)
                raise _Unreachable(self._last_error) from None
            raise LedgerError(f"ledger {safe_url(self.url)}: {_first_line(e)}") from None

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Outside a routed query: a batch of writes, logged to the spool as one local commit and
        then sent to PostgreSQL (when it answers). Inside one: a PostgreSQL transaction."""
        with self._lock:
            if self._direct_depth:
                with SqlLedger.transaction(self):
                    yield
                return
            with self._spool_tx():
                yield
            if not self.spool._depth:
                self._flush()

    def migrate(self) -> None:
        with self.transaction():
            # Many guards may start against a fresh database at once: one migrates, the rest wait.
            self._execute("SELECT pg_advisory_xact_lock(?)", (_MIGRATE_LOCK,))
            super().migrate()

    # -- routing: PostgreSQL when it answers, the local spool when it does not -------------------

    def routed(self, fn: Callable[[SqlLedger], T], *, spool_ok: bool = True) -> T:
        """Run `fn` against PostgreSQL; when it is unreachable, against the local spool
        (or raise LedgerError when `spool_ok` is False)."""
        with self._lock:
            if self._direct_depth:
                return fn(self)
            if self._ensure_online():
                try:
                    with self._direct():
                        return fn(self)
                except _Unreachable:
                    self._drop()
            if not spool_ok:
                self.require_online()
            return fn(self.spool)

    def _write(self, op: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """Every write is logged to the spool first (one local commit), applied to the spool's own
        tables (the local view while offline), then sent in order: none is lost if the link dies
        at any point, and a replay after an unacknowledged commit is idempotent."""
        with self._lock:
            if self._direct_depth:
                return _apply(self, op, args, kwargs)
            with self._spool_tx():
                self.spool._execute("INSERT INTO spool_ops (op, args, ts) VALUES (?, ?, ?)",
                                    (op, json.dumps(_encode(op, args, kwargs)), time.time()))
                result = _apply(self.spool, op, args, kwargs)
            if not self.spool._depth:
                self._flush()
            return result

    def _flush(self) -> None:
        if self._ensure_online():   # on reconnecting, _connect has synced already
            try:
                self._sync()
            except _Unreachable:
                self._drop()

    def _read(self, op: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        return self.routed(lambda led: getattr(SqlLedger, op)(led, *args, **kwargs))

    def create_run(self, run: RunRecord) -> None:
        self._write("create_run", (run,), {})

    def update_run(self, run_id: str, **fields: Any) -> None:
        self._write("update_run", (run_id,), fields)

    def upsert_event(self, run_id: str, ev: UsageEvent, cost_usd: float, price_known: bool) -> None:
        self._write("upsert_event", (run_id, ev, cost_usd, price_known), {})

    def upsert_events(self, batch: Sequence[tuple[str, UsageEvent, float, bool]]) -> None:
        # outside a routed query, each event is an operation of the spool (one local commit for
        # the batch), never a write straight to the server that would bypass it
        if self._direct_depth:
            SqlLedger.upsert_events(self, batch)
            return
        with self.transaction():
            for args in batch:
                self._write("upsert_event", args, {})

    def add_notice(self, run_id: str, key: str, message: str) -> bool:
        return bool(self._write("add_notice", (run_id, key, message), {}))

    def add_approval(self, a: Approval) -> None:
        if not a.ts:
            a = dataclasses.replace(a, ts=time.time())
        self._write("add_approval", (a,), {})

    def mark_task_halted(self, task: str, ceiling: str, run_id: str) -> None:
        self._write("mark_task_halted", (task, ceiling, run_id), {})

    def add_control(self, run_id: str, action: str, payload: dict[str, Any]) -> None:
        self._write("add_control", (run_id, action, payload), {})

    def take_controls(self, run_id: str) -> list[Any]:
        return self._read("take_controls", (run_id,), {})  # type: ignore[no-any-return]

    def get_run(self, run_id: str) -> RunRecord:
        return self._read("get_run", (run_id,), {})  # type: ignore[no-any-return]

    def list_runs(self, **kw: Any) -> list[RunRecord]:  # type: ignore[override]
        return self._read("list_runs", (), kw)  # type: ignore[no-any-return]

    def run_events(self, run_id: str) -> list[tuple[UsageEvent, float, bool]]:
        return self._read("run_events", (run_id,), {})  # type: ignore[no-any-return]

    def run_totals(self, run_id: str) -> Totals:
        return self._read("run_totals", (run_id,), {})  # type: ignore[no-any-return]

    def run_estimated_calls(self, run_id: str) -> int:
        return self._read("run_estimated_calls", (run_id,), {})  # type: ignore[no-any-return]

    def run_event(self, run_id: str, key: str) -> tuple[UsageEvent, float, bool] | None:
        return self._read("run_event", (run_id, key), {})  # type: ignore[no-any-return]

    def task_totals(self, task: str, exclude_run: str | None = None) -> Totals:
        return self.cached_totals(Query("task", (task,)), exclude_run)

    def task_elapsed(self, task: str, exclude_run: str | None = None) -> float:
        return self._read("task_elapsed", (task, exclude_run), {})  # type: ignore[no-any-return]

    def notices(self, run_id: str) -> list[tuple[str, str, float]]:
        return self._read("notices", (run_id,), {})  # type: ignore[no-any-return]

    def approvals(self, task: str) -> list[Approval]:
        return self._read("approvals", (task,), {})  # type: ignore[no-any-return]

    def task_raises(self, task: str) -> dict[str, float]:
        return self._read("task_raises", (task,), {})  # type: ignore[no-any-return]

    def task_halts(self, task: str) -> list[tuple[str, str]]:
        return self._read("task_halts", (task,), {})  # type: ignore[no-any-return]

    def spend(self, since: float, until: float, *, developer: str | None = None,
              team: str | None = None, line: str | None = None, exclude_run: str | None = None) -> Totals:
        return self.cached_totals(Query("spend", (since, until, developer, team, line)), exclude_run)

    # -- last-known figures for offline enforcement ----------------------------------------------

    def cached_totals(self, query: Query | str, exclude_run: str | None | Callable[[SqlLedger], Totals] = None
                      ) -> Totals:
        """`query` on PostgreSQL (remembering the answer), or while unreachable the offline
        policy's figure (guard.ledger.offline.offline_spend). Also `(key, fn)`: a figure of its own."""
        if isinstance(query, str):
            assert callable(exclude_run)
            query, exclude_run = Query.opaque(query, exclude_run), None
        assert not callable(exclude_run)
        with self._lock:
            if self._direct_depth:
                return query.run(self, exclude_run)
            if self._ensure_online():
                try:
                    with self._direct():
                        value = query.run(self, exclude_run)
                        self._remember(query, exclude_run, value)
                    return value
                except _Unreachable:
                    self._drop()
            return self.offline_totals(query, exclude_run)

    def offline_totals(self, query: Query, exclude_run: str | None = None) -> Totals:
        return offline_spend(self.offline_policy, self.last_known(query, exclude_run),
                             query.run(self.spool, exclude_run), safe_url(self.url), query.shared,
                             f" ({query.kind} {query.args[0]})")

    def remember_totals(self, query: Query, exclude_run: str | None, value: Totals) -> None:
        """Inside a routed query: keep `value` (the figure without `exclude_run`) for offline use."""
        with self._direct():
            self._remember(query, exclude_run, value)

    def _remember(self, query: Query, exclude_run: str | None, value: Totals) -> None:
        # Kept per query, not per run: the figure for all runs, and the asking run's part of it.
        # Throttled: the run loop asks often, and a second-old figure is as good offline.
        run = exclude_run or ""
        now = time.monotonic()
        if now - self._remembered.get((query.key, run), -1e9) < 1.0:
            return
        self._remembered[(query.key, run)] = now
        # Under the spool's write lock, so no other guard here syncs between this read and write
        # (its events would be in neither the figure nor the spool).
        with self._spool_tx():
            everything = query.run(self, None) if run else value
            rows = [(query.key, "", everything)]
            if run:
                rows.append((query.key, run, minus(everything, value)))
            for key, r, totals in rows:
                self.spool._execute(
                    "INSERT INTO last_known (query, run, totals, fetched_at) VALUES (?, ?, ?, ?) "
                    "ON CONFLICT (query, run) DO UPDATE SET totals = excluded.totals, "
                    "fetched_at = excluded.fetched_at",
                    (key, r, json.dumps(dataclasses.asdict(totals)), time.time()))

    def last_known(self, query: Query, exclude_run: str | None = None) -> LastKnown | None:
        """The last figure read from PostgreSQL for `query` without `exclude_run`'s part, and when;
        None when it was never read on this machine."""
        rows = self.spool._execute("SELECT run, totals, fetched_at FROM last_known WHERE query = ? "
                                   "AND run IN ('', ?)", (query.key, exclude_run or ""))
        by_run = {r[0]: (Totals(**json.loads(r[1])), float(r[2])) for r in rows}
        if "" not in by_run:
            return None
        everything, fetched_at = by_run[""]
        part = by_run.get(exclude_run or "", (Totals(), 0.0))[0] if exclude_run else Totals()
        return LastKnown(minus(everything, part), fetched_at)

    # -- spool --------------------------------------------------------------------------------

    def _init_spool(self) -> None:
        with self._spool_tx():
            self.spool._execute(
                "CREATE TABLE IF NOT EXISTS spool_ops (seq INTEGER PRIMARY KEY AUTOINCREMENT, "
                "op TEXT NOT NULL, args TEXT NOT NULL, ts REAL NOT NULL)")
            self.spool._execute(
                "CREATE TABLE IF NOT EXISTS last_known (query TEXT NOT NULL, run TEXT NOT NULL, "
                "totals TEXT NOT NULL, fetched_at REAL NOT NULL, PRIMARY KEY (query, run))")
            self.spool._execute(
                "CREATE TABLE IF NOT EXISTS spool_rejected (seq INTEGER PRIMARY KEY, op TEXT NOT NULL, "
                "args TEXT NOT NULL, ts REAL NOT NULL, error TEXT NOT NULL)")

    def spooled(self) -> int:
        """How many writes wait for PostgreSQL."""
        return int(self.spool._execute("SELECT COUNT(*) FROM spool_ops")[0][0])

    def unsynced_events(self) -> int:
        """How many usage-event writes wait for PostgreSQL (for `guard status`)."""
        return int(self.spool._execute(
            "SELECT COUNT(*) FROM spool_ops WHERE op = 'upsert_event'")[0][0])

    def rejected(self) -> int:
        """Writes PostgreSQL refused on replay (kept in the spool's spool_rejected table)."""
        return int(self.spool._execute("SELECT COUNT(*) FROM spool_rejected")[0][0])

    def sync(self) -> int:
        """Replay the spool now if PostgreSQL answers; returns how many writes were replayed."""
        with self._lock:
            if not self._ensure_online():
                return 0
            try:
                return self._sync()
            except _Unreachable:
                self._drop()
                return 0

    def _sync(self) -> int:
        done = 0
        # The spool's write lock is held throughout, so another guard on this machine cannot
        # spool a write that this sync would then delete unsent.
        with self._spool_tx():
            while True:
                rows = self.spool._execute(
                    "SELECT seq, op, args, ts FROM spool_ops ORDER BY seq LIMIT 500")
                if not rows:
                    break
                try:
                    with self._direct(), self.transaction():
                        for row in rows:
                            _replay(self, row[1], json.loads(row[2]))
                except LedgerError:
                    rows = self._replay_one_by_one(rows)
                self.spool._execute("DELETE FROM spool_ops WHERE seq <= ?", (rows[-1][0],))
                done += len(rows)
            if done:
                self._synced()
        return done

    def _replay_one_by_one(self, rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
        # One write PostgreSQL refuses (bad data, not a dead link) must not hold back the others:
        # it is set aside with its error, and the rest go through in order.
        for seq, op, args, ts in rows:
            try:
                with self._direct(), self.transaction():
                    _replay(self, op, json.loads(args))
            except LedgerError as e:
                self.spool._execute("INSERT OR REPLACE INTO spool_rejected (seq, op, args, ts, error) "
                                    "VALUES (?, ?, ?, ?, ?)", (seq, op, args, ts, str(e)))
        return rows

    def _synced(self) -> None:
        # What was just sent now lives in PostgreSQL. The last-known figures predate it, so it is
        # added to them before it leaves the spool; kept here as well, it would count twice the
        # next time the link drops.
        for key, run, totals in self.spool._execute("SELECT query, run, totals FROM last_known"):
            query = Query.from_key(key)
            if query is None:
                continue
            sent = query.run(self.spool, None)
            if run:
                sent = minus(sent, query.run(self.spool, run))
            self.spool._execute("UPDATE last_known SET totals = ? WHERE query = ? AND run = ?", (
                json.dumps(dataclasses.asdict(Totals(**json.loads(totals)).plus(sent))), key, run))
        for table in ("events", "controls", "approvals", "task_halts"):
            self.spool._execute(f"DELETE FROM {table}")
        self.spool._execute("DELETE FROM runs WHERE ended_at IS NOT NULL AND ended_at < ?",
                            (time.time() - 7 * 86400,))


# -- operation log encoding -----------------------------------------------------------------------


def _halt_dict(h: Halt | None) -> dict[str, Any] | None:
    return dataclasses.asdict(h) if h else None


def _encode(op: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
    if op == "create_run":
        run: RunRecord = args[0]
        d = dataclasses.asdict(run)
        d.pop("usage", None)
        d["halt"] = _halt_dict(run.halt)
        return {"run": d}
    if op == "update_run":
        fields = dict(kwargs)
        if "halt" in fields:
            fields["halt"] = _halt_dict(fields["halt"])
        return {"run_id": args[0], "fields": fields}
    if op == "upsert_event":
        return {"run_id": args[0], "event": dataclasses.asdict(args[1]), "cost": args[2], "known": args[3]}
    if op == "add_approval":
        return {"approval": dataclasses.asdict(args[0])}
    return {"args": list(args), "kwargs": kwargs}


def insert_run_once(led: SqlLedger, run: RunRecord) -> None:
    with led.transaction():
        led._execute(
            f"INSERT INTO runs ({_RUN_COLUMNS}) VALUES ({', '.join('?' * _RUN_COLUMN_COUNT)}) ON CONFLICT (id) DO NOTHING",
            led._run_params(run))


def _apply(led: SqlLedger, op: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    if op == "create_run":
        return insert_run_once(led, args[0])
    if op == "upsert_event" and isinstance(led, PostgresLedger):
        return _upsert_event_durable(led, *args)
    return getattr(SqlLedger, op)(led, *args, **kwargs)


def _upsert_event_durable(led: PostgresLedger, run_id: str, ev: UsageEvent, cost_usd: float,
                          price_known: bool) -> None:
    # Usage events are the hot path (one commit per model call, from every guard). They are
    # durable by default: a ledger that never loses a cent waits for the WAL flush (1,700+
    # commits/s on the test machine). GUARD_PG_ASYNC_EVENTS=1 trades that for speed on a
    # slow disk: a *server* crash may then lose the last fraction of a second of events.
    with led.transaction():
        if os.environ.get("GUARD_PG_ASYNC_EVENTS") == "1":
            led._execute("SET LOCAL synchronous_commit = off")
        SqlLedger.upsert_event(led, run_id, ev, cost_usd, price_known)


def _replay(led: PostgresLedger, op: str, a: dict[str, Any]) -> None:
    if op == "create_run":
        d = a["run"]
        d["halt"] = Halt(**d["halt"]) if d.get("halt") else None
        insert_run_once(led, RunRecord(**d))
    elif op == "update_run":
        fields = a["fields"]
        if "halt" in fields:
            fields["halt"] = Halt(**fields["halt"]) if fields["halt"] else None
        SqlLedger.update_run(led, a["run_id"], **fields)
    elif op == "upsert_event":
        _upsert_event_durable(led, a["run_id"], UsageEvent(**a["event"]), a["cost"], a["known"])
    elif op == "add_approval":
        ap = Approval(**a["approval"])
        # Replayed twice (the link died after the server committed)? Recorded once.
        if not led._execute(
                "SELECT 1 FROM approvals WHERE task = ? AND ceiling = ? AND approved_by = ? AND ts = ?",
                (ap.task, ap.ceiling, ap.approved_by, ap.ts)):
            SqlLedger.add_approval(led, ap)
    elif op == "add_control":
        SqlLedger.add_control(led, *a["args"], **a["kwargs"])
    elif op in ("add_notice", "mark_task_halted"):
        getattr(SqlLedger, op)(led, *a["args"], **a["kwargs"])
    else:
        raise LedgerError(f"spool: unknown operation {op!r}")
