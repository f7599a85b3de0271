"""Codex rollouts as history: `$CODEX_HOME/sessions/YYYY/MM/DD/rollout-*.jsonl`.

Lines are parsed by the live adapter's functions, under its keys: a `token_usage_record` line per
response (`resp:<response_id>`, the proxy's key too), else, in rollouts that write none, the
`token_count` lines (the file name and the cumulative total); so a response guard metered live is
not counted again.
The model of a turn is the latest `turn_context` before it; it is carried in the import cursor, so
an appended turn read by a later import still has it.
"""
from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from guard.adapters.codex import token_count_event, usage_record_event
from guard.adapters.codex_config import codex_home
from guard.history.cursor import Cursor, ReadJob, read_each
from guard.history.found import RUN_PREFIX, Found, iso_ts, loads

NAME = "codex"
_WANTED = (b'"token_usage_record"', b'"token_count"', b'"turn_context"', b'"session_meta"')


def default_roots(env: Mapping[str, str], home: Path) -> list[Path]:
    return [codex_home({**env, "HOME": env.get("HOME") or str(home)}) / "sessions"]


class CodexHistory:
    name = NAME

    def __init__(self) -> None:
        self._found: list[Found] = []
        self.bad_lines = 0

    def files(self, paths: list[Path]) -> list[Path]:
        out: set[Path] = set()
        for p in paths:
            if p.is_file():
                out.add(p)
            elif p.is_dir():
                out.update(p.rglob("rollout-*.jsonl"))
        return sorted(out)

    def read_all(self, jobs: list[ReadJob], meanwhile: Callable[[], None]) -> list[Cursor]:
        meanwhile()
        return read_each(jobs, NAME, self.feed)

    def feed(self, path: Path, data: bytes, state: dict[str, Any], mtime: float) -> dict[str, Any]:
        model, cwd = state.get("model"), state.get("cwd", "")
        recorded = bool(state.get("recorded"))   # this rollout writes token_usage_record lines
        source_id = os.path.basename(path)
        run_id = f"{RUN_PREFIX}codex-{path.stem.removeprefix('rollout-')}"
        for line in data.split(b"\n"):
            if not any(w in line for w in _WANTED):
                continue
            try:
                obj = loads(line)
            except ValueError:
                self.bad_lines += 1
                continue
            if not isinstance(obj, dict):
                continue
            payload = obj.get("payload")
            if obj.get("type") in ("turn_context", "session_meta") and isinstance(payload, dict):
                if isinstance(payload.get("model"), str):
                    model = payload["model"]
                if isinstance(payload.get("cwd"), str):
                    cwd = payload["cwd"]
                continue
            if obj.get("type") == "token_usage_record":
                ev = usage_record_event(obj, model)
                recorded = recorded or ev is not None
            elif recorded:
                continue   # a token_count repeats what this rollout's token_usage_records said
            else:
                ev = token_count_event(obj, source_id, model)
            if ev is not None:
                ev = dataclasses.replace(ev, ts=iso_ts(obj.get("timestamp"), mtime))
                self._found.append(Found(run_id, NAME, cwd, ev))
        return {"model": model, "cwd": cwd, "recorded": recorded}

    def found(self) -> list[Found]:
        return self._found
