"""Claude Code hook entry point: stop the agent gracefully once guard has halted the run.

Runs on every tool call, so it is started by file path with `python -S -I` and imports only the
standard library (no guard package, no site-packages): the round trip stays in the tens of ms.

    python -S -I claude_hooks.py EVENT STATE_PATH [SESSIONS_FILE]

EVENT is pre (PreToolUse), post (PostToolUse), prompt (UserPromptSubmit) or session
(SessionStart). With no halt in the state file the hook prints nothing and exits 0 (allow).
Any failure also allows: Claude Code fails open on odd exit codes anyway, and guard's stop
sequence stays behind this graceful path.
"""
from __future__ import annotations

import json
import os
import sys
from typing import Any

PREFIX = "guard stopped this session"


def read_halt(state_path: str) -> dict[str, Any] | None:
    try:
        with open(state_path, "rb") as f:
            state = json.loads(f.read())
    except (OSError, ValueError):
        return None
    halt = state.get("halt") if isinstance(state, dict) else None
    return halt if isinstance(halt, dict) else None


def halt_text(halt: dict[str, Any]) -> str:
    ceiling = halt.get("ceiling") or "limit"
    message = halt.get("message") or f"the {ceiling} ceiling was reached"
    return f"{PREFIX}: {message} (ceiling: {ceiling}). Do not retry; tell the user the budget is spent."


def answer(event: str, halt: dict[str, Any] | None) -> dict[str, Any] | None:
    """The JSON Claude Code expects from this hook, or None to allow silently."""
    if halt is None:
        return None
    text = halt_text(halt)
    if event == "pre":
        return {
            "continue": False,
            "stopReason": text,
            "hookSpecificOutput": {
                "hookEventName": "PreToolUse",
                "permissionDecision": "deny",
                "permissionDecisionReason": text,
            },
        }
    if event == "post":
        return {"continue": False, "stopReason": text}
    if event == "prompt":
        return {"decision": "block", "reason": text}
    return None


def record_session(sessions_file: str, payload: bytes) -> None:
    """Tell the adapter which session this run is (a --continue, --resume or /clear session
    has an id guard did not choose)."""
    try:
        data = json.loads(payload or b"{}")
    except ValueError:
        return
    if not isinstance(data, dict) or not isinstance(data.get("session_id"), str):
        return
    line = json.dumps({
        "session_id": data["session_id"],
        "transcript_path": data.get("transcript_path"),
        "source": data.get("source") or data.get("hook_event_name"),
    }) + "\n"
    try:
        fd = os.open(sessions_file, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, line.encode())
        finally:
            os.close(fd)
    except OSError:
        pass


def main(argv: list[str]) -> int:
    if len(argv) < 3:
        return 0
    event, state_path = argv[1], argv[2]
    sessions_file = argv[3] if len(argv) > 3 else None
    payload = b""
    if sessions_file and event in ("session", "prompt"):
        try:
            payload = sys.stdin.buffer.read()
        except OSError:
            payload = b""
        record_session(sessions_file, payload)
    out = answer(event, read_halt(state_path))
    if out is not None:
        sys.stdout.write(json.dumps(out))
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv))
    except Exception:  # never break the user's tool call because guard's hook failed
        sys.exit(0)
