"""The follower against what agents and editors really do to files."""
import json
import os
from pathlib import Path

import pytest

from guard.tail import MAX_LINE_BYTES, JsonlFollower


def follower(tmp_path: Path, **kw):
    got: list[dict] = []
    f = JsonlFollower(tmp_path, "*.jsonl", lambda p, o: got.append(o), **kw)
    return f, got


def test_partial_line_waits_for_its_newline(tmp_path):
    path = tmp_path / "u.jsonl"
    f, got = follower(tmp_path)
    path.write_text('{"a": 1')
    f.poll()
    assert got == []
    with open(path, "a") as fh:
        fh.write('}\n{"a": 2}\n')
    f.poll()
    assert got == [{"a": 1}, {"a": 2}]


def test_garbage_is_skipped_and_counted(tmp_path):
    path = tmp_path / "u.jsonl"
    big = json.dumps({"x": "y" * (MAX_LINE_BYTES + 10)})
    path.write_bytes(b'{"ok": 1}\n{not json\n\xff\xfe\n[1,2]\n' + big.encode() + b'\n{"ok": 2}\n')
    f, got = follower(tmp_path)
    f.poll()
    assert got == [{"ok": 1}, {"ok": 2}]
    s = f.skipped
    assert (s.malformed, s.not_utf8, s.not_object, s.too_long) == (1, 1, 1, 1)


def test_ten_megabyte_line_written_in_pieces_is_skipped(tmp_path):
    path = tmp_path / "u.jsonl"
    f, got = follower(tmp_path)
    with open(path, "wb") as fh:
        for _ in range(10):
            fh.write(b"x" * (1 << 20))
            fh.flush()
            f.poll()
        fh.write(b'\n{"after": true}\n')
    f.poll()
    assert got == [{"after": True}] and f.skipped.too_long == 1


def test_truncation_restarts_from_zero(tmp_path):
    path = tmp_path / "u.jsonl"
    path.write_text('{"n": 1}\n{"n": 2}\n')
    f, got = follower(tmp_path)
    f.poll()
    path.write_text('{"n": 3}\n')  # shorter: truncated and rewritten
    f.poll()
    assert [o["n"] for o in got] == [1, 2, 3]


def test_replacement_by_rename_is_followed(tmp_path):
    path = tmp_path / "u.jsonl"
    path.write_text('{"n": 1}\n')
    f, got = follower(tmp_path)
    f.poll()
    new = tmp_path / "new.tmp"
    new.write_text('{"n": 2}\n{"n": 3}\n{"n": 4}\n')
    os.replace(new, path)
    f.poll()
    assert [o["n"] for o in got] == [1, 2, 3, 4]


def test_from_end_skips_what_was_there_before(tmp_path):
    path = tmp_path / "old.jsonl"
    path.write_text('{"n": 1}\n')
    f, got = follower(tmp_path, from_start=False)
    with open(path, "a") as fh:
        fh.write('{"n": 2}\n')
    (tmp_path / "new.jsonl").write_text('{"n": 3}\n')
    f.poll()
    assert sorted(o["n"] for o in got) == [2, 3]


def test_recursive_finds_subagent_files(tmp_path):
    sub = tmp_path / "s1" / "subagents"
    sub.mkdir(parents=True)
    (sub / "agent-x.jsonl").write_text('{"n": 1}\n')
    f, got = follower(tmp_path, recursive=True)
    f.poll()
    assert got == [{"n": 1}]


@pytest.mark.parametrize("inotify", [True, False])
def test_watcher_delivers_without_polling(tmp_path, inotify):
    from tests.helpers import wait_until

    path = tmp_path / "u.jsonl"
    path.touch()
    f, got = follower(tmp_path, use_inotify=inotify)
    f.start()
    try:
        assert f.watch_mode == ("inotify" if inotify else "polling")
        with open(path, "a") as fh:
            fh.write('{"n": 1}\n')
        wait_until(lambda: got, timeout=5, message="the watcher to read the line")
    finally:
        f.stop()


def test_last_line_without_newline_counts_at_stop(tmp_path):
    path = tmp_path / "u.jsonl"
    path.write_text('{"n": 1}')
    f, got = follower(tmp_path)
    f.poll()
    assert got == []
    f.stop()
    assert got == [{"n": 1}]


def test_a_failing_callback_in_the_watcher_resurfaces_in_poll(tmp_path):
    """A parser bug in the watcher thread must reach the run loop, not vanish in a log."""
    from tests.helpers import wait_until

    def broken(path, obj):
        raise ValueError("parser bug")

    path = tmp_path / "u.jsonl"
    path.touch()
    f = JsonlFollower(tmp_path, "*.jsonl", broken)
    f.start()
    try:
        with open(path, "a") as fh:
            fh.write('{"n": 1}\n')
        wait_until(lambda: f.failure is not None, timeout=5, message="the watcher to fail")
        with pytest.raises(ValueError, match="parser bug"):
            f.poll()
    finally:
        with pytest.raises(ValueError, match="parser bug"):
            f.stop()


def test_files_beside_the_followed_one_do_not_wake_it(tmp_path):
    """guard writes state.json next to the usage file many times a second: that must cost the
    follower nothing."""
    import time

    from guard.tail import SAFETY_POLL
    from tests.helpers import wait_until

    path = tmp_path / "usage.jsonl"
    path.touch()
    got: list[dict] = []
    f = JsonlFollower(tmp_path, "usage.jsonl", lambda p, o: got.append(o), exact=True)
    f.start()
    try:
        wait_until(lambda: f.rounds >= 1, message="the first read")
        before, t0 = f.rounds, time.monotonic()
        for i in range(300):
            tmp = tmp_path / "state.tmp"
            tmp.write_text(json.dumps({"i": i}))
            os.replace(tmp, tmp_path / "state.json")
        elapsed = time.monotonic() - t0
        assert f.rounds - before <= 1 + elapsed / SAFETY_POLL + 1  # only the safety-net reads
        with open(path, "a") as fh:
            fh.write('{"n": 1}\n')
        wait_until(lambda: got, message="the usage line")
    finally:
        f.stop()


def test_same_size_rewrite_with_identical_content_is_read_again(tmp_path):
    path = tmp_path / "u.jsonl"
    path.write_text('{"n": 1}\n')
    f, got = follower(tmp_path)
    f.poll()
    os.utime(path, ns=(1, 1))  # rewritten: same bytes, a new change time
    path.write_text('{"n": 1}\n')
    f.poll()
    assert got == [{"n": 1}, {"n": 1}]  # read twice; its key (content + ordinal) makes it one call


def test_a_hole_is_skipped_not_read(tmp_path):
    path = tmp_path / "u.jsonl"
    path.write_text('{"n": 1}\n')
    os.truncate(path, 64 << 30)  # 64 GiB of nothing
    with open(path, "a") as fh:
        fh.write('\n{"n": 2}\n')
    f, got = follower(tmp_path)
    f.poll()
    assert got == [{"n": 1}, {"n": 2}] and f.skipped.malformed == 1


def test_watcher_follows_new_subdirectories_of_a_recursive_root(tmp_path):
    """A subagent's transcript appears in a directory made after the follower started: the one
    inotify watcher adds it, and its lines arrive without a poll."""
    from tests.helpers import wait_until

    got: list[dict] = []
    f = JsonlFollower(tmp_path, "*.jsonl", lambda p, o: got.append(o), recursive=True)
    f.start()
    try:
        assert f.watch_mode == "inotify"
        wait_until(lambda: f.rounds >= 1, message="the first read")
        sub = tmp_path / "s1" / "subagents"
        sub.mkdir(parents=True)
        from guard.tail import _Inotify

        def watched() -> bool:
            w = _Inotify._shared
            return w is not None and any(d.endswith(b"/subagents") for d, _ in list(w._dirs.values()))

        wait_until(watched, timeout=5, message="the new directory to be watched")
        with open(sub / "agent-x.jsonl", "a") as fh:
            fh.write('{"n": 1}\n')
        wait_until(lambda: got, timeout=5, message="the line in the new directory")
        with open(sub / "agent-x.jsonl", "a") as fh:
            fh.write('{"n": 2}\n')
        wait_until(lambda: len(got) == 2, timeout=5, message="a later line in the new directory")
    finally:
        f.stop()


def test_truncated_while_the_round_looks_skips_nothing(tmp_path):
    """The writer truncates between the round's fstat and its read, then writes its next line:
    the round saw the old size, and must not take the now empty file for a hole up to it."""
    path = tmp_path / "u.jsonl"
    path.write_text('{"id": "call-1"}\n')

    class Racing(JsonlFollower):
        race = False

        def _rewritten(self, fd, st, state):
            if self.race:   # the writer's truncate lands here, after the round's fstat
                self.race = False
                os.truncate(path, 0)
            return super()._rewritten(fd, st, state)

    got: list[dict] = []
    f = Racing(tmp_path, "*.jsonl", lambda p, o: got.append(o))
    f.poll()
    path.write_text('{"id": "call-2"}\n')   # same length: the size alone says nothing changed
    f.race = True
    f.poll()
    with open(path, "a") as out:
        out.write('{"id": "call-3"}\n')
    f.poll()
    assert [o["id"] for o in got] == ["call-1", "call-3"] and f.skipped.total == 0
