"""prctl calls guard relies on (Linux only; elsewhere they are no-ops)."""
from __future__ import annotations

import ctypes
import signal

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36

_libc = None


def _prctl(option: int, arg: int) -> bool:
    global _libc
    try:
        if _libc is None:
            # the running program's own symbols include libc's; find_library would run ldconfig
            _libc = ctypes.CDLL(None, use_errno=True)
        return _libc.prctl(option, arg, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def become_subreaper() -> bool:
    """Orphaned descendants (double forks, setsid daemons) are re-parented to guard instead of
    init, so the whole tree stays visible as guard's descendants and can be stopped."""
    return _prctl(PR_SET_CHILD_SUBREAPER, 1)


def die_with_parent(sig: int = signal.SIGKILL) -> bool:
    """Called in the child before exec: if guard dies, the kernel sends `sig` to the agent."""
    return _prctl(PR_SET_PDEATHSIG, int(sig))


def held_by(subreaper: bool) -> str:
    """How a run's tree was held, for `guard show` (RunRecord.held_by, ledger column runs.held_by):
    no cgroup v2 can be had here (v1 only, no systemd), so it is guard as subreaper plus the
    sentinel's memory of guard's descendants, or the process group and GUARD_RUN_ID alone."""
    return "subreaper+sentinel" if subreaper else "process-group+sentinel"
