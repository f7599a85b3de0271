"""Claude Code transcripts as history: every `*.jsonl` under the projects folders, sub-agents'
`<session>/subagents/agent-*.jsonl` included.

Parsing and deduplication are the live adapter's (guard.adapters.claude_transcript): each reader
feeds its files to a TranscriptParser and the readers' responses are max-merged by key, so a
response copied into a forked or resumed session's file is one response, owned by the session of
the oldest file that has it. Its key is the live key, so a response guard metered live is found in
the ledger and not counted again.
"""
from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from guard.adapters.claude_transcript import SYNTHETIC, TranscriptParser, usage_key
from guard.history.cursor import Cursor, ReadJob, read_new
from guard.history.found import RUN_PREFIX, Found, iso_ts, loads
from guard.usage import UsageEvent

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
    if pos < 0 and b'"assistant"' in data:
        # not written compactly (another writer, a future version): every line is parsed
        yield from (line for line in data.split(b"\n") if line.strip())
        return
    while pos >= 0:
        start = data.rfind(b"\n", 0, pos) + 1
        end = data.find(b"\n", pos)
        if end < 0:
            end = len(data)
        yield data[start:end]
        pos = data.find(_ASSISTANT, end)


# Parsing is most of a first import; files are parsed in this many processes when there is enough.
_WORKERS = 2
_PARALLEL_BYTES = 32 << 20


@dataclass
class _Part:
    """What one reader made of its share of the files."""

    responses: dict[str, UsageEvent]
    first: dict[str, tuple[int, str, str, float]]   # key -> (file order, session, cwd, ts)
    cursors: list[tuple[int, Cursor]]
    bad_lines: int = 0


def _read_part(jobs: list[ReadJob]) -> _Part:
    parser = TranscriptParser(lambda ev: None)
    first: dict[str, tuple[int, str, str, float]] = {}
    cursors: list[tuple[int, Cursor]] = []
    bad = 0
    for job in jobs:
        data, after = read_new(job.path, job.cursor, NAME)
        mtime = after.mtime
        for line in assistant_lines(data):
            try:
                rec = loads(line)
            except ValueError:
                bad += 1
                continue
            if not isinstance(rec, dict):
                continue
            key = usage_key(rec)
            if key is not None and key not in first:
                msg = rec.get("message")
                if isinstance(msg, dict) and msg.get("model") != SYNTHETIC:
                    session, cwd = rec.get("sessionId"), rec.get("cwd")
                    first[key] = (job.order, str(session) if session else "unknown", str(cwd) if cwd else "",
                                  iso_ts(rec.get("timestamp"), mtime))
            parser.feed(rec)
        cursors.append((job.order, after))
    # each response at the time of its first line (in the reader, so it is done in parallel)
    responses = {k: _at(ev, first[k][3]) if k in first else ev for k, ev in parser.responses.items()}
    return _Part(responses, first, cursors, bad)


def _at(ev: UsageEvent, ts: float) -> UsageEvent:
    """`ev` at another time. The parser built and checked it already: copying its fields skips
    dataclasses.replace's second __init__ and checks, once per response."""
    out = object.__new__(UsageEvent)
    out.__dict__.update(ev.__dict__)
    out.__dict__["ts"] = ts
    return out


class ClaudeHistory:
    name = NAME

    def __init__(self) -> None:
        self._events: dict[str, UsageEvent] = {}
        self._first: dict[str, tuple[int, str, str, float]] = {}
        self.bad_lines = 0

    def files(self, paths: list[Path]) -> list[Path]:
        return _jsonl_files(paths)

    def read_all(self, jobs: list[ReadJob], meanwhile: Callable[[], None]) -> list[Cursor]:
        """Read and parse the files; a response in several files is one, max-merged, owned by
        the earliest file that has it."""
        size = sum(j.size for j in jobs)
        if size >= _PARALLEL_BYTES and len(jobs) > 1 and (os.cpu_count() or 1) > 1:
            shares: list[list[ReadJob]] = [[] for _ in range(_WORKERS)]
            weights = [0] * _WORKERS
            for job in sorted(jobs, key=lambda j: -j.size):
                i = weights.index(min(weights))
                shares[i].append(job)
                weights[i] += job.size
            with multiprocessing.get_context("fork").Pool(_WORKERS) as pool:
                pending = pool.map_async(_read_part, [sorted(s, key=lambda j: j.order) for s in shares])
                meanwhile()
                parts = pending.get()
        else:
            meanwhile()
            parts = [_read_part(jobs)]
        cursors: list[tuple[int, Cursor]] = []
        for part in parts:
            self.bad_lines += part.bad_lines
            cursors += part.cursors
            for key, ev in part.responses.items():
                mine = self._events.get(key)
                self._events[key] = ev if mine is None else mine.merge(ev)
                f = part.first.get(key)
                if f is not None and (key not in self._first or f[0] < self._first[key][0]):
                    self._first[key] = f
        return [c for _, c in sorted(cursors, key=lambda oc: oc[0])]

    def found(self) -> list[Found]:
        out = []
        for key, ev in self._events.items():
            _, session, cwd, ts = self._first.get(key, (0, "unknown", "", ev.ts))
            if ev.ts != ts:
                ev = _at(ev, ts)
            out.append(Found(f"{RUN_PREFIX}claude-{session}", NAME, cwd, ev))
        return out
