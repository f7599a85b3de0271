"""The aider adapter against real files (no aider): launch, analytics log, fallbacks, accuracy."""
from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from guard.adapters.aider import AiderAdapter
from guard.adapters.base import WRAPPER_MARKER, LaunchContext, Remaining
from guard.usage import UsageEvent
from tests.helpers import wait_until


class RecordingSink:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.events: list[UsageEvent] = []
        self.notices: list[tuple[str, str]] = []
        self.accuracy: list[str] = []

    def emit(self, event: UsageEvent) -> None:
        with self.lock:
            self.events.append(event)

    def notice(self, key: str, message: str) -> None:
        with self.lock:
            self.notices.append((key, message))

    def halt(self, ceiling: str, message: str) -> None:
        raise AssertionError("the aider adapter never halts by itself")

    def set_accuracy(self, accuracy: str) -> None:
        with self.lock:
            self.accuracy.append(accuracy)

    def calls(self) -> dict[str, UsageEvent]:
        with self.lock:
            out: dict[str, UsageEvent] = {}
            for ev in self.events:
                out[ev.key] = out[ev.key].merge(ev) if ev.key in out else ev
            return out


@pytest.fixture()
def world(tmp_path: Path) -> dict[str, Path]:
    home = tmp_path / "home"
    home.mkdir()
    repo = tmp_path / "repo"
    (repo / ".git").mkdir(parents=True)
    bin_real = tmp_path / "bin"
    bin_real.mkdir()
    wrappers = tmp_path / "wrappers"
    wrappers.mkdir()
    for d, body in ((bin_real, "#!/bin/sh\nexit 0\n"),
                    (wrappers, f"#!/bin/sh\n# {WRAPPER_MARKER.decode()}\nexec guard aider \"$@\"\n")):
        exe = d / "aider"
        exe.write_text(body)
        exe.chmod(0o755)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    return {"home": home, "repo": repo, "bin": bin_real, "wrappers": wrappers, "run": run_dir}


def ctx(world: dict[str, Path], args: list[str], env: dict[str, str] | None = None, **kw: Any) -> LaunchContext:
    base_env = {"PATH": f"{world['wrappers']}{os.pathsep}{world['bin']}", "HOME": str(world["home"])}
    return LaunchContext(
        run_id="r1", tool_args=args, env={**base_env, **(env or {})}, run_dir=world["run"],
        state_path=world["run"] / "state.json", cwd=world["repo"], started_at=time.time(),
        interactive=False, remaining=Remaining(), wrapper_dirs=kw.pop("wrapper_dirs", ()), **kw)


def append(path: Path, *records: dict[str, Any]) -> None:
    with path.open("a") as f:
        for r in records:
            f.write(json.dumps(r) + "\n")


START = {"event": "message_send_starting", "properties": {}}


def SEND(prompt: int, completion: int, cost: float) -> dict[str, Any]:
    return {"event": "message_send", "properties": {"main_model": "openai/REDACTED", "prompt_tokens": prompt,
                                                     "completion_tokens": completion, "cost": cost}}


def test_prepare_finds_the_real_aider_passes_args_and_points_the_log_at_the_run_dir(world: dict[str, Path]) -> None:
    a = AiderAdapter()
    args = ["--model", "openai/gpt-4o", "--message", "hi there", "--no-stream"]
    launch = a.prepare(ctx(world, args))
    assert launch.argv == [str(world["bin"] / "aider"), *args]   # the wrapper script is skipped
    assert launch.env["AIDER_ANALYTICS_LOG"] == str(world["run"] / "aider-analytics.jsonl")
    assert "AIDER_ANALYTICS" not in launch.env            # analytics itself stays as the user has it
    assert not (world["home"] / ".aider").exists()


def test_users_own_analytics_log_is_read_from_its_end_and_left_alone(world: dict[str, Path]) -> None:
    log = world["repo"] / "mine.jsonl"
    append(log, START, SEND(999, 9, 0.5))                    # an earlier session's calls
    a = AiderAdapter()
    launch = a.prepare(ctx(world, ["--analytics-log", "mine.jsonl", "--no-stream"]))
    assert "AIDER_ANALYTICS_LOG" not in launch.env
    sink = RecordingSink()
    a.start(sink)
    try:
        append(log, {"event": "launched", "properties": {}}, START, SEND(1000, 10, 0.01))
        wait_until(lambda: "aider:call:1" in sink.calls() and not sink.calls()["aider:call:1"].interrupted,
                   5, message="the new call")
    finally:
        a.close()
    calls = sink.calls()
    assert list(calls) == ["aider:call:1"]
    assert (calls["aider:call:1"].input_tokens, calls["aider:call:1"].cost_usd) == (1000, 0.01)
    assert sink.accuracy == ["exact"] and sink.notices == []


def test_analytics_primary_terminal_and_history_cross_check_only(world: dict[str, Path]) -> None:
    a = AiderAdapter()
    a.prepare(ctx(world, ["--no-stream", "--model", "openai/gpt-4o"]))
    log = world["run"] / "aider-analytics.jsonl"
    hist = world["repo"] / ".aider.chat.history.md"
    sink = RecordingSink()
    a.start(sink)
    append(log, {"event": "launched", "properties": {}}, START)
    wait_until(lambda: "aider:call:1" in sink.calls(), 5, message="the step")
    assert sink.calls()["aider:call:1"].steps == 1
    append(log, SEND(12345, 678, 0.0376425))
    a.feed_output(b"Hello.\r\n\r\nTokens: 12k sent, 678 received. Cost: $0.04 message, $0.04 session.\r\n")
    with hist.open("a") as f:
        f.write("> Tokens: 12k sent, 678 received. Cost: $0.04 message, $0.04 session.  \n")
    a.poll()
    a.close()
    calls = sink.calls()
    assert list(calls) == ["aider:call:1"]            # the printed copies did not add a call
    ev = calls["aider:call:1"]
    assert (ev.input_tokens, ev.output_tokens, ev.cost_usd, ev.steps) == (12345, 678, 0.0376425, 1)
    assert not ev.interrupted and not ev.estimated and ev.model == "openai/gpt-4o"
    assert a.mismatches == [] and len(a.reports["terminal"]) == len(a.reports["history"]) == 1
    assert sink.accuracy == ["exact"]


def test_without_the_log_terminal_and_history_count_each_reply_once(world: dict[str, Path]) -> None:
    # a project .env redirects aider's log somewhere guard does not look... and it is never written
    missing = world["repo"].parent / "no-such-dir"
    (world["repo"] / ".env").write_text(f"AIDER_ANALYTICS_LOG={missing}/x.jsonl\n")
    a = AiderAdapter()
    a.prepare(ctx(world, ["--no-stream"]))
    hist = world["repo"] / ".aider.chat.history.md"
    hist.write_text("> Tokens: 99k sent, 1 received.  \n")       # an earlier session: not ours
    a._history.offset = hist.stat().st_size  # type: ignore[union-attr]  # as if prepared after it
    sink = RecordingSink()
    a.start(sink)
    a.feed_output(b"Tokens: 14k sent, 2.0k cache write, 3.0k cache hit, 678 received.\r\n"
                  b"Cost: $0.03 message, $0.03 session.\r\n")
    a.feed_output(b"Tokens: 12k sent, 5 received.\r\n")           # an unpriced reply
    with hist.open("a") as f:
        f.write("> Tokens: 14k sent, 2.0k cache write, 3.0k cache hit, 678 received.\n"
                "Cost: $0.03 message, $0.03 session.  \n> Tokens: 12k sent, 5 received.  \n")
    a.poll()
    a.close()
    assert not missing.exists()          # guard never creates the user's folders
    calls = sink.calls()
    assert list(calls) == ["aider:reply:0", "aider:reply:1"]
    first, second = calls["aider:reply:0"], calls["aider:reply:1"]
    assert (first.input_tokens, first.cache_write_tokens, first.cache_read_tokens, first.output_tokens) == \
        (12000, 2000, 3000, 678)
    assert first.cost_usd == 0.03 and first.steps == 1 and first.estimated
    assert second.cost_usd is None and second.input_tokens == 12000 and second.steps == 1
    assert first.source == "aider_output"


def test_streaming_is_announced_once_as_estimated(world: dict[str, Path]) -> None:
    a = AiderAdapter()
    a.prepare(ctx(world, []))
    sink = RecordingSink()
    a.start(sink)
    a.feed_output(b"Commit 0dff7f8 feat: fake commit message\r\n")
    a.close()
    assert sink.accuracy == ["estimated"]
    [(_key, msg)] = [n for n in sink.notices if n[0] == "aider:estimates"][:1]
    assert "--meter proxy" in msg and "--no-stream" in msg


def test_no_stream_turns_estimated_when_aider_makes_calls_it_never_counts(world: dict[str, Path]) -> None:
    a = AiderAdapter()
    a.prepare(ctx(world, ["--no-stream"]))
    sink = RecordingSink()
    a.start(sink)
    a.feed_output(b"Applied edit to hello.py\r\nCommit 0dff7f8 feat: fake commit message\r\n")
    a.close()
    assert sink.accuracy == ["exact", "estimated"]
    assert any("commit messages" in m for _, m in sink.notices)


def test_interrupted_call_recorded_at_close(world: dict[str, Path]) -> None:
    a = AiderAdapter()
    a.prepare(ctx(world, ["--no-stream"]))
    log = world["run"] / "aider-analytics.jsonl"
    sink = RecordingSink()
    a.start(sink)
    append(log, {"event": "launched", "properties": {}}, START, SEND(5000, 50, 0.01), START)
    a.close()
    calls = sink.calls()
    assert [c.interrupted for c in calls.values()] == [False, True]
    assert calls["aider:call:2"].input_tokens == 5000 and calls["aider:call:2"].estimated
    assert sink.accuracy[-1] == "estimated"


def test_proxy_metering_leaves_calls_and_steps_to_the_proxy(world: dict[str, Path]) -> None:
    a = AiderAdapter()
    a.prepare(ctx(world, ["--no-stream"], env={"OPENAI_BASE_URL": "http://127.0.0.1:9/s3cret/aider/openai"},
                  meter="proxy"))
    log = world["run"] / "aider-analytics.jsonl"
    sink = RecordingSink()
    a.start(sink)
    append(log, {"event": "launched", "properties": {}}, START, SEND(5000, 50, 0.01))
    a.close()
    # the proxy counts the call and its step as the request passes (guard.proxy.steps); aider's
    # log would only double it, and late
    assert sink.calls() == {} and sink.notices == [] and sink.accuracy == []


def test_help_is_not_a_session(world: dict[str, Path]) -> None:
    a = AiderAdapter()
    launch = a.prepare(ctx(world, ["--help"]))
    assert "AIDER_ANALYTICS_LOG" not in launch.env
    sink = RecordingSink()
    a.start(sink)
    a.close()
    assert sink.events == [] and sink.accuracy == []


def test_stop_sequence_interrupts_then_exits_then_terminates() -> None:
    seq = AiderAdapter().stop_sequence()
    assert [s for s, _ in seq] == [signal.SIGINT, signal.SIGINT, signal.SIGTERM, signal.SIGKILL]
    assert seq[0][1] < 2.0   # the second SIGINT must come within aider's 2 s double-^C window
