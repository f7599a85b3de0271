"""Which runs' commits reached the default branch, from local git history only (no fetch).

A commit counts as merged when the default branch reaches it (merge commit, fast-forward), or when
a commit on the default branch has the same patch id: one commit per commit for a rebase merge, one
commit for the whole branch's diff for a squash merge.
"""
from __future__ import annotations

import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from guard.errors import ConfigError


class GitError(ConfigError):
    """git could not answer about the repository the report reads."""


@dataclass(frozen=True)
class RunCommits:
    run_id: str
    branch: str
    before: str
    after: str


@dataclass
class BranchMerge:
    branch: str
    commits: int
    merged: bool
    how: str | None          # merge | squash | rebase, None when not merged


class Git:
    """The one seam to the git binary: every question is one `git` call in the work tree."""

    def __init__(self, worktree: Path) -> None:
        self.worktree = worktree

    def run(self, *args: str, stdin: str | None = None, check: bool = True) -> str:
        try:
            out = subprocess.run(["git", "-C", str(self.worktree), *args], input=stdin, capture_output=True,
                                 text=True, timeout=120)
        except (OSError, subprocess.TimeoutExpired) as e:
            raise GitError(f"git {args[0]}: {e}") from None
        if check and out.returncode != 0:
            raise GitError(f"git {' '.join(args[:2])} in {self.worktree}: {out.stderr.strip().splitlines()[-1:]}")
        return out.stdout if out.returncode == 0 else ""

    def ok(self, *args: str) -> bool:
        return subprocess.run(["git", "-C", str(self.worktree), *args], capture_output=True,
                              timeout=120).returncode == 0

    def has_commit(self, sha: str) -> bool:
        return self.ok("cat-file", "-e", f"{sha}^{{commit}}")

    def patch_ids(self, *rev_args: str) -> dict[str, str]:
        """commit -> patch id for the non-merge commits `git log` lists for rev_args."""
        log = self.run("log", "--no-merges", "-p", "--format=commit %H", *rev_args)
        return _parse_patch_ids(self.run("patch-id", "--stable", stdin=log)) if log else {}

    def diff_patch_id(self, a: str, b: str) -> str | None:
        diff = self.run("diff", a, b)
        if not diff:
            return None
        out = self.run("patch-id", "--stable", stdin=diff).split()
        return out[0] if out else None


def _parse_patch_ids(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2:
            out[parts[1]] = parts[0]
    return out


def default_branch(git: Git) -> str:
    """origin's HEAD if the clone knows it, else init.defaultBranch, main or master, whichever exists."""
    ref = git.run("symbolic-ref", "-q", "refs/remotes/origin/HEAD", check=False).strip()
    if ref:
        return ref.removeprefix("refs/")
    candidates = [git.run("config", "init.defaultBranch", check=False).strip(), "main", "master"]
    for name in filter(None, candidates):
        if git.ok("rev-parse", "--verify", "-q", f"refs/heads/{name}"):
            return name
    raise GitError(f"{git.worktree}: no default branch (origin/HEAD, main or master)")


def branch_merges(git: Git, runs: Iterable[RunCommits], default: str) -> dict[str, BranchMerge]:
    """For each branch with commits made during runs: merged into `default`, and how."""
    by_branch: dict[str, list[RunCommits]] = {}
    for r in runs:
        if r.before != r.after and git.has_commit(r.after) and git.has_commit(r.before):
            by_branch.setdefault(r.branch, []).append(r)
    if not by_branch:
        return {}
    default_sha = git.run("rev-parse", default).strip()
    out: dict[str, BranchMerge] = {}
    for branch, rs in by_branch.items():
        out[branch] = _branch_merge(git, branch, rs, default, default_sha)
    return out


def _branch_merge(git: Git, branch: str, runs: Sequence[RunCommits], default: str,
                  default_sha: str) -> BranchMerge:
    commits: dict[str, str] = {}
    for r in runs:
        commits.update(git.patch_ids(r.after, f"^{r.before}"))
    if not commits:
        return BranchMerge(branch, 0, False, None)
    if all(git.ok("merge-base", "--is-ancestor", c, default_sha) for c in commits):
        return BranchMerge(branch, len(commits), True, "merge")
    # what landed on the default branch since the branch forked
    tip = max(runs, key=lambda r: _depth(git, r.after)).after
    base = git.run("merge-base", tip, default_sha, check=False).strip()
    landed = git.patch_ids(default_sha, f"^{base}") if base else git.patch_ids(default_sha)
    landed_ids = set(landed.values())
    if all(pid in landed_ids for pid in commits.values()):
        return BranchMerge(branch, len(commits), True, "rebase")
    if base:
        whole = git.diff_patch_id(base, tip)
        if whole and whole in landed_ids:
            return BranchMerge(branch, len(commits), True, "squash")
    return BranchMerge(branch, len(commits), False, None)


def _depth(git: Git, sha: str) -> int:
    return int(git.run("rev-list", "--count", sha).strip() or 0)
