"""The transcript parser against real Claude Code transcripts (2.1.197 and 2.1.330)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from guard.adapters.claude_transcript import (
    SessionGate,
    TranscriptParser,
    encode_project_dir,
    usage_key,
)
from guard.tail import JsonlFollower
from guard.usage import UsageEvent

FIX = Path(__file__).resolve().parent.parent / "fixtures" / "claude_code"
SUB_SESSION = "368292a3-8d10-4471-bc60-d2565478aa01"


def records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


class Collector:
    def __init__(self) -> None:
        self.by_key: dict[str, UsageEvent] = {}
        self.emitted: list[UsageEvent] = []

    def __call__(self, ev: UsageEvent) -> None:
        self.emitted.append(ev)
        self.by_key[ev.key] = self.by_key[ev.key].merge(ev) if ev.key in self.by_key else ev

    def total(self, field: str) -> int:
        return sum(getattr(e, field) for e in self.by_key.values())


def parse(*paths: Path) -> Collector:
    c = Collector()
    p = TranscriptParser(c)
    for path in paths:
        for r in records(path):
            p.feed(r)
    return c


def naive_output_sum(path: Path) -> int:
    return sum(r["message"]["usage"]["output_tokens"] for r in records(path) if r.get("type") == "assistant")


def test_one_event_per_response_where_a_naive_sum_over_counts() -> None:
    path = FIX / "transcript-2.1.330-tool-roundtrip.jsonl"
    c = parse(path)
    assert set(c.by_key) == {"req:req_fake0001", "req:req_fake0002"}
    assert c.total("output_tokens") == 51 + 52
    assert naive_output_sum(path) == 51 * 3 + 52  # three lines (thinking, text, tool_use) for one response
    assert c.total("input_tokens") == 1001 + 1002
    assert c.total("cache_read_tokens") == 6000
    assert c.total("cache_write_tokens") == 400
    assert c.total("steps") == 1  # one tool_use block
    assert {e.model for e in c.by_key.values()} == {"claude-opus-5-5"}


def test_older_version_transcript() -> None:
    c = parse(FIX / "transcript-2.1.197-tool-roundtrip.jsonl")
    assert c.total("output_tokens") == 103
    assert c.total("steps") == 1


def test_subagent_files_are_counted_and_tool_calls_are_steps() -> None:
    root = FIX / "subagent-session"
    files = sorted(root.rglob("*.jsonl"))
    assert len(files) == 2
    c = parse(*files)
    assert set(c.by_key) == {"req:req_fake0002", "req:req_fake0003", "req:req_fake0004"}
    assert c.total("input_tokens") == 1002 + 1003 + 1004
    assert c.total("steps") == 1  # the Agent call


def test_steps_are_running_counts_of_distinct_tool_ids() -> None:
    c = Collector()
    p = TranscriptParser(c)
    base = {"type": "assistant", "requestId": "r1", "sessionId": "s"}
    usage = {"input_tokens": 10, "output_tokens": 1}
    for block in ({"type": "text", "text": "a"}, {"type": "tool_use", "id": "t1", "name": "Bash", "input": {}},
                  {"type": "tool_use", "id": "t2", "name": "Read", "input": {}},
                  {"type": "tool_use", "id": "t2", "name": "Read", "input": {}}):
        p.feed(base | {"message": {"id": "m1", "model": "claude-sonnet-4-5", "usage": usage, "content": [block]}})
    assert [e.steps for e in c.emitted] == [0, 1, 2]  # the repeated line changes nothing: not re-emitted
    assert c.by_key["req:r1"].steps == 2


def test_placeholder_counts_on_early_lines_are_max_merged() -> None:
    c = Collector()
    p = TranscriptParser(c)
    for out in (1, 1, 77):
        p.feed({"type": "assistant", "requestId": "r9", "sessionId": "s",
                "message": {"id": "m9", "model": "m", "usage": {"input_tokens": 5, "output_tokens": out},
                            "content": [{"type": "text", "text": "x"}]}})
    assert c.by_key["req:r9"].output_tokens == 77
    assert c.emitted[-1].output_tokens == 77


def test_synthetic_lines_are_not_api_calls() -> None:
    c = Collector()
    p = TranscriptParser(c)
    p.feed({"type": "assistant", "sessionId": "s", "message": {
        "id": "syn", "model": "<synthetic>", "usage": {"input_tokens": 0, "output_tokens": 0},
        "content": [{"type": "text", "text": "No response requested."}]}})
    assert c.by_key == {}
    assert p.synthetic_skipped == 1


def test_key_falls_back_to_message_id_without_request_id() -> None:
    assert usage_key({"requestId": "req_1", "message": {"id": "msg_1"}}) == "req:req_1"
    assert usage_key({"message": {"id": "msg_1"}}) == "msg:msg_1"
    assert usage_key({"message": "text"}) is None


def test_cache_write_tiers() -> None:
    c = Collector()
    TranscriptParser(c).feed({"type": "assistant", "requestId": "r", "sessionId": "s", "message": {
        "id": "m", "model": "claude-sonnet-4-5", "content": [],
        "usage": {"input_tokens": 3, "output_tokens": 4, "cache_creation_input_tokens": 300,
                  "cache_read_input_tokens": 50,
                  "cache_creation": {"ephemeral_5m_input_tokens": 100, "ephemeral_1h_input_tokens": 200}}}})
    ev = c.by_key["req:r"]
    assert (ev.cache_write_tokens, ev.cache_write_1h_tokens, ev.cache_read_tokens) == (300, 200, 50)


def test_session_gate_holds_foreign_sessions_until_claimed() -> None:
    seen: list[dict[str, Any]] = []
    gate = SessionGate(seen.append, ["mine"])
    gate.feed({"type": "assistant", "sessionId": "mine", "n": 1})
    gate.feed({"type": "assistant", "sessionId": "other", "n": 2})
    gate.feed({"type": "queue-operation", "sessionId": "later", "n": 3})  # not usage: never held
    gate.feed({"type": "assistant", "sessionId": "later", "n": 4})
    assert [r["n"] for r in seen] == [1]
    gate.claim("later")  # e.g. the SessionStart hook of a --continue session
    assert [r["n"] for r in seen] == [1, 4]
    gate.feed({"type": "user", "sessionId": "later", "n": 5})
    assert [r["n"] for r in seen] == [1, 4, 5]


def test_project_dir_encoding() -> None:
    assert encode_project_dir("/home/dev/my project.v2") == "-home-dev-my-project-v2"


def test_resumed_session_counts_only_lines_written_after_launch(tmp_path: Path) -> None:
    """The follower the adapter uses: an old transcript is followed from its end."""
    proj = tmp_path / "projects" / "-p"
    proj.mkdir(parents=True)
    old = records(FIX / "transcript-2.1.330-tool-roundtrip.jsonl")
    session = tmp_path / "projects" / "-p" / "22222222-3333-4444-5555-666666666666.jsonl"
    session.write_text("".join(json.dumps(r) + "\n" for r in old))
    other = proj / "other.jsonl"  # another Claude Code in the same folder
    other.write_text("")

    c = Collector()
    parser = TranscriptParser(c)
    gate = SessionGate(parser.feed, ["22222222-3333-4444-5555-666666666666"])
    follower = JsonlFollower(proj, "*.jsonl", lambda p, o: gate.feed(o), recursive=True, from_start=False)
    follower.poll()
    assert c.by_key == {}

    new = {"type": "assistant", "requestId": "req_new", "sessionId": "22222222-3333-4444-5555-666666666666",
           "message": {"id": "msg_new", "model": "claude-sonnet-4-5", "content": [],
                       "usage": {"input_tokens": 7, "output_tokens": 8}}}
    foreign = dict(new, requestId="req_foreign", sessionId="99999999-0000-0000-0000-000000000000")
    with session.open("a") as f:
        f.write(json.dumps(new) + "\n")
    with other.open("a") as f:
        f.write(json.dumps(foreign) + "\n")
    # a sub-agent file created after launch is read from its start
    sub = proj / "22222222-3333-4444-5555-666666666666" / "subagents"
    sub.mkdir(parents=True)
    shutil.copy(FIX / "subagent-session" / SUB_SESSION / "subagents" / "agent-a3287780a40fd4d77.jsonl",
                sub / "agent-x.jsonl")
    gate.claim(SUB_SESSION)
    follower.poll()
    assert set(c.by_key) == {"req:req_new", "req:req_fake0003"}
