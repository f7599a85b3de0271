"""Tests and bench: a synthetic ledger shaped like a team's month: developers in teams, tools, models, halts,
a few runs going on now. Written straight through SQL, in bulk, so 1M events take seconds."""
from __future__ import annotations

import json
import random
import time
from pathlib import Path

from guard.ledger.sql import _RUN_COLUMNS, SqlLedger
from guard.ledger.sqlite import SqliteLedger

MODELS = ("claude-sonnet-4-5", "claude-opus-4-1", "claude-haiku-4-5", "gpt-5")
TOOLS = ("claude", "aider", "codex")


def make_ledger(path: Path, events: int, *, runs: int | None = None, developers: int = 40,
                running: int = 4, seed: int = 7, now: float | None = None) -> SqliteLedger:
    rng = random.Random(seed)
    now = now or time.time()
    runs = runs or max(1, events // 50)
    ledger = SqliteLedger(path)
    # this month so far, at least a day: the dashboard's default period
    t0 = time.mktime(time.localtime(now)[:2] + (1, 0, 0, 0, 0, 0, -1))
    span = max(now - t0 - 400, 1.0)
    run_rows, event_rows = [], []
    per_run = max(1, events // runs)
    for i in range(runs):
        dev = f"dev{rng.randrange(developers):02d}@example.com"
        team = f"team{hash(dev) % 5}"
        is_running = i < running
        started = now - rng.random() * 300 if is_running else t0 + rng.random() * span
        halted = not is_running and rng.random() < 0.08
        status = "running" if is_running else ("halted" if halted else "completed")
        limits = {"usd": 5.0}
        run_rows.append((f"r{i:07d}", rng.choice(TOOLS), f"task-{rng.randrange(runs // 3 + 1)}", dev, team,
                         "bench", None, status, None if is_running else 0, started,
                         None if is_running else started + 300, "", "[]", json.dumps(limits), "exact",
                         None, None, 0, "usd" if halted else None, 5.0 if halted else None,
                         5.0 if halted else None, "stop" if halted else None, None))
        n = per_run if i < runs - 1 else events - per_run * (runs - 1)
        for k in range(n):
            cost = rng.expovariate(1 / 0.02)
            event_rows.append((f"r{i:07d}", f"k{k}", "bench", rng.choice(MODELS), rng.randrange(2000),
                               rng.randrange(800), 0, 0, rng.randrange(5000), cost, None, 1, 1, 0, 0,
                               started + k))
    with ledger.transaction():
        ledger._conn.executemany(f"INSERT INTO runs (id, tool, task, developer, team, machine, line, status, "
                                 f"exit_code, started_at, ended_at, cwd, argv, limits, accuracy, guard_pid, "
                                 f"agent_pid, skipped_records, halt_ceiling, halt_limit, halt_used, halt_action, "
                                 f"halt_message) VALUES ({', '.join('?' * 23)})", run_rows)
        ledger._conn.executemany(
            "INSERT INTO events (run_id, key, source, model, input_tokens, output_tokens, cache_write_tokens, "
            "cache_write_1h_tokens, cache_read_tokens, cost_usd, stated_cost_usd, price_known, steps, "
            "estimated, interrupted, ts) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", event_rows)
    return ledger


def copy_ledger(src: SqliteLedger, dst: SqlLedger) -> None:
    """Every run and event of `src` into `dst` (e.g. PostgreSQL), as the ledger's own inserts would."""
    runs = src._execute(f"SELECT {_RUN_COLUMNS} FROM runs")
    for row in runs:
        dst.create_run(SqlLedger._run(row))
    for run_id, ev, cost, known in ((r[0], *e) for r in runs for e in src.run_events(r[0])):
        dst.upsert_event(run_id, ev, cost, known)
