"""The end of a tree: bury adopted zombies, sweep what is left, dismiss the sentinel."""
from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from typing import Any

from guard.supervisor.tree import ProcessTree, scan_proc


def reap_orphans(keep: set[int]) -> None:
    """guard is a subreaper: adopted descendants become its zombies; bury them. One pass over
    /proc, as the tree itself is read (psutil would cost every start its import)."""
    try:
        me = os.getpid()
        for p in scan_proc(None):
            if p.ppid == me and p.state == "Z" and p.pid not in keep:
                try:
                    os.waitpid(p.pid, os.WNOHANG)
                except ChildProcessError:
                    pass
    except Exception:  # noqa: BLE001 - reaping is housekeeping, never fatal
        pass


def sweep(tree: ProcessTree | None, reap: Callable[[], None], during: Callable[[], None] = lambda: None) -> None:
    """Nothing the agent started may go on spending after guard is gone; `during` reads what it
    spends while it goes."""
    if tree is None or not tree.members():
        return
    tree.signal(signal.SIGCONT)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        tree.signal(sig)
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline and tree.members():
            time.sleep(0.02)
            reap()
            during()
        if not tree.members():
            return


def dismiss_sentinel(sentinel: Any) -> None:
    """Tell it guard ends normally, without waiting for it to go: it exits on reading the line
    (still in the pipe if it is not reading yet), and whoever adopts it buries it."""
    try:
        sentinel.stdin.write(b"done\n")
        sentinel.stdin.close()
    except OSError:
        pass
    sentinel.returncode = 0   # Popen's destructor must not warn of, or wait for, a child still running


def crashed(tree: ProcessTree | None, record: Callable[[], None]) -> None:
    """guard itself failed: nothing it started may run on unsupervised."""
    try:
        if tree is not None:
            tree.signal(signal.SIGKILL)
        record()
    except Exception:  # noqa: BLE001 - already failing: keep the first error
        pass
