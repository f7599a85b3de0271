"""The hook entry point and the status line command, run the way Claude Code runs them."""
from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path

from guard.adapters import claude_hooks
from guard.adapters.claude_launch import HOOK_SCRIPT, STATUSLINE_SCRIPT, hook_command
from guard.adapters.claude_statusline import guard_line

HALT = {"ceiling": "usd", "message": "halted at step 7: $1.00 task ceiling reached ($1.02 spent)"}
FIX = Path(__file__).resolve().parent.parent / "fixtures" / "claude_code"


def run_hook(event: str, state: Path, sessions: Path, payload: dict[str, object]) -> tuple[int, str]:
    cmd = hook_command(event, state, sessions)
    p = subprocess.run(cmd, shell=True, input=json.dumps(payload), capture_output=True, text=True, timeout=20, check=False)
    return p.returncode, p.stdout


def test_answers_when_halted() -> None:
    pre = claude_hooks.answer("pre", HALT)
    assert pre is not None
    assert pre["continue"] is False and "$1.00 task ceiling" in pre["stopReason"]
    assert pre["hookSpecificOutput"] == {
        "hookEventName": "PreToolUse", "permissionDecision": "deny",
        "permissionDecisionReason": pre["stopReason"]}
    post = claude_hooks.answer("post", HALT)
    assert post == {"continue": False, "stopReason": pre["stopReason"]}
    prompt = claude_hooks.answer("prompt", HALT)
    assert prompt is not None and prompt["decision"] == "block" and "usd" in prompt["reason"]
    assert claude_hooks.answer("session", HALT) is None


def test_no_halt_means_allow() -> None:
    for ev in ("pre", "post", "prompt", "session"):
        assert claude_hooks.answer(ev, None) is None


def test_hook_process_allows_silently_then_denies(tmp_path: Path) -> None:
    state, sessions = tmp_path / "state.json", tmp_path / "sessions.jsonl"
    state.write_text(json.dumps({"halt": None, "totals": {}}))
    payload = {"session_id": "s1", "tool_name": "Bash", "tool_input": {"command": "ls"}}
    assert run_hook("pre", state, sessions, payload) == (0, "")
    state.write_text(json.dumps({"halt": HALT}))
    rc, out = run_hook("pre", state, sessions, payload)
    assert rc == 0
    assert json.loads(out)["hookSpecificOutput"]["permissionDecision"] == "deny"
    rc, out = run_hook("prompt", state, sessions, {"session_id": "s1", "prompt": "more"})
    assert json.loads(out)["decision"] == "block"


def test_hook_fails_open_on_a_broken_state_file(tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    state.write_text("{not json")
    assert run_hook("pre", state, tmp_path / "s.jsonl", {}) == (0, "")
    assert run_hook("pre", tmp_path / "missing.json", tmp_path / "s.jsonl", {}) == (0, "")


def test_session_start_records_the_session(tmp_path: Path) -> None:
    state, sessions = tmp_path / "state.json", tmp_path / "sessions.jsonl"
    state.write_text("{}")
    run_hook("session", state, sessions, {"session_id": "abc", "transcript_path": "/x/abc.jsonl", "source": "clear"})
    run_hook("prompt", state, sessions, {"session_id": "abc", "hook_event_name": "UserPromptSubmit"})
    lines = [json.loads(x) for x in sessions.read_text().splitlines()]
    assert [x["session_id"] for x in lines] == ["abc", "abc"]
    assert lines[0]["source"] == "clear"


def test_hook_imports_nothing_but_the_standard_library() -> None:
    # started with -S -I: a guard import would fail there, and cost startup time anyway
    src = HOOK_SCRIPT.read_text() + STATUSLINE_SCRIPT.read_text()
    assert "import guard" not in src and "from guard" not in src


STATE = {
    "totals": {"cost_usd": 0.42},
    "ceilings": [
        {"name": "usd", "limit": 10, "used": 0.42},
        {"name": "tokens", "limit": 500000, "used": 12345},
        {"name": "steps", "limit": 60, "used": 3},
        {"name": "time", "limit": 1800, "used": 75},
    ],
    "halt": None,
}


def test_status_line_shows_each_ceiling() -> None:
    assert guard_line(STATE) == "guard $0.42/$10.00 · 12k/500k tok · 3/60 steps · 1m15s/30m00s"
    assert guard_line({"totals": {"cost_usd": 1.5}}) == "guard $1.50 spent"
    assert guard_line(STATE | {"halt": HALT}).endswith("\x1b[31mHALTED (usd)\x1b[0m")


def test_status_line_shows_the_latest_soft_warning_in_colour() -> None:
    soft = [{"ceiling": "steps", "message": "75% of the 60-step task ceiling (45 used)"},
            {"ceiling": "usd", "message": "75% of the $2.00 task ceiling ($1.50 spent)"}]
    line = guard_line(STATE | {"soft": soft})
    assert line.endswith(" · \x1b[33m⚠ 75% of the $2.00 task ceiling ($1.50 spent)\x1b[0m")
    assert guard_line(STATE | {"soft": [{"ceiling": "usd"}, "junk"]}) == guard_line(STATE)


def test_status_line_runs_the_users_command_with_the_same_input(tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    state.write_text(json.dumps(STATE))
    payload = (FIX / "statusline-stdin-2.1.330.jsonl").read_text().splitlines()[1]
    user_cmd = f"{shlex.quote(sys.executable)} -c \"import json,sys; print('model:', json.load(sys.stdin)['model']['id'])\""
    p = subprocess.run([sys.executable, "-S", "-I", str(STATUSLINE_SCRIPT), str(state), user_cmd],
                       input=payload, capture_output=True, text=True, timeout=20, check=False)
    assert p.returncode == 0
    assert p.stdout.splitlines() == ["guard $0.42/$10.00 · 12k/500k tok · 3/60 steps · 1m15s/30m00s",
                                     "model: claude-opus-5-5"]
