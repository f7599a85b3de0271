"""The embedded ledger: one SQLite file in WAL mode, safe for many guards on one machine."""
from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from guard.errors import LedgerError
from guard.home import create_private_file
from guard.ledger.sql import SqlLedger


class SqliteLedger(SqlLedger):
    dialect = "sqlite"

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path
        try:
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            create_private_file(path)
            # isolation_level=None: we issue BEGIN IMMEDIATE ourselves, so writers queue on the
            # lock up front instead of failing on upgrade from a read lock.
            self._conn = sqlite3.connect(str(path), timeout=30, isolation_level=None,
                                         check_same_thread=False)
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.execute("PRAGMA busy_timeout=30000")
        except (OSError, sqlite3.Error) as e:
            raise LedgerError(f"ledger {path}: {e}") from None
        self.migrate()

    def describe(self) -> str:
        return f"sqlite:{self.path}"

    def _execute(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            try:
                return self._conn.execute(sql, tuple(params)).fetchall()
            except sqlite3.Error as e:
                raise LedgerError(f"ledger {self.path}: {e}") from None

    def _executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        with self._lock:
            try:
                self._conn.executemany(sql, [tuple(r) for r in rows])
            except sqlite3.Error as e:
                raise LedgerError(f"ledger {self.path}: {e}") from None

    @contextmanager
    def _outermost_transaction(self) -> Iterator[None]:
        # BEGIN IMMEDIATE: writers queue on the lock up front instead of failing on the upgrade
        self._execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        self._execute("COMMIT")

    def close(self) -> None:
        self._conn.close()
