"""Any agent (`guard run -- CMD`): the usage-file protocol.

guard sets GUARD_USAGE_FILE; the agent appends one JSON object per model call, shaped like an
Anthropic `usage` object plus optional `model`, `cost_usd`, `id` (dedup key) and `steps`.
A line without `id` is keyed by its position in the file, so re-reading never double-counts.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from guard.adapters.base import EventSink, FollowerAdapter, Launch, LaunchContext, find_executable
from guard.tail import JsonlFollower
from guard.usage import from_anthropic_usage


class CommandAdapter(FollowerAdapter):
    name = "run"

    def __init__(self) -> None:
        self.usage_file: Path | None = None
        self._follower: JsonlFollower | None = None
        self._sink: EventSink | None = None
        self._seq = 0

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
        name = self.usage_file.name
        self._follower = JsonlFollower(self.usage_file.parent, name, self._on_record)
        self._follower.start()

    def _on_record(self, path: Path, obj: dict[str, Any]) -> None:
        assert self._sink is not None
        self._seq += 1
        usage = obj.get("usage") if isinstance(obj.get("usage"), dict) else obj
        assert isinstance(usage, dict)
        key = obj.get("id")
        if not isinstance(key, str) or not key:
            key = f"line:{self._seq}"
        cost = obj.get("cost_usd")
        steps = obj.get("steps", 1)
        ev = from_anthropic_usage(
            key, "usage_file", usage,
            model=obj.get("model") if isinstance(obj.get("model"), str) else None,
            cost_usd=float(cost) if isinstance(cost, (int, float)) and not isinstance(cost, bool)
            and cost >= 0 else None,
            steps=int(steps) if isinstance(steps, int) and not isinstance(steps, bool) and steps >= 0 else 1,
        )
        self._sink.emit(ev)
