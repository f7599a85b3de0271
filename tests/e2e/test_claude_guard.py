"""`guard claude -p ...` with the real Claude Code against the fake Anthropic server."""
from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from guard.ledger import open_ledger
from tests.e2e.claude_env import MODEL, ClaudeWorld, make_world, truth_usage
from tests.fakes.anthropic_server import (
    FakeAnthropic,
    Reply,
    Request,
    Text,
    ToolUse,
    bash_loop,
    reply,
    session_with_subagents,
    text_answer,
)
from tests.helpers import pids_alive, wait_until

pytestmark = pytest.mark.e2e

BASE = ("--model", MODEL, "--allowedTools", "Bash", "Agent")


@pytest.fixture
def fake() -> Iterator[FakeAnthropic]:
    with FakeAnthropic() as f:
        yield f


@pytest.fixture
def world(tmp_path: Path, fake: FakeAnthropic) -> ClaudeWorld:
    return make_world(tmp_path, fake)


@pytest.mark.parametrize("ceiling,flags", [
    ("usd", ["--max-usd", "0.03"]),
    ("tokens", ["--max-tokens", "20k"]),
    ("steps", ["--max-steps", "4"]),
    ("time", ["--max-time", "8s"]),
])
def test_runaway_loop_is_halted_at_each_ceiling(world: ClaudeWorld, tag: str, ceiling: str, flags: list[str]) -> None:
    # a different command every turn, so the stuck-loop detector stays out of it
    world.fake.script = bash_loop(f"sleep 0.2; echo {tag}", vary=True)
    out = world.guard(*flags, "claude", "-p", f"loop forever {tag}", *BASE)
    assert out.returncode == 124, out.stderr
    [run] = world.runs()
    assert run["status"] == "halted" and run["tool"] == "claude"
    assert run["halt"]["ceiling"] == ceiling, run["halt"]
    assert run["usage"]["steps"] >= 1
    assert run["accuracy"] == "exact"
    # the ceiling really was reached, and nothing beyond what the server answered was counted:
    # every response it began bills its input, the last one too when the halt's signal lands
    # after its usage went out but before the fake's end of it
    begun_input = sum(s.usage.input_tokens for s in world.fake.served)
    used = run["usage"]
    assert used["input_tokens"] <= begun_input
    if ceiling == "tokens":
        tokens = sum(used[k] for k in ("input_tokens", "output_tokens", "cache_write_tokens", "cache_read_tokens"))
        assert tokens >= 20_000
    if ceiling == "usd":
        assert used["cost_usd"] >= 0.03
    if ceiling == "steps":
        assert used["steps"] >= 4
    assert pids_alive(tag) == []


def test_stuck_loop_halts_before_the_budget(world: ClaudeWorld, tag: str) -> None:
    world.fake.script = bash_loop(f"echo {tag}")  # the very same call every turn
    out = world.guard("--max-usd", "50", "claude", "-p", f"loop {tag}", *BASE)
    assert out.returncode == 124, out.stderr
    [run] = world.runs()
    assert run["halt"]["ceiling"] == "stuck_loop"
    assert "5 times in a row" in run["halt"]["message"]
    # decided on the 5th repeat as guard read it (a loaded machine reads the transcript later, so
    # the step count at the decision varies); after it at most the response in flight
    halted_at = int(re.match(r"halted at step (\d+):", run["halt"]["message"]).group(1))
    assert 5 <= halted_at <= run["usage"]["steps"] <= halted_at + 1
    assert pids_alive(tag) == []


def test_failing_command_repeated_is_a_stuck_loop(world: ClaudeWorld, tag: str) -> None:
    world.fake.script = lambda req: reply(ToolUse("Bash", {"command": f"false {tag}", "description": str(req.n)}))
    out = world.guard("claude", "-p", f"fail {tag}", *BASE, "--max-turns", "10")
    assert out.returncode == 124, out.stderr
    [run] = world.runs()
    assert run["halt"]["ceiling"] == "stuck_loop" and "failed 3 times" in run["halt"]["message"]


def test_ledger_equals_the_servers_truth_for_a_session_with_subagents(world: ClaudeWorld) -> None:
    world.fake.script = session_with_subagents(turns=17, subagents=3, sub_turns=3)
    out = world.guard("--max-usd", "100", "claude", "-p", "do the scripted job", *BASE, timeout=240)
    assert out.returncode == 0, out.stderr
    [run] = world.runs()
    served = world.fake.completed()
    assert len(served) >= 28  # ~30: the main loop, 3 sub-agents, their wake-ups
    assert {s.agent_loop for s in served} == {True}  # -p makes no title call: nothing invisible
    truth = truth_usage(world.fake.served)
    used = run["usage"]
    for k in ("input_tokens", "output_tokens", "cache_write_tokens", "cache_read_tokens", "steps"):
        assert used[k] == truth[k], k
    assert used["cost_usd"] == pytest.approx(truth["cost_usd"], abs=1e-6)
    assert run["status"] == "completed"


def test_users_own_hooks_still_run(world: ClaudeWorld, tag: str) -> None:
    world.fake.script = bash_loop(f"echo {tag}", vary=True)
    mine_pre, mine_post = world.root / "user-pre.log", world.root / "user-post.log"
    (world.config / "settings.json").write_text(json.dumps({"hooks": {"PreToolUse": [
        {"matcher": "Bash", "hooks": [{"type": "command", "command": f"echo pre >> {mine_pre}"}]}]}}))
    flag_settings = {"hooks": {"PostToolUse": [
        {"matcher": "*", "hooks": [{"type": "command", "command": f"echo post >> {mine_post}"}]}]}}
    out = world.guard("--max-steps", "3", "claude", "-p", f"go {tag}", *BASE,
                      "--settings", json.dumps(flag_settings))
    assert out.returncode == 124, out.stderr
    assert world.runs()[0]["halt"]["ceiling"] == "steps"
    assert mine_pre.read_text().count("pre") >= 2
    assert mine_post.read_text().count("post") >= 2


def test_resumed_session_counts_only_new_usage_and_not_other_sessions(world: ClaudeWorld) -> None:
    """The earlier part of a resumed session was paid for before this run; another Claude Code
    working in the same folder at the same time is not this run's spending."""
    marker_by_n: dict[int, str] = {}

    def script(req: Request) -> Reply:
        marker_by_n[req.n] = "other" if "OTHER" in req.user_text else "guarded"
        if "SLOW" in req.last_user_text:
            return reply(Text("slow answer"), chunk_delay=0.2)
        return reply(Text("fine"))

    world.fake.script = script
    first = world.claude_direct("-p", "first part", "--model", MODEL, "--output-format", "json")
    assert first.returncode == 0, first.stderr
    session = json.loads(first.stdout)["session_id"]
    before = len(world.fake.completed())

    other: dict[str, object] = {}

    def run_other() -> None:
        # starts while the guarded run is streaming its slow answer
        wait_until(lambda: len(world.fake.requests) > before, timeout=60, message="guarded request")
        other["out"] = world.claude_direct("-p", "OTHER session", "--model", MODEL)

    t = threading.Thread(target=run_other)
    t.start()
    out = world.guard("claude", "-p", "SLOW continue", "--resume", session, "--model", MODEL)
    t.join(timeout=120)
    assert out.returncode == 0, out.stderr
    assert other["out"].returncode == 0  # type: ignore[attr-defined]
    mine = [s for s in world.fake.completed()[before:] if marker_by_n.get(s.n) == "guarded"]
    assert len(mine) == 1 and len(world.fake.completed()) - before == 2
    [run] = world.runs()
    truth = truth_usage(mine)
    assert run["usage"]["input_tokens"] == truth["input_tokens"]
    assert run["usage"]["output_tokens"] == truth["output_tokens"]


def test_continue_learns_the_session_from_the_hook(world: ClaudeWorld) -> None:
    world.fake.script = text_answer("ok")
    assert world.claude_direct("-p", "first", "--model", MODEL).returncode == 0
    assert world.claude_direct("-p", "second", "--model", MODEL).returncode == 0
    before = len(world.fake.completed())
    out = world.guard("claude", "-p", "third", "--continue", "--model", MODEL)
    assert out.returncode == 0, out.stderr
    [run] = world.runs()
    truth = truth_usage(world.fake.completed()[before:])
    assert run["usage"]["input_tokens"] == truth["input_tokens"] > 0


def test_print_mode_gets_the_inner_fences(world: ClaudeWorld, tag: str) -> None:
    world.fake.script = text_answer("ok")
    out = world.guard("--max-usd", "5", "--max-steps", "9", "--max-tokens", "900k", "claude",
                      "-p", f"hi {tag}", "--model", MODEL, "--output-format", "json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["subtype"] == "success"
    body = world.fake.requests[0].body
    assert "output_config" not in body  # --task-budget is opt-in
    [run] = world.runs()
    argv_seen = run["argv"]
    assert "--max-budget-usd" not in argv_seen  # the ledger keeps the user's own arguments


def test_task_budget_opt_in_reaches_the_api(world: ClaudeWorld) -> None:
    world.fake.script = text_answer("ok")
    cfg = world.home / "config.yaml"
    cfg.write_text("claude:\n  task_budget: true\n")
    env = world.env(GUARD_CONFIG=str(cfg))
    out = world.guard("--max-tokens", "300k", "claude", "-p", "hi", "--model", MODEL, env=env)
    assert out.returncode == 0, out.stderr
    budget = world.fake.requests[0].body.get("output_config", {}).get("task_budget")
    assert budget == {"type": "tokens", "total": 300_000}


def test_otlp_and_transcript_count_each_request_once(world: ClaudeWorld, tag: str) -> None:
    world.fake.script = bash_loop(f"echo {tag}", vary=True)
    out = world.guard("--max-steps", "5", "claude", "-p", f"go {tag}", *BASE)
    assert out.returncode == 124, out.stderr
    [run] = world.runs()
    events = [ev for ev, _cost, _known in open_ledger(None, world.home).run_events(run["id"])]
    keys = [ev.key for ev in events]
    assert len(keys) == len(set(keys)) and len(keys) >= 5
    assert set(keys) <= {f"req:{s.request_id}" for s in world.fake.completed()}
    truth = truth_usage([s for s in world.fake.completed() if f"req:{s.request_id}" in keys])
    assert run["usage"]["input_tokens"] == truth["input_tokens"]


def test_otlp_alone_meters_a_session_without_transcript(world: ClaudeWorld, tag: str) -> None:
    """--no-session-persistence writes no transcript: the OpenTelemetry receiver is then the
    only signal, and it alone must give the exact figures."""
    world.fake.script = session_with_subagents(turns=4, subagents=1, sub_turns=2)
    out = world.guard("claude", "-p", f"go {tag}", *BASE, "--no-session-persistence")
    assert out.returncode == 0, out.stderr
    assert not list(world.config.glob("projects/*/*.jsonl"))
    [run] = world.runs()
    events = [ev for ev, _cost, _known in open_ledger(None, world.home).run_events(run["id"])]
    assert events and {ev.source for ev in events} == {"otel"}
    truth = truth_usage(world.fake.completed())
    for k in ("input_tokens", "output_tokens", "cache_write_tokens", "cache_read_tokens"):
        assert run["usage"][k] == truth[k], k
