"""The history commands as a user runs them: `guard import` (default folders, --dry-run, --watch),
`guard report`, `guard export`, `guard prune`, and their errors."""
from __future__ import annotations

import json
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from tests.helpers import guard_cmd, guard_env, run_guard, wait_until
from tests.transcripts import write_tree

pytestmark = pytest.mark.e2e

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


def events(home: Path, env: dict[str, str]) -> list[dict]:
    out = run_guard(home, "export", "--jsonl", env=env)
    assert out.returncode == 0, out.stderr
    return [json.loads(line) for line in out.stdout.splitlines()]


def test_import_from_the_default_folders_then_report_export_prune(tmp_path: Path) -> None:
    user = tmp_path / "user"
    truth = write_tree(user / ".claude", 150_000, seed=31)
    config_dir = tmp_path / "other-config"
    shutil.copytree(FIXTURES / "claude_code" / "subagent-session", config_dir / "projects" / "-home-dev-project")
    env = guard_env(tmp_path, HOME=str(user), CLAUDE_CONFIG_DIR=str(config_dir))

    dry = run_guard(tmp_path, "import", "claude", "--dry-run", env=env)
    assert dry.returncode == 0, dry.stderr
    assert "would add $" in dry.stdout
    assert not (tmp_path / "ledger.db").exists() or events(tmp_path, env) == []

    out = run_guard(tmp_path, "import", "claude", "--json", env=env)
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout)["sources"]["claude"]
    assert summary["new"] >= len(truth) + 1        # the synthetic tree and the config dir's session
    evs = events(tmp_path, env)
    assert len(evs) == summary["new"] and all(e["imported"] for e in evs)

    again = run_guard(tmp_path, "import", "claude", env=env)
    assert again.returncode == 0 and "0 new" in again.stdout and "0 of" in again.stdout

    rep = run_guard(tmp_path, "report", "--since", "2020-01-01", "--by", "model", "--json", env=env)
    assert rep.returncode == 0, rep.stderr
    data = json.loads(rep.stdout)
    assert data["totals"]["spend_usd"] == pytest.approx(json.loads(out.stdout)["usd"], abs=1e-5)
    assert sum(g["cache_read_tokens"] for g in data["groups"]) == sum(e["cache_read_tokens"] for e in evs)

    first_day = min(e["ts"] for e in evs)[:10]
    last_day = max(e["ts"] for e in evs)[:10]
    pruned = run_guard(tmp_path, "prune", "--before", "2099-01-01", env=env)
    assert pruned.returncode == 0 and f"dropped {len(evs)} events" in pruned.stdout, (first_day, last_day)
    assert events(tmp_path, env) == []
    rep2 = run_guard(tmp_path, "report", "--since", "2020-01-01", "--by", "model", "--json", env=env)
    assert json.loads(rep2.stdout)["groups"] == data["groups"]     # the rollups stay


def test_bad_input_is_one_line_and_exit_2(tmp_path: Path) -> None:
    env = guard_env(tmp_path)
    for args, words in ((["import", "claude", str(tmp_path / "nope")], "does not exist"),
                        (["import", "bogus"], "bogus"),
                        (["prune", "--before", "March"], "not a date"),
                        (["export", "--csv", "--jsonl"], "not both"),
                        (["budget", "suggest", "--quantile", "1.5"], "quantile")):
        out = run_guard(tmp_path, *args, env=env)
        assert out.returncode == 2, (args, out.stdout, out.stderr)
        assert words in out.stderr + out.stdout and "Traceback" not in out.stderr


def test_watch_keeps_importing_until_interrupted(tmp_path: Path) -> None:
    root = tmp_path / "transcripts"
    root.mkdir()
    env = guard_env(tmp_path)
    proc = subprocess.Popen(guard_cmd("import", "claude", str(root), "--watch", "--interval", "0.2"),
                            env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_until(lambda: (tmp_path / "ledger.db").exists(), timeout=60, message="ledger created")
        truth = write_tree(root, 60_000, seed=41)
        wait_until(lambda: len(events(tmp_path, env)) == len(truth), timeout=60, message="watched import")
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "Traceback" not in err and "added $" in out
