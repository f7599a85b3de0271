"""OpenAI Codex CLI: rollouts in $CODEX_HOME/sessions/YYYY/MM/DD/rollout-*.jsonl.

`event_msg` lines of type `token_count` carry `info.last_token_usage` (this turn) and
`info.total_token_usage` (cumulative); `info` may be null (rate-limit-only events).
`input_tokens` INCLUDES `cached_input_tokens` and `output_tokens` includes reasoning, so the
cached part is moved out of input to match guard's (Anthropic) convention. The model comes from
the latest `turn_context` line.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from guard.adapters.base import EventSink, FollowerAdapter, Launch, LaunchContext, find_executable
from guard.tail import JsonlFollower
from guard.usage import UsageEvent


def codex_home(env: dict[str, str]) -> Path:
    return Path(env.get("CODEX_HOME") or Path(env.get("HOME", "~")).expanduser() / ".codex")


def token_count_event(obj: dict[str, Any], source_id: str, model: str | None) -> UsageEvent | None:
    """The usage of one turn from a rollout line, or None for any other line."""
    if obj.get("type") != "event_msg":
        return None
    payload = obj.get("payload")
    if not isinstance(payload, dict) or payload.get("type") != "token_count":
        return None
    info = payload.get("info")
    if not isinstance(info, dict):
        return None
    last, total = info.get("last_token_usage"), info.get("total_token_usage")
    if not isinstance(last, dict) or not isinstance(total, dict):
        return None

    def num(d: dict[str, Any], k: str) -> int:
        v = d.get(k)
        return int(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0 else 0

    cached = num(last, "cached_input_tokens")
    # the cumulative total only grows: it names this turn, so a re-read never counts it twice
    key = f"codex:{source_id}:{num(total, 'total_tokens') or num(total, 'input_tokens') + num(total, 'output_tokens')}"
    return UsageEvent(key=key, source="codex_rollout", model=model,
                      input_tokens=max(0, num(last, "input_tokens") - cached),
                      cache_read_tokens=cached, output_tokens=num(last, "output_tokens"), steps=1)


class CodexAdapter(FollowerAdapter):
    name = "codex"

    def __init__(self) -> None:
        self._follower: JsonlFollower | None = None
        self._sink: EventSink | None = None
        self._models: dict[Path, str] = {}
        self._root: Path | None = None

    def prepare(self, ctx: LaunchContext) -> Launch:
        exe = find_executable("codex", ctx.env, ctx.wrapper_dirs)
        self._root = codex_home(ctx.env) / "sessions"
        self._root.mkdir(parents=True, exist_ok=True)
        return Launch([exe, *ctx.tool_args], dict(ctx.env))

    def start(self, sink: EventSink) -> None:
        assert self._root is not None
        self._sink = sink
        # rollouts that exist already belong to earlier sessions: only new lines count
        self._follower = JsonlFollower(self._root, "rollout-*.jsonl", self._on_record, recursive=True,
                                       from_start=False)
        self._follower.start()

    def _on_record(self, path: Path, obj: dict[str, Any]) -> None:
        payload = obj.get("payload")
        if obj.get("type") == "turn_context" and isinstance(payload, dict) and isinstance(payload.get("model"), str):
            self._models[path] = payload["model"]
            return
        ev = token_count_event(obj, os.path.basename(path), self._models.get(path))
        if ev is not None and self._sink is not None:
            self._sink.emit(ev)
