"""Claude Code statusLine command: guard's budget first, then the user's own status line.

Started by file path with `python -S -I` (standard library only, like claude_hooks.py):

    python -S -I claude_statusline.py STATE_PATH [USER_COMMAND]

Claude Code pipes its status JSON to stdin; the user's command gets the same bytes.
"""
from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

USER_COMMAND_TIMEOUT = 5.0
YELLOW, RED, RESET = "\x1b[33m", "\x1b[31m", "\x1b[0m"   # Claude Code shows a status line's colours


def _num(n: float) -> str:
    if n >= 1_000_000:
        return f"{n / 1_000_000:.1f}M".replace(".0M", "M")
    if n >= 10_000:
        return f"{n / 1000:.0f}k"
    if n >= 1000:
        return f"{n / 1000:.1f}k".replace(".0k", "k")
    return f"{n:.0f}"


def _duration(s: float) -> str:
    s = max(0, int(s))
    if s >= 3600:
        return f"{s // 3600}h{(s % 3600) // 60:02d}m"
    if s >= 60:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s}s"


def fmt_ceiling(c: dict[str, Any]) -> str | None:
    name = str(c.get("name") or "")
    try:
        used, limit = float(c.get("used") or 0), float(c["limit"])
    except (KeyError, TypeError, ValueError):
        return None
    if name.endswith("usd"):
        label = "" if name == "usd" else f" {name.removesuffix('_usd')}"
        return f"${used:.2f}/${limit:.2f}{label}"
    if name == "tokens":
        return f"{_num(used)}/{_num(limit)} tok"
    if name == "steps":
        return f"{used:.0f}/{limit:.0f} steps"
    if name == "time":
        return f"{_duration(used)}/{_duration(limit)}"
    return f"{name} {_num(used)}/{_num(limit)}"


def guard_line(state: dict[str, Any]) -> str:
    parts = [p for p in (fmt_ceiling(c) for c in state.get("ceilings") or [] if isinstance(c, dict)) if p]
    if not parts:
        totals = state.get("totals") or {}
        parts = [f"${float(totals.get('cost_usd') or 0):.2f} spent"]
    line = "guard " + " · ".join(parts)
    halt = state.get("halt")
    if isinstance(halt, dict):
        line += f" · {RED}HALTED ({halt.get('ceiling')}){RESET}"
    elif state.get("paused"):
        line += " · paused"
    else:
        warnings = soft_warnings(state)
        if warnings:
            line += f" · {YELLOW}⚠ {warnings[-1]}{RESET}"
    return line


def soft_warnings(state: dict[str, Any]) -> list[str]:
    """The run's soft warnings, oldest first: state.json `"soft": [{"ceiling": "usd",
    "message": "75% of the $2.00 task ceiling ($1.50 spent)"}]`."""
    return [str(w["message"]) for w in state.get("soft") or []
            if isinstance(w, dict) and isinstance(w.get("message"), str) and w["message"]]


def main(argv: list[str]) -> int:
    payload = b""
    try:
        payload = sys.stdin.buffer.read()
    except OSError:
        pass
    try:
        with open(argv[1], "rb") as f:
            state = json.loads(f.read())
        line = guard_line(state if isinstance(state, dict) else {})
    except (OSError, ValueError, IndexError):
        line = "guard"
    out = [line]
    if len(argv) > 2 and argv[2]:
        try:
            res = subprocess.run(argv[2], shell=True, input=payload, capture_output=True,
                                 timeout=USER_COMMAND_TIMEOUT, check=False)
            text = res.stdout.decode("utf-8", "replace").rstrip("\n")
            if text:
                out.append(text)
        except (OSError, subprocess.SubprocessError):
            pass
    sys.stdout.write("\n".join(out) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
