"""The whole tree, even escapees: a setsid double-forked grandchild that re-execs without
GUARD_RUN_ID dies with guard, even when guard itself is SIGKILLed (no cgroup on these machines:
guard is a subreaper, and its sentinel remembers what was below it)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import SPENDER, guard_cmd, guard_env, pids_alive, wait_until

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize("attempt", range(3))
def test_escapee_does_not_survive_guards_sigkill(home: Path, tag: str, attempt: int) -> None:
    guard = subprocess.Popen(guard_cmd("run", "--", sys.executable, SPENDER, "--escape", "--lines", "-1",
                                       "--rate", "5", "--tag", tag),
                             env=guard_env(home), cwd=home, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: pids_alive(f"{tag}-escapee"), timeout=30, message="the escapee running")
        escapee = pids_alive(f"{tag}-escapee")[0]
        with open(f"/proc/{escapee}/environ", "rb") as f:
            env = dict(kv.split(b"=", 1) for kv in f.read().split(b"\0") if b"=" in kv)
        assert b"GUARD_RUN_ID" not in env                      # it really dropped the marker
        # guard is a subreaper: the escapee is re-parented below it, where the sentinel looks
        wait_until(lambda: _ppid(escapee) == guard.pid, timeout=30, message="the escapee below guard")
        usage = Path(env[b"GUARD_USAGE_FILE"].decode())
        # the sentinel looks several times a second; the escapee's next 5 calls span many looks
        written = _escapee_lines(usage)
        wait_until(lambda: _escapee_lines(usage) >= written + 5, timeout=30, message="the escapee spending")
        os.kill(guard.pid, signal.SIGKILL)
        guard.wait(timeout=30)
        wait_until(lambda: not pids_alive(tag), timeout=30, message="every agent process gone")
    finally:
        if guard.poll() is None:
            guard.kill()
        for pid in pids_alive(tag):
            os.kill(pid, signal.SIGKILL)


def _ppid(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return int(f.read().rsplit(b")", 1)[1].split()[1])
    except OSError:
        return -1


def _escapee_lines(usage: Path) -> int:
    return sum(1 for line in usage.read_text().splitlines() if "call-" in line)
