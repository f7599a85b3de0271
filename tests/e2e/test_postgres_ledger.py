"""The PostgreSQL ledger against the real server (GUARD_TEST_PG), including losing it mid-run.

The link is cut with a small TCP relay between guard and the server: `relay.cut()` closes every
connection and stops listening (the server looks gone), `relay.restore()` listens again.
"""
from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest

from guard import budgets
from guard.errors import LedgerError, Refused
from guard.ledger import open_ledger
from guard.ledger.offline import Query
from guard.ledger.postgres import PostgresLedger, convert_placeholders
from guard.ledger.records import Approval, Halt, RunRecord
from guard.ledger.reservations import release, reserve, scope_totals
from guard.ledger.schema import LATEST, VERSIONS
from guard.usage import UsageEvent
from tests.pgtest import pg_schema

pytestmark = [pytest.mark.e2e, pytest.mark.pg]


def wait_until(pred: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


class Relay:
    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = 0
        self._lsock: socket.socket | None = None
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()
        self.restore()

    def restore(self) -> None:
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", self.port))
        s.listen(16)
        self.port = s.getsockname()[1]
        self._lsock = s
        threading.Thread(target=self._accept, args=(s,), daemon=True).start()

    def _accept(self, lsock: socket.socket) -> None:
        while True:
            try:
                c, _ = lsock.accept()
            except OSError:
                return
            try:
                u = socket.create_connection(self.target)
            except OSError:
                c.close()
                continue
            with self._lock:
                self._conns += [c, u]
            for a, b in ((c, u), (u, c)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(a: socket.socket, b: socket.socket) -> None:
        try:
            while data := a.recv(65536):
                b.sendall(data)
        except OSError:
            pass
        finally:
            for s in (a, b):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def cut(self) -> None:
        if self._lsock:
            try:
                self._lsock.shutdown(socket.SHUT_RDWR)   # wakes the blocked accept(), frees the port
            except OSError:
                pass
            self._lsock.close()
            self._lsock = None
        with self._lock:
            for s in self._conns:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                    s.close()
                except OSError:
                    pass
            self._conns.clear()


@pytest.fixture
def pg_url() -> Iterator[str]:
    with pg_schema() as url:
        yield url


def relayed(url: str, relay: Relay) -> str:
    parts = urlsplit(url)
    netloc = parts.netloc.rsplit("@", 1)
    host = f"127.0.0.1:{relay.port}"
    return urlunsplit(parts._replace(netloc=f"{netloc[0]}@{host}" if len(netloc) == 2 else host))


def run(run_id: str, developer: str = "alice", team: str | None = "core", line: str | None = None) -> RunRecord:
    return RunRecord(id=run_id, tool="claude", task="t1", developer=developer, team=team, line=line,
                     started_at=time.time())


def ev(key: str, tokens: int = 100, ts: float | None = None) -> UsageEvent:
    return UsageEvent(key=key, source="test", model="claude-sonnet-4-5", input_tokens=tokens,
                      output_tokens=tokens // 10, ts=time.time() if ts is None else ts)


# -- the same ledger as SQLite -------------------------------------------------------------------


def test_migrates_to_latest_and_reopens(pg_url: str, tmp_path: Path) -> None:
    led = open_ledger(pg_url, tmp_path)
    assert isinstance(led, PostgresLedger) and led.online
    assert led._execute("SELECT MAX(version) FROM schema_version")[0][0] == LATEST
    led.close()
    led = open_ledger(pg_url, tmp_path)   # second open: no migration runs twice
    # versions are applied by number and branches may skip some: every defined one, once
    assert [r[0] for r in led._execute("SELECT version FROM schema_version ORDER BY version")] == VERSIONS
    led.close()


def test_runs_events_idempotent_and_spend(pg_url: str, tmp_path: Path) -> None:
    led = open_ledger(pg_url, tmp_path)
    led.create_run(run("r1"))
    led.upsert_event("r1", ev("k1"), 0.5, True)
    led.upsert_event("r1", ev("k1", tokens=200), 0.75, True)   # same key: replaces, never adds
    led.upsert_event("r1", ev("k2"), 0.25, True)
    t = led.run_totals("r1")
    assert (t.calls, t.input_tokens, t.cost_usd) == (2, 300, 1.0)
    led.update_run("r1", status="halted", ended_at=time.time(),
                   halt=Halt("developer_usd", 1.0, 1.0, "stop", "limit"))
    got = led.get_run("r1")
    assert got.status == "halted" and got.halt and got.halt.ceiling == "developer_usd"
    assert led.get_run("r")  # unique prefix
    assert led.spend(0, 4e9, developer="alice").cost_usd == 1.0
    assert led.spend(0, 4e9, developer="bob").cost_usd == 0.0
    assert led.add_notice("r1", "k", "m") is True and led.add_notice("r1", "k", "m") is False
    led.add_approval(Approval(None, "t1", "usd", 5.0, "lead", "ok"))
    assert led.task_raises("t1") == {"usd": 5.0}
    assert [r.id for r in led.list_runs(status=["halted"])] == ["r1"]
    led.close()


def test_nested_transaction_rolls_back_as_one(pg_url: str, tmp_path: Path) -> None:
    led = open_ledger(pg_url, tmp_path)
    led.create_run(run("r1"))
    with pytest.raises(RuntimeError):
        with led.transaction():
            led.upsert_event("r1", ev("a"), 1.0, True)
            with led.transaction():
                led.upsert_event("r1", ev("b"), 1.0, True)
            raise RuntimeError("boom")
    assert led.run_totals("r1").calls == 0
    led.close()


def test_bad_sql_is_a_one_line_ledger_error(pg_url: str, tmp_path: Path) -> None:
    led = open_ledger(pg_url, tmp_path)
    with pytest.raises(LedgerError) as e:
        led._execute("SELECT nope FROM runs")
    assert "\n" not in str(e.value) and "nope" in str(e.value)
    led.close()


def test_placeholders_leave_literals_alone() -> None:
    assert convert_placeholders("SELECT '?%' , x LIKE ? , \"a?\" FROM t WHERE y = ?") == \
        "SELECT '?%%' , x LIKE %s , \"a?\" FROM t WHERE y = %s"


def test_thread_safe_writes(pg_url: str, tmp_path: Path) -> None:
    led = open_ledger(pg_url, tmp_path)
    led.create_run(run("r1"))

    def work(i: int) -> None:
        for k in range(50):
            led.upsert_event("r1", ev(f"{i}-{k}"), 0.01, True)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert led.run_totals("r1").calls == 200
    led.close()


def test_reservations_bound_admission(pg_url: str, tmp_path: Path) -> None:
    led = open_ledger(pg_url, tmp_path)
    led.create_run(run("r1"))
    led.upsert_event("r1", ev("k"), 6.0, True)

    class Lim:
        scope, limit, since, until, name = "developer:alice", 10.0, 0.0, 4e9, "developer_usd"

    r1 = reserve(led, [Lim], 3.0, "r1")
    with pytest.raises(Refused, match="developer_usd"):
        reserve(led, [Lim], 1.5, "r2")          # 6 + 3 in flight + 1.5 > 10
    release(led, r1)
    reserve(led, [Lim], 1.5, "r2")
    r3 = reserve(led, [Lim], 2.0, "r3", ttl=0.01, now=time.time() - 1)   # already expired
    assert r3
    reserve(led, [Lim], 2.0, "r4")               # the expired one no longer counts
    led.close()


# -- offline ----------------------------------------------------------------------------------------


@pytest.fixture
def relay() -> Iterator[Relay]:
    import os
    target = urlsplit(os.environ["GUARD_TEST_PG"])
    r = Relay((target.hostname or "127.0.0.1", target.port or 5432))
    yield r
    r.cut()


def test_events_spooled_while_offline_and_synced_once(pg_url: str, relay: Relay, tmp_path: Path) -> None:
    led = PostgresLedger(relayed(pg_url, relay), tmp_path, retry_seconds=0.2)
    assert led.online
    led.create_run(run("r1"))
    led.upsert_event("r1", ev("k1"), 1.0, True)
    now = time.time()
    day = (now - 3600, now + 3600)
    # read once online: this is the "last known" figure enforced offline
    assert scope_totals(led, "developer:alice", *day).cost_usd == 1.0

    relay.cut()
    led.upsert_event("r1", ev("k2"), 2.0, True)            # the link dies on this write
    assert not led.online
    led.upsert_event("r1", ev("k3"), 4.0, True)
    led.upsert_event("r1", ev("k3"), 4.0, True)            # replayed report of the same call
    led.update_run("r1", status="completed", ended_at=time.time(), exit_code=0)
    assert led.spooled() >= 4
    # offline enforcement: last known (1.0) + spooled here (2.0 + 4.0)
    assert scope_totals(led, "developer:alice", *day).cost_usd == 7.0
    # a period never read online is unknown: fail closed
    with pytest.raises(LedgerError, match="fail closed"):
        scope_totals(led, "developer:alice", 0.0, 1.0)
    # grants need the shared ledger
    with pytest.raises(LedgerError, match="unreachable"):
        budgets.grant(led, "developer:alice", 5.0, "lead", "offline")

    # while it is down, a direct look at the server shows only what reached it
    with psycopg.connect(pg_url) as c:
        assert c.execute("SELECT COUNT(*) FROM events").fetchone()[0] == 1

    relay.restore()
    wait_until(lambda: led.sync() >= 0 and led.online and led.spooled() == 0, what="spool synced")
    with psycopg.connect(pg_url) as c:
        rows = c.execute("SELECT key, cost_usd FROM events ORDER BY key").fetchall()
        status = c.execute("SELECT status FROM runs WHERE id = 'r1'").fetchone()[0]
    assert rows == [("k1", 1.0), ("k2", 2.0), ("k3", 4.0)]
    assert status == "completed"
    assert scope_totals(led, "developer:alice", *day).cost_usd == 7.0   # not 13: nothing doubled
    led.close()


def test_new_run_during_an_outage_finds_the_figure_an_earlier_run_read(
        pg_url: str, relay: Relay, tmp_path: Path) -> None:
    led = PostgresLedger(relayed(pg_url, relay), tmp_path, retry_seconds=0.2)
    now = time.time()
    day = (now - 3600, now + 3600)
    led.create_run(run("r1"))
    led.upsert_event("r1", ev("k1"), 1.0, True)
    other = open_ledger(pg_url, tmp_path / "elsewhere")          # another machine spent 2.0
    other.create_run(run("o1"))
    other.upsert_event("o1", ev("k1"), 2.0, True)
    other.close()
    # r1 reads the developer's day without its own part, as the run loop does
    assert led.spend(*day, developer="alice", exclude_run="r1").cost_usd == 2.0
    led.upsert_event("r1", ev("k2"), 0.5, True)                 # sent: now part of the shared 3.5
    relay.cut()
    led.upsert_event("r1", ev("k3"), 0.25, True)                # spooled
    assert not led.online
    # a new run on this machine: the last figure (1.0 + 2.0 + 0.5 sent since) + the spool (0.25)
    assert led.spend(*day, developer="alice", exclude_run="r2").cost_usd == pytest.approx(3.75)
    # r1 itself still sees everything but its own part
    assert led.spend(*day, developer="alice", exclude_run="r1").cost_usd == pytest.approx(2.0)
    assert led.last_known(Query("spend", (*day, "alice", None, None)), "r2") is not None
    led.close()


def test_starts_offline_and_syncs_a_whole_run_later(pg_url: str, relay: Relay, tmp_path: Path) -> None:
    relay.cut()
    led = PostgresLedger(relayed(pg_url, relay), tmp_path, retry_seconds=0.2, offline="open")
    assert not led.online
    led.create_run(run("r9", developer="bob"))
    for i in range(5):
        led.upsert_event("r9", ev(f"k{i}"), 0.5, True)
    assert led.run_totals("r9").calls == 5                  # local view while offline
    assert scope_totals(led, "developer:bob", 0.0, 4e9).cost_usd == 2.5   # "open": unknown = 0
    relay.restore()
    wait_until(lambda: led.sync() >= 0 and led.spooled() == 0 and led.online, what="spool synced")
    other = open_ledger(pg_url, tmp_path / "elsewhere")      # another machine sees it all
    assert other.get_run("r9").developer == "bob"
    assert other.run_totals("r9").cost_usd == 2.5
    other.close()
    led.close()


def test_refuse_policy_refuses_everything_offline(pg_url: str, relay: Relay, tmp_path: Path) -> None:
    relay.cut()
    led = PostgresLedger(relayed(pg_url, relay), tmp_path, retry_seconds=60, offline="refuse")
    with pytest.raises(LedgerError, match="policy is refuse"):
        scope_totals(led, "developer:alice", 0.0, 4e9)
    led.close()


def test_bad_url_is_a_ledger_error(tmp_path: Path) -> None:
    with pytest.raises(LedgerError):
        PostgresLedger("postgresql://x@127.0.0.1:5432/test?bogus_option=1", tmp_path)


# -- history and versions ----------------------------------------------------------------------------


def test_a_schema_that_lost_rows_is_refused(pg_url: str, tmp_path: Path) -> None:
    from guard.ledger import marker

    led = PostgresLedger(pg_url, tmp_path)
    led.create_run(run("r1"))
    led.upsert_event("r1", ev("k1"), 1.0, True)
    marker.check(led, tmp_path)
    marker.record(led, tmp_path)
    with psycopg.connect(pg_url, autocommit=True) as c:
        c.execute("DELETE FROM events WHERE run_id = 'r1'")
    with pytest.raises(marker.LedgerTampered, match="lost rows .*accept-reset"):
        marker.check(led, tmp_path)
    marker.accept(led, tmp_path)
    marker.check(led, tmp_path)
    led.close()


def test_an_older_guard_keeps_working_on_a_newer_schema(pg_url: str, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    import guard.ledger.sql as sql

    PostgresLedger(pg_url, tmp_path / "new").close()          # migrated by this guard
    # a guard that predates the argv scrub (3): the one migration no column the current code writes needs
    older = [v for v in sql.VERSIONS if v != 3]
    monkeypatch.setattr(sql, "VERSIONS", older)                # a guard that predates the latest one
    led = PostgresLedger(pg_url, tmp_path / "old")
    led.create_run(run("r-old"))
    led.upsert_event("r-old", ev("k1"), 1.5, True)
    led.update_run("r-old", status="completed", ended_at=time.time(), exit_code=0)
    assert led.get_run("r-old").usage.cost_usd == 1.5
    with psycopg.connect(pg_url) as c:
        applied = {r[0] for r in c.execute("SELECT version FROM schema_version").fetchall()}
    assert 3 in applied and len(applied) == len(set(applied))   # nothing applied twice or undone
    led.close()
