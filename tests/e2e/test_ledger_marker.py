"""A ledger that lost its history is noticed: emptied, replaced, or rows deleted by the agent."""
from __future__ import annotations

import shutil
import sqlite3
import stat
import sys
from pathlib import Path

import pytest

from tests.helpers import SPENDER, guard_env, run_guard

pytestmark = pytest.mark.e2e

# An agent that deletes the day's history, then spends from the ledger it can reach.
ERASER = (
    "import os, sqlite3, subprocess, sys\n"
    "db = sqlite3.connect(os.path.join(os.environ['GUARD_HOME'], 'ledger.db'))\n"
    "db.execute('DELETE FROM events'); db.execute('DELETE FROM runs WHERE status <> \\'running\\''); db.commit()\n"
    "subprocess.run([sys.executable, sys.argv[1], '--lines', '2', '--cost', '0.4', '--ids'], check=True)\n"
)


def spend(home: Path, env: dict[str, str], cost: str = "0.4"):
    return run_guard(home, "run", "--", sys.executable, SPENDER, "--lines", "2", "--cost", cost, "--ids",
                     env=env)


def test_fresh_home_starts_and_keeps_a_private_marker(home: Path) -> None:
    out = spend(home, guard_env(home))
    assert out.returncode == 0, out.stderr
    marker = home / "ledger.marker"
    assert stat.S_IMODE(marker.stat().st_mode) == 0o600
    assert '"runs": 1' in marker.read_text()


@pytest.mark.parametrize("fault", ["truncated", "replaced", "deleted"])
def test_a_ledger_that_lost_its_history_is_refused_until_accepted(home: Path, tmp_path: Path,
                                                                  fault: str) -> None:
    env = guard_env(home)
    assert spend(home, env).returncode == 0
    db = home / "ledger.db"
    if fault == "truncated":
        for extra in ("ledger.db-wal", "ledger.db-shm"):
            (home / extra).unlink(missing_ok=True)
        db.write_bytes(b"")
    elif fault == "replaced":
        other = tmp_path / "other-home"
        other.mkdir()
        assert spend(other, guard_env(other)).returncode == 0
        for extra in ("ledger.db-wal", "ledger.db-shm"):
            (home / extra).unlink(missing_ok=True)
        shutil.copy(other / "ledger.db", db)
    else:
        with sqlite3.connect(db) as c:
            c.execute("DELETE FROM events")
    refused = spend(home, env)
    assert refused.returncode == 125
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1 and "guard ledger accept-reset" in lines[0], refused.stderr
    assert "SPENDER" not in refused.stdout and "agent call" not in refused.stdout   # never started
    accepted = run_guard(home, "ledger", "accept-reset", env=env)
    assert accepted.returncode == 0, accepted.stderr
    assert spend(home, env).returncode == 0


def test_rows_deleted_from_inside_a_run_are_noticed_at_the_next_start(home: Path) -> None:
    cfg = home / "guard.yaml"
    cfg.write_text("budgets:\n  developer: {day: 1}\n")
    env = guard_env(home, GUARD_CONFIG=str(cfg))
    assert spend(home, env, cost="0.4").returncode == 0            # $0.80 of the $1 day
    eraser = run_guard(home, "run", "--", sys.executable, "-c", ERASER, SPENDER, env=env)
    # history erased, then $0.80 more (the run itself may still be halted: it read the day at start)
    assert eraser.returncode in (0, 124), eraser.stderr
    with sqlite3.connect(home / "ledger.db") as c:
        assert c.execute("SELECT COUNT(*) FROM runs").fetchone()[0] == 1   # only the eraser's own
    third = spend(home, env, cost="0.4")
    assert third.returncode == 125, third.stderr
    assert "lost rows" in third.stderr and "agent call" not in third.stdout
