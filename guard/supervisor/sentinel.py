"""A tiny watcher process: if guard itself dies (even by SIGKILL), it kills the agent's tree.

guard starts it in a session of its own with a pipe on stdin. EOF on the pipe means guard is
gone: the sentinel then kills the agent's process group and every process that carries the
run's GUARD_RUN_ID in its environment (descendants that left the group, via setsid or a
double fork, still inherit it). "done" on the pipe means guard finished normally.
"""
from __future__ import annotations

import os
import signal
import sys


def marked_pids(marker: bytes) -> set[int]:
    """Processes whose environment holds `marker` (GUARD_RUN_ID=<id>)."""
    from guard.supervisor.tree import scan_proc

    return {p.pid for p in scan_proc(marker) if p.marked and p.pid != os.getpid()}


def kill_tree(pgid: int, marker: bytes) -> None:
    for _ in range(3):  # a process may fork while we sweep
        try:
            os.killpg(pgid, signal.SIGKILL)
        except OSError:
            pass
        pids = marked_pids(marker)
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        if not pids:
            break


def main() -> None:
    pgid, run_id = int(sys.argv[1]), sys.argv[2]
    while True:
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
    kill_tree(pgid, f"GUARD_RUN_ID={run_id}".encode())


if __name__ == "__main__":
    main()
