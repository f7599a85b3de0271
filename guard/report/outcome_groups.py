"""`guard report --by branch|commit|merge`: spend tied to what the runs produced.

The totals and top runs come from `build_report` itself, so they are the same numbers as every
other grouping; only the groups differ. A run is grouped under the branch it ended on and the
commit HEAD pointed at when it ended (the one before it when it made none).
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from guard.errors import ConfigError
from guard.ledger.reservations import _routed
from guard.ledger.sql import SqlLedger
from guard.outcomes import capture_start, find_git
from guard.report.merges import Git, RunCommits, branch_merges, default_branch
from guard.report.rollup import Group, Report, RunRow, build_report, fetch_runs

OUTCOME_GROUPS = ("branch", "commit", "merge")


def fetch_outcomes(ledger: SqlLedger, since: float, until: float) -> dict[str, tuple[Any, ...]]:
    """run id -> (repo, branch, commit_before, commit_after) for runs started in [since, until)."""
    def q(led: SqlLedger) -> list[tuple[Any, ...]]:
        return led._execute("SELECT id, repo, branch, commit_before, commit_after FROM runs "
                            "WHERE started_at >= ? AND started_at < ?", (since, until))

    return {r[0]: tuple(r[1:]) for r in _routed(ledger, q, spool_ok=False)}


def build_outcome_report(ledger: SqlLedger, since: float, until: float, *, group_by: str,
                         tz: str | None = None, label: str = "", top: int = 10,
                         developer: str | None = None, team: str | None = None, tool: str | None = None,
                         repo_dir: Path | None = None) -> Report:
    if group_by not in OUTCOME_GROUPS:
        raise ConfigError(f"--by {group_by}: not one of {', '.join(OUTCOME_GROUPS)}")
    base = build_report(ledger, since, until, group_by="developer", tz=tz, label=label, top=top,
                        developer=developer, team=team, tool=tool)
    outcomes = fetch_outcomes(ledger, since, until)
    runs = [r for r in fetch_runs(ledger, since, until)
            if (developer is None or r.developer == developer) and (team is None or r.team == team)
            and (tool is None or r.tool == tool)]
    if group_by == "merge":
        groups = _merge_groups(runs, outcomes, repo_dir or Path.cwd())
    else:
        groups = _plain_groups(runs, outcomes, group_by)
    return replace(base, group_by=group_by, groups=groups)


def _add(g: Group, r: RunRow) -> None:
    g.spend_usd += r.cost
    g.input_tokens += r.input_tokens
    g.output_tokens += r.output_tokens
    g.cache_write_tokens += r.cache_write_tokens
    g.cache_read_tokens += r.cache_read_tokens
    if r.id not in g.run_costs:
        g.halted += r.budget_halted
    g.run_costs[r.id] = g.run_costs.get(r.id, 0.0) + r.cost


def _plain_groups(runs: list[RunRow], outcomes: dict[str, tuple[Any, ...]], by: str) -> list[dict[str, Any]]:
    groups: dict[str, Group] = {}
    for r in runs:
        repo, branch, before, after = outcomes.get(r.id, (None, None, None, None))
        key = branch if by == "branch" else (after or before)
        key = key[:12] if by == "commit" and key else key
        key = key or "(none)"
        _add(groups.setdefault(key, Group(key)), r)
    out = [g.as_dict() for g in groups.values()]
    out.sort(key=lambda d: (-d["spend_usd"], d["key"]))
    return out


def _merge_groups(runs: list[RunRow], outcomes: dict[str, tuple[Any, ...]], repo_dir: Path) -> list[dict[str, Any]]:
    dirs = find_git(repo_dir)
    if dirs is None:
        raise ConfigError(f"--by merge: {repo_dir} is not in a git work tree (run it in the repository, "
                          "or give --repo PATH)")
    here = capture_start(repo_dir)["repo"]
    git = Git(dirs.worktree)
    mine = [r for r in runs if outcomes.get(r.id, (None,))[0] == here and outcomes[r.id][1]]
    commits = [RunCommits(r.id, outcomes[r.id][1], outcomes[r.id][2], outcomes[r.id][3]) for r in mine
               if outcomes[r.id][2] and outcomes[r.id][3]]
    default = default_branch(git)
    merges = branch_merges(git, commits, default)
    groups: dict[str, Group] = {}
    for r in mine:
        branch = outcomes[r.id][1]
        _add(groups.setdefault(branch, Group(branch)), r)
    out = []
    for branch, g in groups.items():
        d = g.as_dict()
        m = merges.get(branch)
        d.update(into=default, commits=m.commits if m else 0, merged=bool(m and m.merged),
                 merged_by=m.how if m else None)
        out.append(d)
    out.sort(key=lambda d: (not d["merged"], -d["spend_usd"], d["key"]))
    return out
