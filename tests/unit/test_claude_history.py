"""History: a forked session's copied lines are not this run's spending."""
from __future__ import annotations

from guard.adapters.claude_transcript import History, TranscriptParser, record_time


def line(req: str, ts: str, sid: str = "new") -> dict[str, object]:
    return {"type": "assistant", "requestId": req, "sessionId": sid, "timestamp": ts,
            "message": {"id": "msg_" + req, "model": "claude-sonnet-4-5",
                        "usage": {"input_tokens": 10, "output_tokens": 5}}}


def test_copied_lines_are_skipped_by_key_and_by_time() -> None:
    launch = record_time({"timestamp": "2026-12-01T10:00:00.000Z"})
    assert launch is not None
    h = History(since=launch)
    h.learn(line("r1", "2026-12-01T10:00:05.000Z", sid="source"))   # a clock ahead: the key still says old
    got = []
    parser = TranscriptParser(got.append)
    for rec in (line("r1", "2026-12-01T10:00:05.000Z"),       # copied, known key
                line("r0", "2026-12-01T09:59:58.000Z"),       # copied, stamped before launch
                line("r2", "2026-12-01T10:00:07.500Z"),       # new
                {"type": "user", "sessionId": "new", "timestamp": "2026-12-01T09:00:00Z", "message": {}}):
        if h.is_new(rec):
            parser.feed(rec)
    assert [e.key for e in got] == ["req:r2"]
    assert h.skipped == 3


def test_no_history_passes_everything() -> None:
    h = History()
    assert h.is_new(line("r1", "2020-01-01T00:00:00Z"))
    assert h.is_new({"type": "assistant", "timestamp": "not a time"})
