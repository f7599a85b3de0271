"""Claude Code transcripts as history: every `*.jsonl` under the projects folders, sub-agents'
`<session>/subagents/agent-*.jsonl` included.

Parsing and deduplication are the live adapter's (guard.adapters.claude_transcript): one
TranscriptParser is fed the records of every file of an import, so a response copied into a
forked or resumed session's file is one response, owned by the session it was first seen in
(files are read oldest first). Its key is the live key, so a response guard metered live is found
in the ledger and not counted again.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

try:
    import orjson

    _loads = orjson.loads
except ImportError:  # pragma: no cover - orjson is a dependency; json is the slow fallback
    import json

    _loads = json.loads

from guard.adapters.claude_transcript import SYNTHETIC, TranscriptParser, usage_key
from guard.history.found import RUN_PREFIX, Found, iso_ts

NAME = "claude"
# Compact JSON puts this at the top level of every assistant line; unescaped quotes cannot occur
# inside a string, so a line without it is not an assistant line and is never parsed.
_ASSISTANT = b'"type":"assistant"'


def default_roots(env: Mapping[str, str], home: Path) -> list[Path]:
    roots = []
    if env.get("CLAUDE_CONFIG_DIR"):
        roots.append(Path(env["CLAUDE_CONFIG_DIR"]).expanduser() / "projects")
    roots.append(home / ".claude" / "projects")
    return roots


def _jsonl_files(paths: list[Path]) -> list[Path]:
    out: dict[Path, float] = {}
    for p in paths:
        if p.is_file():
            out[p] = p.stat().st_mtime
        elif p.is_dir():
            for f in p.rglob("*.jsonl"):
                out[f] = f.stat().st_mtime
    # oldest first: an original session's file before the forks that copied its lines
    return sorted(out, key=lambda f: (out[f], str(f)))


def assistant_lines(data: bytes) -> Iterator[bytes]:
    pos = data.find(_ASSISTANT)
    while pos >= 0:
        start = data.rfind(b"\n", 0, pos) + 1
        end = data.find(b"\n", pos)
        if end < 0:
            end = len(data)
        yield data[start:end]
        pos = data.find(_ASSISTANT, end)


class ClaudeHistory:
    name = NAME

    def __init__(self) -> None:
        self.parser = TranscriptParser(lambda ev: None)
        self._first: dict[str, tuple[str, str, float]] = {}   # key -> (session, cwd, ts)
        self.bad_lines = 0

    def files(self, paths: list[Path]) -> list[Path]:
        return _jsonl_files(paths)

    def feed(self, path: Path, data: bytes, state: dict[str, Any], mtime: float) -> dict[str, Any]:
        for line in assistant_lines(data):
            try:
                rec = _loads(line)
            except ValueError:
                self.bad_lines += 1
                continue
            if not isinstance(rec, dict):
                continue
            self._take(rec, mtime)
        return state

    def _take(self, rec: dict[str, Any], mtime: float) -> None:
        key = usage_key(rec)
        msg = rec.get("message")
        if key is None or not isinstance(msg, dict) or msg.get("model") == SYNTHETIC:
            self.parser.feed(rec)   # counts what it skips
            return
        if key not in self._first:
            session = rec.get("sessionId")
            cwd = rec.get("cwd")
            self._first[key] = (str(session) if session else "unknown", str(cwd) if cwd else "",
                                iso_ts(rec.get("timestamp"), mtime))
        self.parser.feed(rec)

    def found(self) -> list[Found]:
        out = []
        for key, ev in self.parser.responses.items():
            session, cwd, ts = self._first[key]
            out.append(Found(f"{RUN_PREFIX}claude-{session}", NAME, cwd, dataclasses.replace(ev, ts=ts)))
        return out
