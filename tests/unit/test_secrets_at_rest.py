"""Nothing secret at rest: command lines are scrubbed on write and by migration 3."""
import json
from pathlib import Path

from guard.ledger import open_ledger
from guard.ledger.records import RunRecord
from guard.ledger.scrub import REDACTED, scrub_argv

SECRET_ARGV = ["-p", "fix it, password=hunter2", "--api-key", "sk-ant-123", "--model", "claude-opus-4-6",
               "--max-turns=12", "--token=abc", "--system-prompt", "be evil", "--verbose", "--", "rm -rf /"]


def test_flag_names_and_harmless_values_are_kept_and_nothing_else():
    out = scrub_argv(SECRET_ARGV)
    assert out == ["-p", REDACTED, "--api-key", REDACTED, "--model", "claude-opus-4-6", "--max-turns=12",
                   f"--token={REDACTED}", "--system-prompt", REDACTED, "--verbose", "--", REDACTED]
    assert "hunter2" not in json.dumps(out) and "sk-ant" not in json.dumps(out)


def test_a_harmless_flag_with_a_strange_value_is_still_scrubbed():
    assert scrub_argv(["--model", "x; password=1"]) == ["--model", REDACTED]


def test_run_keeps_the_command_name_only():
    assert scrub_argv(["/home/u/bin/agent.py", "secret"], keep_command=True) == ["agent.py", REDACTED]


def test_scrubbing_is_idempotent():
    once = scrub_argv(SECRET_ARGV)
    assert scrub_argv(once) == once


def _old_row(ledger, run_id: str, tool: str, argv: list[str]) -> None:
    ledger._execute("INSERT INTO runs (id, tool, task, developer, status, started_at, argv) "
                    "VALUES (?, ?, 't', 'd', 'completed', 1.0, ?)", (run_id, tool, json.dumps(argv)))


def _check_migration(url: str, home: Path) -> None:
    ledger = open_ledger(url, home)
    try:
        ledger.create_run(RunRecord(id="new", tool="claude", task="t", developer="d", argv=SECRET_ARGV))
        assert "hunter2" not in json.dumps(ledger.get_run("new").argv)
        # rows an older guard wrote, before migration 3 existed
        _old_row(ledger, "old1", "claude", SECRET_ARGV)
        _old_row(ledger, "old2", "run", ["python3", "agent.py", "--key", "sk-live-9"])
        ledger._execute("DELETE FROM schema_version WHERE version = 3")
    finally:
        ledger.close()
    ledger = open_ledger(url, home)
    try:
        raw = {r[0]: r[1] for r in ledger._execute("SELECT id, argv FROM runs")}
        assert "hunter2" not in raw["old1"] and "sk-ant" not in raw["old1"]
        assert json.loads(raw["old2"]) == ["python3", REDACTED, "--key", REDACTED]
        assert "claude-opus-4-6" in raw["old1"]
    finally:
        ledger.close()


def test_migration_3_scrubs_existing_sqlite_rows(tmp_path):
    _check_migration(f"sqlite:///{tmp_path / 'l.db'}", tmp_path)


def test_migration_3_scrubs_existing_postgres_rows(tmp_path):
    from tests.pgtest import pg_schema

    with pg_schema() as url:
        _check_migration(url, tmp_path)
