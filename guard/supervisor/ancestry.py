"""Is this process inside a guarded run's tree? Known from process ancestry, never from a variable
the agent can drop: the /proc parent chain is walked up to a guard supervising a run (by the pids the
ledger recorded for running runs, or by its command line). guard is a subreaper, so a setsid double
fork stays below guard, and the chain still reaches it.

Used to refuse what would loosen a run's limits from inside it (`guard resume`, `guard budget grant`).
"""
from __future__ import annotations

import os
import socket
from collections.abc import Iterable
from dataclasses import dataclass

from guard.errors import Refused

TOOL_WORDS = frozenset({"run", "claude", "aider", "codex"})


class InsideGuardedRun(Refused):
    """A request to loosen limits came from a process of a guarded run's own tree."""

    def __init__(self, what: str, guard_pid: int, run_id: str | None) -> None:
        run = f"run {run_id}" if run_id else "a guarded run"
        super().__init__(f"{what} refused: this process is inside {run} (guard pid {guard_pid}); "
                         "limits are loosened from outside the run")
        self.guard_pid = guard_pid
        self.run_id = run_id


@dataclass(frozen=True)
class Proc:
    pid: int
    ppid: int
    start: int          # clock ticks after boot (/proc/PID/stat field 22)
    argv: tuple[str, ...]


def read_proc(pid: int) -> Proc | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            argv = tuple(a.decode(errors="replace") for a in f.read().split(b"\0") if a)
        return Proc(pid, int(fields[1]), int(fields[19]), argv)
    except (OSError, IndexError, ValueError):
        return None


def ancestors(pid: int | None = None) -> list[Proc]:
    """The parent chain of `pid` (itself excluded), nearest first, up to init."""
    chain: list[Proc] = []
    me = read_proc(os.getpid() if pid is None else pid)
    seen: set[int] = set()
    while me is not None and me.ppid > 0 and me.ppid not in seen:
        seen.add(me.ppid)
        parent = read_proc(me.ppid)
        if parent is None:
            break
        chain.append(parent)
        me = parent
    return chain


def is_supervising_guard(argv: tuple[str, ...]) -> bool:
    """`python -m guard [OPTIONS] run|claude|aider|codex ...` or the `guard` script doing the same
    (the sentinel, `python -m guard.supervisor.sentinel`, is guard's helper, not an ancestor)."""
    for i, word in enumerate(argv[:4]):
        if (word == "guard" and i > 0 and argv[i - 1] == "-m") or os.path.basename(word) == "guard":
            return any(a in TOOL_WORDS for a in argv[i + 1:])
    return False


def guarded_ancestor(chain: Iterable[Proc], run_pids: dict[int, str]) -> tuple[int, str | None] | None:
    """Pure: the first ancestor that is a guard of a running run (`run_pids`: guard or agent pid ->
    run id), or that supervises by its command line; with the run id when the ledger knows it."""
    for p in chain:
        if p.pid in run_pids:
            return p.pid, run_pids[p.pid]
        if is_supervising_guard(p.argv):
            return p.pid, None
    return None


def refuse_inside_run(what: str, ledger: object | None = None, pid: int | None = None) -> None:
    """Raise InsideGuardedRun when the calling process belongs to a guarded run's tree."""
    run_pids: dict[int, str] = {}
    if ledger is not None:
        host = socket.gethostname()
        try:
            running = ledger.list_runs(status=("running", "paused"))  # type: ignore[attr-defined]
        except Exception:   # an unreadable ledger must not open the door: the argv check still holds
            running = []
        for run in running:
            if run.machine and run.machine != host:
                continue
            for p in (run.guard_pid, run.agent_pid):
                if p:
                    run_pids[int(p)] = run.id
    found = guarded_ancestor(ancestors(pid), run_pids)
    if found is not None:
        raise InsideGuardedRun(what, *found)
