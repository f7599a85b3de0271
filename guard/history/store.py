"""The import cursors in the ledger (table import_cursors, migration 4)."""
from __future__ import annotations

import json
import time
from collections.abc import Iterable

from guard.history.cursor import Cursor
from guard.ledger.sql import SqlLedger


def load_cursors(ledger: SqlLedger) -> dict[str, Cursor]:
    rows = ledger._execute(
        "SELECT path, source, inode, size, mtime, read_to, prefix_hash, state FROM import_cursors")
    return {r[0]: Cursor(path=r[0], source=r[1], inode=int(r[2]), size=int(r[3]), mtime=float(r[4]),
                         offset=int(r[5]), prefix_hash=r[6], state=json.loads(r[7]))
            for r in rows}


def save_cursors(ledger: SqlLedger, cursors: Iterable[Cursor]) -> None:
    now = time.time()
    rows = [(c.path, c.source, c.inode, c.size, c.mtime, c.offset, c.prefix_hash, json.dumps(c.state), now)
            for c in cursors]
    with ledger.transaction():
        ledger._executemany(
            "INSERT INTO import_cursors (path, source, inode, size, mtime, read_to, prefix_hash, state, "
            "updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (path) DO UPDATE SET "
            "source = excluded.source, inode = excluded.inode, size = excluded.size, "
            "mtime = excluded.mtime, read_to = excluded.read_to, prefix_hash = excluded.prefix_hash, "
            "state = excluded.state, updated_at = excluded.updated_at", rows)
