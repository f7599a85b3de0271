"""Synthetic Claude Code transcripts shaped like the real ones (tests/fixtures/claude_code): per
session a main file and sub-agent files, each API response written as one line per content block
with the same message id, request id and usage (early lines of some with a placeholder output
count), tool results of a few KB in user lines, `<synthetic>` lines, forked sessions that copy
earlier lines into a new file with the same ids, long-context requests and 1-hour cache writes.

`write_tree` returns the truth: every distinct response with its final figures and timestamp,
for tests and the bench to price independently of the importer's parsing.
"""
from __future__ import annotations

import json
import random
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from guard.usage import UsageEvent

MODELS = ("claude-sonnet-4-5", "claude-opus-4-5", "claude-haiku-4-5")
_FILLER = "".join(chr(97 + (i * 7) % 26) for i in range(4096))


@dataclass(frozen=True)
class Response:
    key: str
    model: str
    usage: dict[str, Any]
    ts: float
    steps: int

    def event(self) -> UsageEvent:
        u = self.usage
        return UsageEvent(key=self.key, source="truth", model=self.model, input_tokens=u["input_tokens"],
                          output_tokens=u["output_tokens"], cache_write_tokens=u["cache_creation_input_tokens"],
                          cache_write_1h_tokens=u["cache_creation"]["ephemeral_1h_input_tokens"],
                          cache_read_tokens=u["cache_read_input_tokens"], steps=self.steps, ts=self.ts)


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _base(session: str, ts: float, cwd: str, sidechain: bool) -> dict[str, Any]:
    return {"parentUuid": str(uuid.uuid4()), "isSidechain": sidechain, "userType": "external",
            "entrypoint": "cli", "cwd": cwd, "sessionId": session, "version": "2.1.330",
            "gitBranch": "main", "uuid": str(uuid.uuid4()), "timestamp": _iso(ts)}


class SessionWriter:
    def __init__(self, rng: random.Random, start: float, cwd: str) -> None:
        self.rng = rng
        self.ts = start
        self.cwd = cwd
        self.truth: dict[str, Response] = {}
        self.n = 0

    def _usage(self) -> dict[str, Any]:
        r = self.rng
        long = r.random() < 0.03
        write = r.choice((0, 0, r.randint(100, 5000)))
        write_1h = write if write and r.random() < 0.3 else 0
        return {"input_tokens": r.randint(1, 4000), "cache_creation_input_tokens": write,
                "cache_read_input_tokens": r.randint(210_000, 400_000) if long else r.randint(0, 150_000),
                "output_tokens": r.randint(20, 4000),
                "server_tool_use": {"web_search_requests": 0, "web_fetch_requests": 0},
                "service_tier": "standard",
                "cache_creation": {"ephemeral_1h_input_tokens": write_1h,
                                   "ephemeral_5m_input_tokens": write - write_1h}}

    def turn(self, session: str, sidechain: bool, model: str) -> list[str]:
        r = self.rng
        self.ts += r.uniform(2, 60)
        lines = []
        user = {**_base(session, self.ts, self.cwd, sidechain), "type": "user",
                "message": {"role": "user", "content": "please " + _FILLER[: r.randint(20, 400)]}}
        lines.append(json.dumps(user, separators=(",", ":")))
        self.n += 1
        mid, rid = f"msg_{uuid.uuid4().hex[:24]}", f"req_{uuid.uuid4().hex[:24]}"
        usage = self._usage()
        blocks: list[dict[str, Any]] = [{"type": "thinking", "thinking": _FILLER[: r.randint(50, 800)],
                                         "signature": "c2ln"},
                                        {"type": "text", "text": _FILLER[: r.randint(50, 1500)]}]
        tools = []
        for _ in range(r.choice((0, 1, 1, 2))):
            tid = f"toolu_{uuid.uuid4().hex[:20]}"
            tools.append(tid)
            blocks.append({"type": "tool_use", "id": tid, "name": "Bash",
                           "input": {"command": "cat " + _FILLER[: r.randint(10, 200)]}})
        for i, block in enumerate(blocks):
            u = dict(usage)
            if i < len(blocks) - 1 and r.random() < 0.3:
                u["output_tokens"] = 1     # a placeholder count on an early line, as old versions wrote
            line = {**_base(session, self.ts + i * 0.01, self.cwd, sidechain), "type": "assistant",
                    "requestId": rid,
                    "message": {"id": mid, "type": "message", "role": "assistant", "model": model,
                                "content": [block], "stop_reason": "tool_use" if tools else "end_turn",
                                "stop_sequence": None, "usage": u}}
            lines.append(json.dumps(line, separators=(",", ":")))
        self.truth[f"req:{rid}"] = Response(f"req:{rid}", model, usage, datetime.fromisoformat(
            _iso(self.ts)).timestamp(), len(tools))
        for tid in tools:
            result = {**_base(session, self.ts + 0.5, self.cwd, sidechain), "type": "user",
                      "message": {"role": "user", "content": [
                          {"tool_use_id": tid, "type": "tool_result", "is_error": False,
                           "content": (_FILLER * 8)[: r.randint(500, 20_000)]}]},
                      "toolUseResult": {"stdout": _FILLER[: r.randint(100, 3000)], "stderr": ""}}
            lines.append(json.dumps(result, separators=(",", ":")))
        if r.random() < 0.05:
            synth = {**_base(session, self.ts + 1, self.cwd, sidechain), "type": "assistant",
                     "message": {"id": f"msg_{uuid.uuid4().hex[:24]}", "model": "<synthetic>", "role": "assistant",
                                 "content": [{"type": "text", "text": "No response requested."}],
                                 "usage": {"input_tokens": 0, "output_tokens": 0}}}
            lines.append(json.dumps(synth, separators=(",", ":")))
        return lines


def write_tree(root: Path, target_bytes: int, seed: int = 7, start: float = 1_790_000_000.0,
               turns_per_session: int = 40) -> dict[str, Response]:
    """Write projects/<encoded cwd>/<session>.jsonl (+ subagents, + forks) until `target_bytes`."""
    rng = random.Random(seed)
    truth: dict[str, Response] = {}
    written = 0
    ts = start
    while written < target_bytes:
        cwd = f"/home/dev/{rng.choice(('api', 'web', 'infra', 'docs'))}"
        folder = root / "projects" / cwd.replace("/", "-")
        folder.mkdir(parents=True, exist_ok=True)
        session = str(uuid.UUID(int=rng.getrandbits(128)))
        w = SessionWriter(rng, ts, cwd)
        model = rng.choice(MODELS)
        main: list[str] = []
        for _ in range(turns_per_session):
            main += w.turn(session, False, model)
        text = "\n".join(main) + "\n"
        (folder / f"{session}.jsonl").write_text(text)
        written += len(text)
        if rng.random() < 0.5:
            sub: list[str] = []
            for _ in range(turns_per_session // 4):
                sub += w.turn(session, True, "claude-haiku-4-5")
            sub_text = "\n".join(sub) + "\n"
            d = folder / session / "subagents"
            d.mkdir(parents=True, exist_ok=True)
            (d / f"agent-a{rng.getrandbits(48):012x}.jsonl").write_text(sub_text)
            written += len(sub_text)
        if rng.random() < 0.2:
            # a fork: the old lines again (same ids) under a new session, then its own turns
            fork = str(uuid.UUID(int=rng.getrandbits(128)))
            copied = [line.replace(session, fork) for line in main[: len(main) // 2]]
            for _ in range(turns_per_session // 4):
                copied += w.turn(fork, False, model)
            fork_text = "\n".join(copied) + "\n"
            (folder / f"{fork}.jsonl").write_text(fork_text)
            written += len(fork_text)
        truth.update(w.truth)
        ts = w.ts + rng.uniform(600, 20_000)
    return truth
