"""Signals to a whole process tree: the agent's process group, every descendant of guard (guard
is a subreaper, so double forks stay its descendants), and every process that carries the run's
GUARD_RUN_ID in its environment (setsid daemons whose subreaper is gone)."""
from __future__ import annotations

import os
import signal
from collections.abc import Callable
from dataclasses import dataclass

Kill = Callable[[int, int], None]


@dataclass(frozen=True)
class ProcInfo:
    pid: int
    ppid: int
    pgid: int
    state: str
    marked: bool


def scan_proc(marker: bytes | None) -> list[ProcInfo]:
    """One pass over /proc: cheaper than psutil's per-process objects on the halt path."""
    out: list[ProcInfo] = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
            fields = stat.rsplit(b")", 1)[1].split()
            marked = False
            if marker is not None:
                with open(f"/proc/{entry}/environ", "rb") as f:
                    marked = marker in f.read().split(b"\0")
        except OSError:
            continue
        out.append(ProcInfo(int(entry), int(fields[1]), int(fields[2]), fields[0].decode(), marked))
    return out


class ProcessTree:
    def __init__(self, root_pid: int, kill: Kill = os.kill, guard_pid: int | None = None,
                 exclude: Callable[[], set[int]] = set, run_id: str | None = None) -> None:
        """`kill` is the seam tests replace; `exclude` names guard's own helpers (the sentinel)."""
        self.root_pid = root_pid
        self.pgid = root_pid  # the agent leads its own session and group
        self._kill = kill
        self._guard_pid = guard_pid or os.getpid()
        self._exclude = exclude
        self._marker = f"GUARD_RUN_ID={run_id}".encode() if run_id else None

    def members(self) -> set[int]:
        """Live (non-zombie) pids of the tree now."""
        procs = scan_proc(self._marker)
        children: dict[int, list[int]] = {}
        for p in procs:
            children.setdefault(p.ppid, []).append(p.pid)
        found: set[int] = {p.pid for p in procs if p.pgid == self.pgid or p.marked}
        stack = [self._guard_pid]
        while stack:
            for child in children.get(stack.pop(), []):
                if child not in found:
                    found.add(child)
                stack.append(child)
        live = {p.pid for p in procs if p.pid in found and p.state not in ("Z", "X")}
        live -= self._exclude()
        live.discard(self._guard_pid)
        return live

    def signal(self, sig: int) -> set[int]:
        """Send `sig` to the group at once, then to every member found by the sweep."""
        try:
            os.killpg(self.pgid, sig)
        except OSError:
            pass
        members = self.members()
        for pid in members:
            try:
                self._kill(pid, sig)
            except OSError:
                pass
        return members

    def stop(self) -> set[int]:
        """Freeze the tree: SIGSTOP cannot be caught, so nothing runs (or spends) while paused.
        Repeated while the sweep finds new members, since a process may fork while we sweep."""
        seen: set[int] = set()
        for _ in range(5):
            members = self.signal(signal.SIGSTOP)
            if members <= seen:
                break
            seen |= members
        return seen

    def resume(self) -> None:
        self.signal(signal.SIGCONT)

    def alive(self) -> bool:
        return bool(self.members())
