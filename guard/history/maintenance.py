"""Pruning raw events (the rollups stay) and exporting them."""
from __future__ import annotations

import csv
import json
from typing import IO, Any

from guard.ledger.records import iso
from guard.ledger.sql import SqlLedger

EXPORT_COLUMNS = ("run_id", "key", "ts", "developer", "team", "tool", "task", "source", "model",
                  "input_tokens", "output_tokens", "cache_write_tokens", "cache_write_1h_tokens",
                  "cache_read_tokens", "cost_usd", "stated_cost_usd", "price_known", "steps", "estimated",
                  "interrupted", "imported")


def prune(ledger: SqlLedger, before: float, *, dry_run: bool = False) -> int:
    """Delete events before `before`. run_usage is left as it is, so reports and run totals
    in `guard runs` keep them; a pruned call seen again would be counted again, so prune only
    what no source will replay (import cursors remember what was read)."""
    with ledger.transaction():
        n = int(ledger._execute("SELECT COUNT(*) FROM events WHERE ts < ?", (before,))[0][0])
        if not dry_run and n:
            ledger._execute("DELETE FROM events WHERE ts < ?", (before,))
    return n


def export(ledger: SqlLedger, out: IO[str], fmt: str, *, since: float | None = None,
           until: float | None = None) -> int:
    where, params = [], []
    if since is not None:
        where.append("e.ts >= ?")
        params.append(since)
    if until is not None:
        where.append("e.ts < ?")
        params.append(until)
    sql = ("SELECT e.run_id, e.key, e.ts, r.developer, r.team, r.tool, r.task, e.source, e.model, "
           "e.input_tokens, e.output_tokens, e.cache_write_tokens, e.cache_write_1h_tokens, "
           "e.cache_read_tokens, e.cost_usd, e.stated_cost_usd, e.price_known, e.steps, e.estimated, "
           "e.interrupted, r.accuracy FROM events e LEFT JOIN runs r ON r.id = e.run_id"
           + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY e.ts, e.run_id, e.key")
    writer = csv.writer(out, lineterminator="\n") if fmt == "csv" else None
    if writer:
        writer.writerow(EXPORT_COLUMNS)
    n = 0
    for row in ledger._execute(sql, params):
        rec: dict[str, Any] = dict(zip(EXPORT_COLUMNS, row, strict=True))
        rec["ts"] = iso(float(rec["ts"]))
        for k in ("price_known", "estimated", "interrupted"):
            rec[k] = bool(rec[k])
        rec["imported"] = rec["imported"] == "imported"
        if writer:
            writer.writerow([rec[c] if rec[c] is not None else "" for c in EXPORT_COLUMNS])
        else:
            out.write(json.dumps(rec) + "\n")
        n += 1
    return n
