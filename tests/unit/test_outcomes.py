"""Git capture and cost per branch / commit / merged branch, over real git repositories."""
from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from guard.ledger.records import RunRecord
from guard.ledger.sqlite import SqliteLedger
from guard.outcomes import capture_end, capture_start, strip_credentials
from guard.usage import UsageEvent
from tests.helpers import guard_env, run_guard


def git(cwd: Path, *args: str) -> str:
    env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@example.com", "HOME": str(cwd), "PATH": "/usr/bin:/bin"}
    return subprocess.run(["git", "-C", str(cwd), *args], check=True, capture_output=True, text=True,
                          env=env).stdout.strip()


def commit(repo: Path, name: str, text: str) -> str:
    (repo / name).write_text(text)
    git(repo, "add", name)
    git(repo, "commit", "-qm", f"{name}: {text[:20]}")
    return git(repo, "rev-parse", "HEAD")


@pytest.fixture(autouse=True)
def ceiling(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A stray repository above the test's directory (another job's /tmp/.git) is not ours."""
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    r = tmp_path / "repo"
    r.mkdir()
    git(r, "init", "-q", "-b", "main")
    commit(r, "README", "hello\n")
    return r


def test_capture_reads_head_branch_and_strips_credentials(repo: Path) -> None:
    git(repo, "remote", "add", "origin", "https://alice:ghp_secret@github.com/acme/app.git?x=1")
    start = capture_start(repo / ".")
    assert start == {"repo": "https://github.com/acme/app.git", "branch": "main",
                     "commit_before": git(repo, "rev-parse", "HEAD")}
    assert "ghp_secret" not in json.dumps(start)
    git(repo, "checkout", "-qb", "feature")
    after = commit(repo, "a.txt", "work\n")
    assert capture_end(repo) == {"commit_after": after, "branch": "feature"}


def test_capture_follows_packed_refs_worktrees_and_detached_head(repo: Path, tmp_path: Path) -> None:
    head = git(repo, "rev-parse", "HEAD")
    git(repo, "pack-refs", "--all")
    assert not (repo / ".git" / "refs" / "heads" / "main").exists()
    assert capture_start(repo)["commit_before"] == head
    linked = tmp_path / "linked"
    git(repo, "worktree", "add", "-q", "-b", "side", str(linked))
    sub = linked / "deep" / "dir"
    sub.mkdir(parents=True)
    side = commit(linked, "s.txt", "side\n")
    assert capture_start(sub) == {"repo": str(repo), "branch": "side", "commit_before": side}
    git(repo, "checkout", "-q", "--detach", head)
    assert capture_start(repo) == {"repo": str(repo), "branch": None, "commit_before": head}


def test_capture_outside_a_repository(tmp_path: Path) -> None:
    assert capture_start(tmp_path) == {"repo": None, "branch": None, "commit_before": None}
    assert capture_end(tmp_path) == {"commit_after": None}


@pytest.mark.parametrize("url, clean", [
    ("https://x-access-token:abc@github.com/o/r.git", "https://github.com/o/r.git"),
    ("ssh://git:pw@host:2222/o/r", "ssh://host:2222/o/r"),
    ("git@github.com:o/r.git", "git@github.com:o/r.git"),
])
def test_strip_credentials(url: str, clean: str) -> None:
    assert strip_credentials(url) == clean


def _record(ledger: SqliteLedger, run_id: str, branch: str, before: str, after: str, usd: float,
            repo: str) -> None:
    now = time.time()
    ledger.create_run(RunRecord(id=run_id, tool="claude", task=f"task-{branch}", developer="dev@example.com",
                                status="completed", started_at=now - 60, ended_at=now, repo=repo,
                                branch=branch, commit_before=before, commit_after=after))
    ledger.upsert_event(run_id, UsageEvent(key=f"{run_id}-1", source="test", model="claude-sonnet-4-5",
                                           input_tokens=1000, output_tokens=100, ts=now - 30), usd, True)


def test_report_by_merge_branch_and_commit(repo: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    ledger = SqliteLedger(home / "ledger.db")
    here = str(repo)
    base = git(repo, "rev-parse", "HEAD")
    branches = {}
    for name in ("merged", "squashed", "rebased", "open"):
        git(repo, "checkout", "-q", "-b", name, base)
        c1 = commit(repo, f"{name}.txt", f"{name} one\n")
        c2 = commit(repo, f"{name}.txt", f"{name} one\n{name} two\n")
        branches[name] = (c1, c2)
        _record(ledger, f"run-{name}-1", name, base, c1, 1.0, here)
        _record(ledger, f"run-{name}-2", name, c1, c2, 2.0, here)
    _record(ledger, "run-elsewhere", "merged", base, base, 4.0, "https://example.com/other.git")
    git(repo, "checkout", "-q", "main")
    commit(repo, "main.txt", "main moves on\n")
    git(repo, "merge", "-q", "--no-ff", "-m", "merge", "merged")
    git(repo, "merge", "-q", "--squash", "squashed")
    git(repo, "commit", "-qm", "squash")
    git(repo, "cherry-pick", *branches["rebased"])
    ledger.close()

    env = guard_env(home, GIT_CEILING_DIRECTORIES=str(tmp_path.parent))
    out = run_guard(home, "report", "--by", "merge", "--json", cwd=repo, env=env)
    assert out.returncode == 0, out.stderr
    groups = {g["key"]: g for g in json.loads(out.stdout)["groups"]}
    assert {k: (g["merged"], g["merged_by"]) for k, g in groups.items()} == {
        "merged": (True, "merge"), "squashed": (True, "squash"), "rebased": (True, "rebase"),
        "open": (False, None)}
    assert all(g["spend_usd"] == 3.0 and g["runs"] == 2 and g["commits"] == 2 for g in groups.values())

    out = run_guard(home, "report", "--by", "branch", "--json", cwd=repo, env=env)
    by_branch = {g["key"]: g["spend_usd"] for g in json.loads(out.stdout)["groups"]}
    assert by_branch == {"merged": 7.0, "squashed": 3.0, "rebased": 3.0, "open": 3.0}

    out = run_guard(home, "report", "--by", "commit", "--json", cwd=repo, env=env)
    by_commit = {g["key"]: g["spend_usd"] for g in json.loads(out.stdout)["groups"]}
    assert by_commit[branches["open"][1][:12]] == 2.0
    assert by_commit[base[:12]] == 4.0

    out = run_guard(home, "report", "--by", "merge", cwd=tmp_path, env=env)
    assert out.returncode == 2 and "not in a git work tree" in out.stderr


def test_capture_reads_config_git_writes_by_hand(repo: Path) -> None:
    with (repo / ".git" / "config").open("a") as f:
        f.write('[core]\n\tsparseCheckout\n[remote "upstream"]\n\turl = https://t@example.com/up.git\n'
                '[remote "origin"]\n\turl = "https://bob:pw@example.com/mine.git"\n')
    assert capture_start(repo)["repo"] == "https://example.com/mine.git"


def test_capture_asks_git_when_refs_are_a_reftable(tmp_path: Path) -> None:
    r = tmp_path / "rt"
    r.mkdir()
    try:
        git(r, "init", "-q", "-b", "main", "--ref-format=reftable")
    except subprocess.CalledProcessError:
        pytest.skip("this git has no reftable")
    head = commit(r, "f", "x\n")
    assert capture_start(r) == {"repo": str(r), "branch": "main", "commit_before": head}
