"""Which ancestor makes a process part of a guarded run's tree."""
from __future__ import annotations

import os

from guard.supervisor.ancestry import Proc, ancestors, guarded_ancestor, is_supervising_guard


def proc(pid: int, *argv: str) -> Proc:
    return Proc(pid, 1, 0, argv)


def test_a_guard_supervising_a_tool_is_recognised_by_its_command_line() -> None:
    assert is_supervising_guard(("python3", "-m", "guard", "--max-usd", "1", "run", "--", "x"))
    assert is_supervising_guard(("/usr/local/bin/guard", "claude", "-p", "hi"))
    assert not is_supervising_guard(("python3", "-m", "guard", "runs", "--json"))
    assert not is_supervising_guard(("python3", "-m", "guard.supervisor.sentinel", "1", "run"))
    assert not is_supervising_guard(("bash", "-c", "guard run"))


def test_the_ledgers_pids_name_the_run() -> None:
    chain = [proc(30, "bash"), proc(20, "node", "claude"), proc(10, "python3", "-m", "guard", "claude")]
    assert guarded_ancestor(chain, {20: "run-a"}) == (20, "run-a")
    assert guarded_ancestor(chain, {}) == (10, None)
    assert guarded_ancestor(chain[:1], {}) is None


def test_ancestors_reach_init() -> None:
    chain = ancestors()
    assert chain and chain[0].pid == os.getppid() and chain[-1].ppid == 0
