"""What counts as a stuck loop, from the tool calls any adapter reports. Pure.

Two rules, per conversation (the main loop and each sub-agent apart, since their calls
interleave): the same call (the same signature) `repeat` times in a row; or the same shell
command failing `failing` times with no success of it in between. The first one met halts the
run once; the adapter only reports what it saw (`ToolCall`, `ToolResult`)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from guard.governor.events import ToolCall, ToolResult


@dataclass(frozen=True)
class StuckRule:
    repeat: int = 5      # the same tool call this many times in a row
    failing: int = 3     # the same shell command failing this many times (no success between)

    @classmethod
    def from_options(cls, options: dict[str, Any]) -> StuckRule | None:
        """A tool's config section: `stuck_loop: false`, `{enabled: false}`, `{repeat, failing}`."""
        raw = options.get("stuck_loop", {})
        if raw is False or raw is None:
            return None
        if not isinstance(raw, dict):
            return cls()
        if raw.get("enabled") is False:
            return None
        return cls(repeat=int(raw.get("repeat", cls.repeat)), failing=int(raw.get("failing", cls.failing)))


@dataclass
class _Stream:
    last: str | None = None
    run: int = 0
    failures: dict[str, int] = field(default_factory=dict)


@dataclass
class Loops:
    """The calls seen so far. Copied only when a tool event changes it (decide copies state)."""

    streams: dict[str, _Stream] = field(default_factory=dict)
    pending: dict[str, ToolCall] = field(default_factory=dict)   # call id -> the call, until its result
    seen: set[str] = field(default_factory=set)
    fired: bool = False

    def copy(self) -> Loops:
        return Loops({k: _Stream(v.last, v.run, dict(v.failures)) for k, v in self.streams.items()},
                     dict(self.pending), set(self.seen), self.fired)


def on_call(rule: StuckRule, loops: Loops, ev: ToolCall) -> str | None:
    """The words of the stuck loop this call completes, once; None otherwise. Mutates `loops`."""
    if ev.call_id in loops.seen:   # the same response reported twice (two lines, two sources)
        return None
    loops.seen.add(ev.call_id)
    loops.pending[ev.call_id] = ev
    st = loops.streams.setdefault(ev.stream, _Stream())
    st.run = st.run + 1 if st.last == ev.signature else 1
    st.last = ev.signature
    if st.run >= rule.repeat:
        return _fire(loops, f"the same tool call repeated {st.run} times in a row: {ev.description}")
    return None


def on_result(rule: StuckRule, loops: Loops, ev: ToolResult) -> str | None:
    call = loops.pending.pop(ev.call_id, None)
    if call is None or not call.command:
        return None
    st = loops.streams.setdefault(call.stream, _Stream())
    if not ev.is_error:
        st.failures.pop(call.signature, None)
        return None
    st.failures[call.signature] = st.failures.get(call.signature, 0) + 1
    if st.failures[call.signature] >= rule.failing:
        return _fire(loops, f"the same command failed {st.failures[call.signature]} times: {call.description}")
    return None


def _fire(loops: Loops, message: str) -> str:
    loops.fired = True   # once: the core feeds no more calls after this
    return f"stuck loop: {message}"
