"""Plain records the ledger stores and returns; no I/O here."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from guard.ledger.scrub import scrub_argv
from guard.usage import Totals


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds")


RUN_STATUSES = ("running", "paused", "completed", "halted", "crashed", "refused")


@dataclass
class Halt:
    ceiling: str          # usd|tokens|steps|time|developer_usd|team_usd|line_usd|stuck_loop|unknown_price|...
    limit: float
    used: float
    action: str           # pause|stop|kill|refuse
    message: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"ceiling": self.ceiling, "limit": self.limit, "used": self.used,
                "action": self.action, "message": self.message}


@dataclass
class RunRecord:
    id: str
    tool: str
    task: str
    developer: str
    status: str = "running"
    team: str | None = None
    machine: str | None = None
    line: str | None = None
    exit_code: int | None = None
    started_at: float = 0.0
    ended_at: float | None = None
    cwd: str = ""
    argv: list[str] = field(default_factory=list)
    limits: dict[str, float] = field(default_factory=dict)
    limit_sources: dict[str, str] = field(default_factory=dict)   # where each limit came from
    accuracy: str = "exact"
    guard_pid: int | None = None
    agent_pid: int | None = None
    skipped_records: int = 0
    halt: Halt | None = None
    usage: Totals = field(default_factory=Totals)
    repo: str | None = None
    held_by: str | None = None      # how the process tree was held (subreaper+sentinel, ...)
    branch: str | None = None
    commit_before: str | None = None
    commit_after: str | None = None

    def __post_init__(self) -> None:
        # the ledger never holds prompts or secrets from the command line, whoever writes it
        self.argv = scrub_argv(self.argv, keep_command=self.tool == "run")

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "tool": self.tool,
            "task": self.task,
            "developer": self.developer,
            "team": self.team,
            "machine": self.machine,
            "line": self.line,
            "status": self.status,
            "exit_code": self.exit_code,
            "started_at": iso(self.started_at),
            "ended_at": iso(self.ended_at) if self.ended_at is not None else None,
            "cwd": self.cwd,
            "argv": self.argv,
            "limits": self.limits,
            "limit_sources": self.limit_sources,
            "accuracy": self.accuracy,
            "skipped_records": self.skipped_records,
            "usage": self.usage.as_dict(),
            "halt": self.halt.as_dict() if self.halt else None,
            "held_by": self.held_by,
            "repo": self.repo,
            "branch": self.branch,
            "commit_before": self.commit_before,
            "commit_after": self.commit_after,
        }


@dataclass
class Approval:
    run_id: str | None
    task: str
    ceiling: str
    amount: float | None   # None: the ceiling was lifted for the rest of the run ("continue")
    approved_by: str
    reason: str = ""
    ts: float = 0.0


@dataclass
class Control:
    id: int
    run_id: str
    action: str            # stop | resume | raise
    payload: dict[str, Any]
