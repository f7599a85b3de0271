"""Config files written during a run are named at the next start."""
from __future__ import annotations

import stat
from pathlib import Path

from guard.config_drift import config_paths, fingerprint, record_run_end, start_note, written_during


def test_a_guard_yaml_written_during_a_run_is_named_until_a_person_touches_it(tmp_path: Path) -> None:
    home, repo = tmp_path / "home", tmp_path / "repo"
    repo.mkdir()
    env = {"XDG_CONFIG_HOME": str(tmp_path / "cfg")}
    paths = config_paths(env, repo)
    start = fingerprint(paths)
    assert start_note(home, start) is None
    (repo / ".guard.yaml").write_text("max_usd: 1000\n")           # the agent writes it
    end = fingerprint(paths)
    assert record_run_end(home, "run-a", start, end) == [str((repo / ".guard.yaml").absolute())]
    assert stat.S_IMODE((home / "config.seen").stat().st_mode) == 0o600
    note = start_note(home, fingerprint(config_paths(env, repo)))
    assert note is not None and ".guard.yaml (written during run run-a)" in note
    # a run that leaves it alone does not clear it; a person who edits it does
    again = fingerprint(config_paths(env, repo))
    record_run_end(home, "run-b", again, again)
    assert start_note(home, again) is not None
    (repo / ".guard.yaml").write_text("max_usd: 5\n")
    assert start_note(home, fingerprint(config_paths(env, repo))) is None


def test_unchanged_files_are_not_named() -> None:
    assert written_during({"a": "1", "b": "missing"}, {"a": "1"}) == []
    assert written_during({"a": "1"}, {"a": "2", "c": "3"}) == ["a", "c"]
