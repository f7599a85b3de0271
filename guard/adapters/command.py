"""Any agent (`guard run -- CMD`): the usage-file protocol.

guard sets GUARD_USAGE_FILE; the agent appends one JSON object per model call, shaped like an
Anthropic `usage` object plus optional `model`, `cost_usd`, `id` (dedup key) and `steps`.
The agent may also rewrite the file, truncate it or replace it: the follower reads it again from
the start, and every record's key makes the re-read count nothing twice. A line without `id` is
keyed by its content and its ordinal among equal lines of that version of the file.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from guard.adapters.base import EventSink, FollowerAdapter, Launch, LaunchContext, find_executable
from guard.tail import JsonlFollower, LineRef
from guard.usage import Largest, Unreadable, from_anthropic_usage, parse_count, parse_number, safe_text


class LineKeys:
    """Keys for records without an `id`: digest of the line plus its ordinal among equal lines
    of one version (generation) of the file, so reading that version again yields the same keys.
    A rewritten file whose first record differs from the previous version's first record is
    new content, not the old history again: its keys get a space of their own, so a record
    equal to one counted before still counts (an agent that rewrites the file with only its
    newest record). Only id-less lines are remembered."""

    def __init__(self) -> None:
        self._files: dict[Path, _KeySpace] = {}

    def key(self, ref: LineRef) -> str:
        digest = ref.digest
        ks = self._files.get(ref.path)
        if ks is None:
            ks = self._files[ref.path] = _KeySpace(ref.generation, digest)
        elif ks.generation != ref.generation:
            ks.generation = ref.generation
            ks.seen = {}
            if digest != ks.first:
                ks.space += 1
                ks.first = digest
        n = ks.seen.get(digest, 0)
        ks.seen[digest] = n + 1
        return f"line:{ks.space}:{digest}:{n}"


@dataclass
class _KeySpace:
    generation: int
    first: str
    space: int = 0
    seen: dict[str, int] = field(default_factory=dict)


class CommandAdapter(FollowerAdapter):
    name = "run"

    def __init__(self) -> None:
        self.usage_file: Path | None = None
        self._follower: JsonlFollower | None = None
        self._sink: EventSink | None = None
        self._keys = LineKeys()
        self._largest = Largest()
        self._flagged = False
        self._lock = threading.Lock()

    def prepare(self, ctx: LaunchContext) -> Launch:
        if not ctx.tool_args:
            from guard.errors import UsageError

            raise UsageError("run: give the command to supervise after `--`")
        exe = find_executable(ctx.tool_args[0], ctx.env, ctx.wrapper_dirs)
        if ctx.meter == "proxy":
            # the wire is the one source: a usage file as well would count every call twice
            return Launch([exe, *ctx.tool_args[1:]], dict(ctx.env))
        self.usage_file = ctx.run_dir / "usage.jsonl"
        self.usage_file.touch()
        env = dict(ctx.env)
        env["GUARD_USAGE_FILE"] = str(self.usage_file)
        return Launch([exe, *ctx.tool_args[1:]], env)

    def start(self, sink: EventSink) -> None:
        if self.usage_file is None:
            return
        self._sink = sink
        self._follower = JsonlFollower(self.usage_file.parent, self.usage_file.name,
                                       on_ref_record=self._on_record, exact=True)
        self._follower.start()

    def _on_record(self, path: Path, obj: dict[str, Any], ref: LineRef) -> None:
        assert self._sink is not None
        with self._lock:
            ev, problems = usage_file_event(obj, ref, self._keys, self._largest)
            self._largest = self._largest.observe(ev)
        if problems:
            self._flag(ref, problems)
        self._sink.emit(ev)

    def _flag(self, ref: LineRef, problems: list[str]) -> None:
        assert self._sink is not None
        self._sink.set_accuracy("estimated")
        if not self._flagged:
            self._flagged = True
            self._sink.notice("usage-file-numbers",
                              f"{ref.path.name} line {ref.line_no}: {'; '.join(problems)}; "
                              "this run's figures are estimated")


def usage_file_event(obj: dict[str, Any], ref: LineRef, keys: LineKeys,
                     largest: Largest) -> tuple[Any, list[str]]:
    """One usage-file record as an event, and what was wrong with its numbers (empty: exact)."""
    usage = obj.get("usage") if isinstance(obj.get("usage"), dict) else obj
    assert isinstance(usage, dict)
    raw_id = obj.get("id")
    key = raw_id if isinstance(raw_id, str) and raw_id else keys.key(ref)
    problems: list[str] = []
    cost: float | None = None
    try:
        stated = parse_number(obj.get("cost_usd"))
        if stated is not None and stated < 0:
            raise Unreadable(f"negative ({stated})")
        cost = stated
    except Unreadable as e:
        problems.append(f"cost_usd: {e}, the tokens are priced instead")
    try:
        steps, step_problem = parse_count(obj.get("steps", 1))
        if step_problem:
            problems.append(f"steps: {step_problem}")
    except Unreadable as e:
        steps = 1
        problems.append(f"steps: {e}, counted as 1")
    model = obj.get("model")
    ev = from_anthropic_usage(
        key, "usage_file", usage, model=safe_text(model) if isinstance(model, str) else None,
        largest=largest, problems=problems, cost_usd=cost, steps=steps, estimated=bool(problems),
    )
    return ev, problems
