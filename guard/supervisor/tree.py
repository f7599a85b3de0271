"""Signals to a whole process tree: the agent's process group plus every descendant that left
it (setsid, double fork; guard is a subreaper, so orphans stay guard's descendants)."""
from __future__ import annotations

import os
import signal
from collections.abc import Callable

import psutil

Kill = Callable[[int, int], None]


class ProcessTree:
    def __init__(self, root_pid: int, kill: Kill = os.kill, guard_pid: int | None = None,
                 exclude: Callable[[], set[int]] = set, run_id: str | None = None) -> None:
        """`kill` is the seam tests replace; `exclude` names guard's own helpers (the sentinel)."""
        self.root_pid = root_pid
        self.pgid = root_pid  # the agent leads its own session and group
        self._kill = kill
        self._guard_pid = guard_pid or os.getpid()
        self._exclude = exclude
        self.known: set[int] = {root_pid}
        self._marker = f"GUARD_RUN_ID={run_id}".encode() if run_id else None

    def members(self) -> set[int]:
        """Live pids of the tree now: guard's descendants and anything still in the agent's group."""
        pids: set[int] = set()
        try:
            me = psutil.Process(self._guard_pid)
            for p in me.children(recursive=True):
                pids.add(p.pid)
        except psutil.Error:
            pass
        for pid in list(self.known):
            if not psutil.pid_exists(pid):
                self.known.discard(pid)
        try:
            for p in psutil.process_iter(["pid"]):
                try:
                    if os.getpgid(p.pid) == self.pgid:
                        pids.add(p.pid)
                except OSError:
                    continue
        except psutil.Error:
            pass
        if self._marker is not None:
            from guard.supervisor.sentinel import marked_pids

            # descendants of a guard that is not their subreaper any more still carry the run id
            pids |= marked_pids(self._marker)
        pids -= self._exclude()
        pids.discard(self._guard_pid)
        live = {pid for pid in pids if _alive(pid)}
        self.known |= live
        return live

    def signal(self, sig: int) -> set[int]:
        """Send `sig` to the group and every member; returns who was signalled."""
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
        Repeated until no running member is left, since a process may fork while we sweep."""
        seen: set[int] = set()
        for _ in range(5):
            members = self.signal(signal.SIGSTOP)
            new = members - seen
            seen |= members
            if not new:
                break
        return seen

    def resume(self) -> None:
        self.signal(signal.SIGCONT)

    def alive(self) -> bool:
        return bool(self.members())


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False
