"""A tiny watcher process: if guard itself dies (even by SIGKILL), it kills the agent's tree.

guard starts it in a session of its own with a pipe on stdin. EOF on the pipe means guard is
gone: the sentinel then kills the agent's process group, every process that carries the run's
GUARD_RUN_ID in its environment, and every process it last saw below guard. guard is a subreaper,
so a setsid double fork that dropped GUARD_RUN_ID is still guard's descendant while guard lives;
the sentinel remembers those (by pid and start time, so a reused pid is never hit) a few times a
second, because once guard is gone they belong to init and nothing else tells them apart.
"done" on the pipe means guard finished normally.
"""
from __future__ import annotations

import os
import select
import signal
import sys
from collections.abc import Iterable

from guard.supervisor.tree import ProcInfo, scan_proc

WATCH_INTERVAL = 0.2   # seconds between looks at guard's descendants


def marked_pids(marker: bytes) -> set[int]:
    """Processes whose environment holds `marker` (GUARD_RUN_ID=<id>)."""
    return {p.pid for p in scan_proc(marker) if p.marked and p.pid != os.getpid()}


def start_time(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return int(f.read().rsplit(b")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def descendants(procs: Iterable[ProcInfo], roots: set[int]) -> set[int]:
    """Pids below any of `roots` (roots excluded)."""
    children: dict[int, list[int]] = {}
    for p in procs:
        children.setdefault(p.ppid, []).append(p.pid)
    found: set[int] = set()
    stack = list(roots)
    while stack:
        for child in children.get(stack.pop(), []):
            if child not in found and child not in roots:
                found.add(child)
                stack.append(child)
    return found


class Watch:
    """Who was below guard at the last look: pid -> start time."""

    def __init__(self, guard_pid: int) -> None:
        self.guard_pid = guard_pid
        self.seen: dict[int, int] = {}

    def look(self) -> None:
        below = descendants(scan_proc(None), {self.guard_pid}) - {os.getpid()}
        for pid in below:
            if pid not in self.seen:
                t = start_time(pid)
                if t is not None:
                    self.seen[pid] = t
        for pid in [p for p in self.seen if p not in below]:
            if start_time(pid) != self.seen[pid]:
                del self.seen[pid]   # gone (or its pid reused by a stranger)

    def still_ours(self) -> set[int]:
        return {pid for pid, t in self.seen.items() if start_time(pid) == t}


def _signal(pids: Iterable[int], sig: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except OSError:
            pass


def kill_tree(pgid: int, marker: bytes, watched: set[int] = frozenset()) -> None:  # type: ignore[assignment]
    """Freeze everything that is ours (a frozen process cannot fork), take in what they forked
    meanwhile, then kill it all."""
    me = os.getpid()
    targets = set(watched)
    for _ in range(10):
        try:
            os.killpg(pgid, signal.SIGSTOP)
        except OSError:
            pass
        procs = scan_proc(marker)
        grown = targets | {p.pid for p in procs if p.pgid == pgid or p.marked}
        grown |= descendants(procs, grown)
        grown.discard(me)
        _signal(grown - targets, signal.SIGSTOP)
        if grown == targets:
            break
        targets = grown
    try:
        os.killpg(pgid, signal.SIGKILL)
    except OSError:
        pass
    _signal(targets, signal.SIGKILL)
    _signal(targets, signal.SIGCONT)   # a stopped process dies of SIGKILL anyway; harmless


def main() -> None:
    pgid, run_id = int(sys.argv[1]), sys.argv[2]
    watch = Watch(int(sys.argv[3]) if len(sys.argv) > 3 else os.getppid())
    while True:
        ready, _, _ = select.select([0], [], [], WATCH_INTERVAL)
        if not ready:
            watch.look()
            continue
        try:
            chunk = os.read(0, 4096)
        except InterruptedError:
            continue
        except OSError:
            chunk = b""
        if not chunk:
            break
        if b"done" in chunk:
            return
    kill_tree(pgid, f"GUARD_RUN_ID={run_id}".encode(), watch.still_ours())


if __name__ == "__main__":
    main()
