"""Claude Code transcripts -> UsageEvents and tool calls. Pure: no files, no threads.

A transcript line is one content block of one API response; a response written as three lines
(thinking, text, tool_use) carries the same usage three times. One response is one event, keyed
`req:<requestId>` (the key the OTLP receiver uses too, so both sources merge) or
`msg:<message.id>` when a gateway drops the request id. Lines whose session is not (yet) claimed by
this run are held back: a `--continue` or `/clear` session becomes known only when Claude Code
reports it through a hook, and another Claude Code in the same folder must never be charged.

A forked session (`--resume ID --fork-session`, `--continue --fork-session`) starts its new file
with a copy of the source session's lines: same request and message ids, their old timestamps,
only `sessionId` rewritten. Those responses were paid for before this run; `History` tells them
from the new ones.
"""
from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from guard.governor.events import ToolCall, ToolResult
from guard.usage import UsageEvent, from_anthropic_usage

SOURCE = "transcript"
SYNTHETIC = "<synthetic>"


def encode_project_dir(cwd: str) -> str:
    """Claude Code's folder name for a cwd: every non-alphanumeric character becomes '-'.
    Over 200 characters it is cut and hashed (callers then watch all projects)."""
    return re.sub(r"[^A-Za-z0-9]", "-", cwd)


def usage_key(record: dict[str, Any]) -> str | None:
    msg = record.get("message")
    if not isinstance(msg, dict):
        return None
    req = record.get("requestId")
    if isinstance(req, str) and req:
        return f"req:{req}"
    mid = msg.get("id")
    if isinstance(mid, str) and mid:
        return f"msg:{mid}"
    return None


def record_time(record: dict[str, Any]) -> float | None:
    """A record's `timestamp` (ISO 8601, UTC) in epoch seconds."""
    ts = record.get("timestamp")
    if not isinstance(ts, str):
        return None
    try:
        return datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


class History:
    """What a run must not charge again: the responses of a session it resumes or forks (their
    keys, read from the source file before launch) and any line stamped before the launch."""

    def __init__(self, since: float | None = None, known_keys: Iterable[str] = ()) -> None:
        self.since = since
        self.known = set(known_keys)
        self.skipped = 0

    def learn(self, record: dict[str, Any]) -> None:
        """A record of the source session (read before launch)."""
        if record.get("type") == "assistant":
            key = usage_key(record)
            if key is not None:
                self.known.add(key)

    def is_new(self, record: dict[str, Any]) -> bool:
        if record.get("type") == "assistant" and usage_key(record) in self.known:
            self.skipped += 1
            return False
        if self.since is not None:
            t = record_time(record)
            if t is not None and t < self.since:
                self.skipped += 1
                return False
        return True


@dataclass
class _Pending:
    event: UsageEvent
    tool_ids: set[str] = field(default_factory=set)
    raw: tuple[object, object] = (None, None)   # the last line's (model, usage): most repeat it


class SessionGate:
    """Passes on the records of the sessions this run owns; holds back the others until claimed
    (a `--continue` or `/clear` session id is learned from a hook, a little after its first lines)."""

    MAX_HELD = 10_000   # per foreign session: another agent's long session must not grow us unbounded

    def __init__(
        self,
        on_record: Callable[[dict[str, Any]], None],
        session_ids: Iterable[str] = (),
        *,
        accept_all: bool = False,
    ) -> None:
        self.on_record = on_record
        self.sessions: set[str] = set(session_ids)
        self.accept_all = accept_all
        self._held: dict[str, list[dict[str, Any]]] = {}

    def claim(self, session_id: str) -> None:
        if session_id in self.sessions:
            return
        self.sessions.add(session_id)
        for rec in self._held.pop(session_id, []):
            self.on_record(rec)

    def feed(self, record: dict[str, Any]) -> None:
        sid = record.get("sessionId")
        if self.accept_all or sid in self.sessions:
            self.on_record(record)
        elif isinstance(sid, str) and record.get("type") in ("assistant", "user"):
            held = self._held.setdefault(sid, [])
            if len(held) < self.MAX_HELD:
                held.append(record)


class TranscriptParser:
    """Feed it the transcript records of this run's sessions (any file, any order); it emits one
    event per API response. `on_event` gets the running max-merged event of a response each time
    it grows, so a consumer that max-merges by key ends with the right figure."""

    def __init__(self, on_event: Callable[[UsageEvent], None]) -> None:
        self.on_event = on_event
        self._events: dict[str, _Pending] = {}
        self.synthetic_skipped = 0

    def feed(self, record: dict[str, Any]) -> None:
        if record.get("type") == "assistant":
            self._take(record)

    def _take(self, record: dict[str, Any]) -> None:
        msg = record.get("message")
        if not isinstance(msg, dict):
            return
        model = msg.get("model")
        if model == SYNTHETIC:
            self.synthetic_skipped += 1
            return
        usage = msg.get("usage")
        key = usage_key(record)
        if key is None or not isinstance(usage, dict):
            return
        tool_ids = {
            str(b.get("id"))
            for b in msg.get("content") or []
            if isinstance(b, dict) and b.get("type") == "tool_use" and b.get("id")
        }
        pending = self._events.get(key)
        before = None
        if pending is not None and pending.raw == (model, usage):
            # another content block of the same response, same usage: only its tool calls are new
            if tool_ids <= pending.tool_ids:
                return
            before = pending.event
        else:
            ev = from_anthropic_usage(key, SOURCE, usage, model if isinstance(model, str) else None)
            if pending is None:
                pending = self._events[key] = _Pending(ev)
            else:
                before = pending.event
                pending.event = pending.event.merge(ev)
            pending.raw = (model, usage)
        pending.tool_ids |= tool_ids
        steps = len(pending.tool_ids)
        if steps > pending.event.steps:
            pending.event = _with_steps(pending.event, steps)
        if before is None or _figures(before) != _figures(pending.event):
            self.on_event(pending.event)

    @property
    def responses(self) -> dict[str, UsageEvent]:
        return {k: p.event for k, p in self._events.items()}


def _figures(ev: UsageEvent) -> tuple[object, ...]:
    return (ev.model, ev.input_tokens, ev.output_tokens, ev.cache_write_tokens, ev.cache_write_1h_tokens,
            ev.cache_read_tokens, ev.steps)


def _with_steps(ev: UsageEvent, steps: int) -> UsageEvent:
    import dataclasses

    return dataclasses.replace(ev, steps=steps)


# --------------------------------------------------------------------------------------------
# Tool calls (the decision core tells a stuck loop from them: guard.governor.stuck)


# Free-text fields the model rewords from one try to the next: not part of what the call does.
_NOT_THE_CALL = ("description",)


def call_fingerprint(name: str, tool_input: Any) -> str:
    if isinstance(tool_input, dict):
        tool_input = {k: v for k, v in tool_input.items() if k not in _NOT_THE_CALL}
    canon = json.dumps(tool_input, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha1(f"{name}\0{canon}".encode()).hexdigest()[:16]


class ToolCalls:
    """Reports each tool call and result of the transcript, per conversation (the main loop and
    each sub-agent: their lines interleave). What it means is not decided here."""

    def __init__(self, report: Callable[[ToolCall | ToolResult], None]) -> None:
        self.report = report

    @staticmethod
    def stream_of(record: dict[str, Any]) -> str:
        return f"{record.get('sessionId')}/{record.get('agentId') or 'main'}"

    def feed(self, record: dict[str, Any]) -> None:
        kind = record.get("type")
        msg = record.get("message")
        if not isinstance(msg, dict) or not isinstance(msg.get("content"), list):
            return
        blocks = [b for b in msg["content"] if isinstance(b, dict)]
        if kind == "assistant":
            stream = self.stream_of(record)
            for b in blocks:
                if b.get("type") == "tool_use":
                    name, tool_input = str(b.get("name")), b.get("input")
                    self.report(ToolCall(stream, str(b.get("id")), call_fingerprint(name, tool_input),
                                         _describe(name, tool_input), command=name == "Bash"))
        elif kind == "user":
            for b in blocks:
                if b.get("type") == "tool_result":
                    self.report(ToolResult(str(b.get("tool_use_id")), bool(b.get("is_error"))))


def _describe(name: str, tool_input: Any) -> str:
    if isinstance(tool_input, dict) and name == "Bash" and isinstance(tool_input.get("command"), str):
        text = f"Bash({tool_input['command']})"
    else:
        text = f"{name}({json.dumps(tool_input, sort_keys=True, default=str)})"
    return text if len(text) <= 120 else text[:117] + "..."
