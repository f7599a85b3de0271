"""Invocations of a tool that are not a session (`claude mcp ...`, `aider --version`): guard
execs the tool in its own place, with nothing added and nothing recorded."""
from __future__ import annotations

AIDER_FLAGS = frozenset({"-h", "--help", "--version", "--just-check-update", "--list-models",
                         "--models", "--shell-completions"})
CODEX_FLAGS = frozenset({"-h", "--help", "-V", "--version"})
CODEX_SUBCOMMANDS = frozenset({"login", "logout", "mcp", "mcp-server", "completion", "help", "apply",
                               "features", "app-server"})


def is_passthrough(tool: str, args: list[str]) -> bool:
    if tool == "claude":
        from guard.adapters.claude_launch import parse_args

        parsed = parse_args(args)
        return bool(parsed.subcommand) or parsed.has("-h", "--help", "-v", "--version")
    if tool == "aider":
        return any(a in AIDER_FLAGS or a.startswith("--shell-completions=") for a in args)
    if tool == "codex":
        return bool(args) and (args[0] in CODEX_SUBCOMMANDS or any(a in CODEX_FLAGS for a in args))
    return False
