"""What of an agent's command line the ledger may keep: flag names, the values of a few flags
known to be harmless (a model name, a turn limit), and for `guard run` the command's name.
Never a prompt, a path, another flag's value or anything from the environment: the ledger is
shared with a team and kept for months, and `claude -p "... password=hunter2"` or
`--api-key sk-...` must not be in it.

Pure and idempotent (scrubbing a scrubbed argv changes nothing), so it can be applied on every
write and again by a migration over old rows."""
from __future__ import annotations

import os
import re

REDACTED = "<redacted>"

# Flags whose value says how the agent ran, never what it was told or given.
HARMLESS_VALUE_FLAGS = frozenset({
    "--model", "-m", "--fallback-model", "--weak-model", "--editor-model", "--max-turns",
    "--output-format", "--input-format", "--permission-mode", "--edit-format", "--reasoning-effort",
    "--task-budget", "--sandbox", "-s", "--ask-for-approval", "-a", "--approval-mode", "--map-tokens",
    "--chat-mode", "--effort",
})
_FLAG = re.compile(r"--?[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", re.ASCII)
_COMMAND = re.compile(r"[A-Za-z0-9_.+-]{1,64}", re.ASCII)
_NAME = re.compile(r"[A-Za-z0-9_.+/:@-]{1,128}", re.ASCII)  # model names: openai/gpt-4o, x@v1


def scrub_argv(argv: list[str], *, keep_command: bool = False) -> list[str]:
    """keep_command: argv[0] is the program (`guard run -- CMD`): keep its base name."""
    out: list[str] = []
    value_allowed = False
    for i, arg in enumerate(argv):
        if not isinstance(arg, str):
            arg = str(arg)
        if i == 0 and keep_command and not arg.startswith("-"):
            name = os.path.basename(arg)
            out.append(name if _COMMAND.fullmatch(name) else REDACTED)
            continue
        if arg == "--":
            out.append(arg)
            value_allowed = False
            continue
        name, eq, value = arg.partition("=")
        if _FLAG.fullmatch(name):
            if eq:
                out.append(f"{name}={_value(value) if name in HARMLESS_VALUE_FLAGS else REDACTED}")
                value_allowed = False
            else:
                out.append(name)
                value_allowed = name in HARMLESS_VALUE_FLAGS
            continue
        out.append(_value(arg) if value_allowed else REDACTED)
        value_allowed = False
    return out


def _value(v: str) -> str:
    # even an allowed flag's value is kept only if it looks like a name or a number
    return v if _NAME.fullmatch(v) or v == REDACTED else REDACTED
