"""Versioned migrations, written once for both backends.

`{REAL}`, `{BIGINT}` and `{SERIAL}` are filled per dialect; everything else is portable SQL.
A migration is never edited after it has shipped: add a new one.
"""
from __future__ import annotations

MIGRATIONS: list[tuple[int, list[str]]] = [
    (1, [
        """CREATE TABLE runs (
            id TEXT PRIMARY KEY,
            tool TEXT NOT NULL,
            task TEXT NOT NULL,
            developer TEXT NOT NULL,
            team TEXT,
            machine TEXT,
            line TEXT,
            status TEXT NOT NULL,
            exit_code {BIGINT},
            started_at {REAL} NOT NULL,
            ended_at {REAL},
            cwd TEXT NOT NULL DEFAULT '',
            argv TEXT NOT NULL DEFAULT '[]',
            limits TEXT NOT NULL DEFAULT '{{}}',
            accuracy TEXT NOT NULL DEFAULT 'exact',
            guard_pid {BIGINT},
            agent_pid {BIGINT},
            skipped_records {BIGINT} NOT NULL DEFAULT 0,
            halt_ceiling TEXT,
            halt_limit {REAL},
            halt_used {REAL},
            halt_action TEXT,
            halt_message TEXT
        )""",
        "CREATE INDEX runs_task ON runs(task)",
        "CREATE INDEX runs_started ON runs(started_at)",
        "CREATE INDEX runs_status ON runs(status)",
        """CREATE TABLE events (
            run_id TEXT NOT NULL,
            key TEXT NOT NULL,
            source TEXT NOT NULL,
            model TEXT,
            input_tokens {BIGINT} NOT NULL DEFAULT 0,
            output_tokens {BIGINT} NOT NULL DEFAULT 0,
            cache_write_tokens {BIGINT} NOT NULL DEFAULT 0,
            cache_write_1h_tokens {BIGINT} NOT NULL DEFAULT 0,
            cache_read_tokens {BIGINT} NOT NULL DEFAULT 0,
            cost_usd {REAL} NOT NULL DEFAULT 0,
            stated_cost_usd {REAL},
            price_known {BIGINT} NOT NULL DEFAULT 1,
            steps {BIGINT} NOT NULL DEFAULT 0,
            estimated {BIGINT} NOT NULL DEFAULT 0,
            interrupted {BIGINT} NOT NULL DEFAULT 0,
            ts {REAL} NOT NULL,
            PRIMARY KEY (run_id, key)
        )""",
        "CREATE INDEX events_ts ON events(ts)",
        """CREATE TABLE notices (
            run_id TEXT NOT NULL,
            key TEXT NOT NULL,
            message TEXT NOT NULL,
            ts {REAL} NOT NULL,
            PRIMARY KEY (run_id, key)
        )""",
        """CREATE TABLE approvals (
            id {SERIAL},
            run_id TEXT,
            task TEXT NOT NULL,
            ceiling TEXT NOT NULL,
            amount {REAL},
            approved_by TEXT NOT NULL,
            reason TEXT NOT NULL DEFAULT '',
            ts {REAL} NOT NULL
        )""",
        "CREATE INDEX approvals_task ON approvals(task)",
        """CREATE TABLE task_halts (
            task TEXT NOT NULL,
            ceiling TEXT NOT NULL,
            run_id TEXT NOT NULL,
            ts {REAL} NOT NULL,
            PRIMARY KEY (task, ceiling)
        )""",
        """CREATE TABLE controls (
            id {SERIAL},
            run_id TEXT NOT NULL,
            action TEXT NOT NULL,
            payload TEXT NOT NULL DEFAULT '{{}}',
            created_at {REAL} NOT NULL,
            done_at {REAL}
        )""",
        "CREATE INDEX controls_run ON controls(run_id)",
    ]),
    # 2: team budgets. Reservations bound admission across machines (rows of one reservation
    # share an id, one row per scope); grants raise a scope's ceilings for the period they fall in;
    # budget_notices makes a soft-threshold notice once per scope, period and threshold.
    (2, [
        """CREATE TABLE reservations (
            id TEXT NOT NULL,
            scope TEXT NOT NULL,
            usd {REAL} NOT NULL,
            run_id TEXT,
            created_at {REAL} NOT NULL,
            expires_at {REAL} NOT NULL,
            PRIMARY KEY (id, scope)
        )""",
        "CREATE INDEX reservations_scope ON reservations(scope, expires_at)",
        """CREATE TABLE budget_grants (
            id {SERIAL},
            scope TEXT NOT NULL,
            period TEXT,
            usd {REAL} NOT NULL,
            granted_by TEXT NOT NULL,
            reason TEXT NOT NULL DEFAULT '',
            ts {REAL} NOT NULL
        )""",
        "CREATE INDEX budget_grants_scope ON budget_grants(scope, ts)",
        """CREATE TABLE budget_notices (
            scope TEXT NOT NULL,
            period TEXT NOT NULL,
            period_start {REAL} NOT NULL,
            threshold {REAL} NOT NULL,
            message TEXT NOT NULL DEFAULT '',
            ts {REAL} NOT NULL,
            PRIMARY KEY (scope, period, period_start, threshold)
        )""",
        "CREATE INDEX runs_developer ON runs(developer)",
        "CREATE INDEX runs_team ON runs(team)",
        "CREATE INDEX events_run_ts ON events(run_id, ts)",
    ]),
    # Version 3 rewrites no schema: it scrubs prompts and secrets out of runs.argv, which SQL
    # alone cannot do (guard.ledger.sql DATA_MIGRATIONS holds its Python step).
    (3, []),
    # 4: history and fast reports. run_usage is the per-run, per-model sum of events, kept in the
    # transaction that writes each event (it survives `guard prune`); events_key finds a response
    # metered under any run (imports dedupe against live metering); import_cursors remembers how
    # far `guard import` read each file.
    (4, [
        """CREATE TABLE run_usage (
            run_id TEXT NOT NULL,
            model TEXT NOT NULL,
            input_tokens {BIGINT} NOT NULL DEFAULT 0,
            output_tokens {BIGINT} NOT NULL DEFAULT 0,
            cache_write_tokens {BIGINT} NOT NULL DEFAULT 0,
            cache_write_1h_tokens {BIGINT} NOT NULL DEFAULT 0,
            cache_read_tokens {BIGINT} NOT NULL DEFAULT 0,
            cost_usd {REAL} NOT NULL DEFAULT 0,
            steps {BIGINT} NOT NULL DEFAULT 0,
            calls {BIGINT} NOT NULL DEFAULT 0,
            estimated_calls {BIGINT} NOT NULL DEFAULT 0,
            PRIMARY KEY (run_id, model)
        )""",
        """INSERT INTO run_usage (run_id, model, input_tokens, output_tokens, cache_write_tokens,
            cache_write_1h_tokens, cache_read_tokens, cost_usd, steps, calls, estimated_calls)
            SELECT run_id, COALESCE(model, ''), SUM(input_tokens), SUM(output_tokens),
                   SUM(cache_write_tokens), SUM(cache_write_1h_tokens), SUM(cache_read_tokens),
                   SUM(cost_usd), SUM(steps), COUNT(*), SUM(estimated)
            FROM events GROUP BY run_id, COALESCE(model, '')""",
        "CREATE INDEX events_key ON events(key)",
        """CREATE TABLE import_cursors (
            path TEXT PRIMARY KEY,
            source TEXT NOT NULL,
            inode {BIGINT} NOT NULL,
            size {BIGINT} NOT NULL,
            mtime {REAL} NOT NULL,
            read_to {BIGINT} NOT NULL,
            prefix_hash TEXT NOT NULL,
            state TEXT NOT NULL DEFAULT '{{}}',
            updated_at {REAL} NOT NULL
        )""",
    ]),
    # 5: outcomes. The repository (credentials stripped), branch and the commits before and after
    # a run, so spend can be read per branch, per commit and per merged branch.
    (5, [
        "ALTER TABLE runs ADD COLUMN repo TEXT",
        "ALTER TABLE runs ADD COLUMN branch TEXT",
        "ALTER TABLE runs ADD COLUMN commit_before TEXT",
        "ALTER TABLE runs ADD COLUMN commit_after TEXT",
        "CREATE INDEX runs_branch ON runs(repo, branch)",
    ]),
    # 6: the ledger's own identity (a GUARD_HOME marker outside the ledger names it, so a replaced or
    # emptied ledger is noticed), and how a run's process tree was held (cgroup, subreaper, pgroup).
    (6, [
        """CREATE TABLE ledger_meta (
            key TEXT PRIMARY KEY,
            value TEXT NOT NULL
        )""",
        "ALTER TABLE runs ADD COLUMN held_by TEXT",
    ]),
    # 8: the run plan: where each of a run's effective limits came from (flag, config, policy)
    (8, [
        "ALTER TABLE runs ADD COLUMN limit_sources TEXT NOT NULL DEFAULT '{{}}'",
    ]),
]

DIALECTS = {
    "sqlite": {"REAL": "REAL", "BIGINT": "INTEGER", "SERIAL": "INTEGER PRIMARY KEY AUTOINCREMENT"},
    "postgresql": {"REAL": "DOUBLE PRECISION", "BIGINT": "BIGINT", "SERIAL": "BIGSERIAL PRIMARY KEY"},
}


def statements(dialect: str, version: int) -> list[str]:
    types = DIALECTS[dialect]
    for v, stmts in MIGRATIONS:
        if v == version:
            return [s.format(**types) for s in stmts]
    raise KeyError(version)


VERSIONS = sorted(v for v, _ in MIGRATIONS)
LATEST = VERSIONS[-1]
