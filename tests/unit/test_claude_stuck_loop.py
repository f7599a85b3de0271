"""Stuck-loop detection from transcript tool calls."""
from __future__ import annotations

from typing import Any

from guard.adapters.claude_transcript import (
    StuckLoopConfig,
    StuckLoopDetector,
    call_fingerprint,
)


def call(tid: str, cmd: str, agent: str | None = None, name: str = "Bash") -> dict[str, Any]:
    rec: dict[str, Any] = {"type": "assistant", "sessionId": "s", "message": {
        "id": f"m{tid}", "content": [{"type": "tool_use", "id": tid, "name": name, "input": {"command": cmd}}]}}
    if agent:
        rec["agentId"] = agent
    return rec


def result(tid: str, error: bool) -> dict[str, Any]:
    return {"type": "user", "sessionId": "s", "message": {"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": tid, "content": "Exit code 1" if error else "ok", "is_error": error}]}}


def detector(**kw: int) -> tuple[StuckLoopDetector, list[str]]:
    fired: list[str] = []
    return StuckLoopDetector(StuckLoopConfig(**kw), fired.append), fired


def test_same_call_n_times_in_a_row() -> None:
    d, fired = detector(repeat=5, failing=3)
    for i in range(4):
        d.feed(call(f"t{i}", "echo hi"))
    assert fired == []
    d.feed(call("t4", "echo hi"))
    assert len(fired) == 1 and "5 times in a row" in fired[0] and "echo hi" in fired[0]
    d.feed(call("t5", "echo hi"))
    assert len(fired) == 1  # reported once


def test_a_different_call_resets_the_run() -> None:
    d, fired = detector(repeat=3, failing=99)
    for i, cmd in enumerate(["a", "a", "b", "a", "a", "b", "b"]):
        d.feed(call(f"t{i}", cmd))
    assert fired == []


def test_the_same_tool_id_seen_twice_counts_once() -> None:
    d, fired = detector(repeat=2, failing=99)
    d.feed(call("t1", "a"))
    d.feed(call("t1", "a"))  # the same response written on two lines
    assert fired == []


def test_interleaved_subagents_are_separate_streams() -> None:
    d, fired = detector(repeat=3, failing=99)
    for i in range(2):
        d.feed(call(f"m{i}", "ls"))
        d.feed(call(f"s{i}", "ls", agent="a1"))
        d.feed(call(f"x{i}", "pwd", agent="a2"))
    assert fired == []
    d.feed(call("s2", "ls", agent="a1"))
    assert len(fired) == 1


def test_same_failing_command() -> None:
    d, fired = detector(repeat=99, failing=3)
    for i, cmd in enumerate(["make", "ls", "make", "ls"]):
        d.feed(call(f"t{i}", cmd))
        d.feed(result(f"t{i}", error=(cmd == "make")))
    assert fired == []
    d.feed(call("t9", "make"))
    d.feed(result("t9", error=True))
    assert len(fired) == 1 and "failed 3 times" in fired[0] and "make" in fired[0]


def test_a_success_resets_the_failures_of_that_command() -> None:
    d, fired = detector(repeat=99, failing=2)
    d.feed(call("t1", "make"))
    d.feed(result("t1", True))
    d.feed(call("t2", "make"))
    d.feed(result("t2", False))
    d.feed(call("t3", "make"))
    d.feed(result("t3", True))
    assert fired == []


def test_config_from_options() -> None:
    assert StuckLoopConfig.from_options({}) == StuckLoopConfig(5, 3)
    assert StuckLoopConfig.from_options({"stuck_loop": {"repeat": 8}}) == StuckLoopConfig(8, 3)
    assert StuckLoopConfig.from_options({"stuck_loop": False}) is None
    assert StuckLoopConfig.from_options({"stuck_loop": {"enabled": False}}) is None


def test_fingerprint_ignores_key_order() -> None:
    assert call_fingerprint("Bash", {"a": 1, "b": 2}) == call_fingerprint("Bash", {"b": 2, "a": 1})
    assert call_fingerprint("Bash", {"a": 1}) != call_fingerprint("Read", {"a": 1})
    # the model rewording its description does not make it a different call
    assert call_fingerprint("Bash", {"command": "make", "description": "build"}) == \
        call_fingerprint("Bash", {"command": "make", "description": "build again"})
