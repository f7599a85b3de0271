"""The Claude Code adapter reports its transcript's tool calls and results; the decision core
tells a stuck loop from them (tests/unit/test_decide.py, rows 26-28)."""
from __future__ import annotations

from typing import Any

from guard.adapters.claude_transcript import ToolCalls, call_fingerprint
from guard.governor import decide
from guard.governor.events import ToolCall, ToolResult
from guard.governor.state import RunState
from guard.governor.stuck import StuckRule


def call(tid: str, cmd: str, agent: str | None = None, name: str = "Bash") -> dict[str, Any]:
    rec: dict[str, Any] = {"type": "assistant", "sessionId": "s", "message": {
        "id": f"m{tid}", "content": [{"type": "tool_use", "id": tid, "name": name, "input": {"command": cmd}}]}}
    if agent:
        rec["agentId"] = agent
    return rec


def result(tid: str, error: bool) -> dict[str, Any]:
    return {"type": "user", "sessionId": "s", "message": {"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": tid, "content": "Exit code 1" if error else "ok", "is_error": error}]}}


def reported(*records: dict[str, Any]) -> list[ToolCall | ToolResult]:
    out: list[ToolCall | ToolResult] = []
    tools = ToolCalls(out.append)
    for r in records:
        tools.feed(r)
    return out


def test_calls_and_results_are_reported_per_conversation() -> None:
    out = reported(call("t1", "make"), call("t2", "ls", agent="a1"), call("t3", "x", name="Read"),
                   result("t1", True), {"type": "assistant", "message": {"content": "text"}})
    c1, c2, c3, r1 = out
    assert isinstance(c1, ToolCall) and c1.stream == "s/main" and c1.call_id == "t1" and c1.command
    assert c1.signature == call_fingerprint("Bash", {"command": "make"}) and c1.description == "Bash(make)"
    assert isinstance(c2, ToolCall) and c2.stream == "s/a1"
    assert isinstance(c3, ToolCall) and not c3.command
    assert r1 == ToolResult("t1", True)


def test_a_failing_command_in_a_transcript_halts_through_the_core() -> None:
    records = [r for i in range(3) for r in (call(f"t{i}", "make"), result(f"t{i}", True))]
    s = RunState(limits={}, started_at=0.0, stuck=StuckRule(repeat=99, failing=3))
    for ev in reported(*records):
        s, _ = decide(s, ev, 1.0)
    assert s.halt is not None and s.halt.ceiling == "stuck_loop" and "failed 3 times: Bash(make)" in s.halt.message


def test_a_long_call_is_described_short() -> None:
    (c,) = reported(call("t1", "x" * 300))
    assert isinstance(c, ToolCall) and len(c.description) == 120 and c.description.endswith("...")


def test_fingerprint_ignores_key_order() -> None:
    assert call_fingerprint("Bash", {"a": 1, "b": 2}) == call_fingerprint("Bash", {"b": 2, "a": 1})
    assert call_fingerprint("Bash", {"a": 1}) != call_fingerprint("Read", {"a": 1})
    # the model rewording its description does not make it a different call
    assert call_fingerprint("Bash", {"command": "make", "description": "build"}) == \
        call_fingerprint("Bash", {"command": "make", "description": "build again"})
