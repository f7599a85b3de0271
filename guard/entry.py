"""The `guard` command's entry point. A tool invocation that is not a session (`guard claude
--version`, `guard claude mcp list`) execs the tool before the command line parser is even
imported; everything else goes to guard.cli."""
from __future__ import annotations

import os
import sys

PASSTHROUGH_TOOLS = ("claude", "codex")   # aider may name its executable in guard's config


def main() -> None:
    argv = sys.argv[1:]
    _exec_if_passthrough(argv)
    from guard.cli import main as cli_main

    cli_main(argv)


def _exec_if_passthrough(argv: list[str]) -> None:
    """Only the plain form `guard TOOL ARGS...`: with guard options first, guard.cli decides."""
    if not argv or argv[0] not in PASSTHROUGH_TOOLS:
        return
    from guard.adapters.passthrough import is_passthrough

    tool, args = argv[0], argv[1:]
    if not is_passthrough(tool, args):
        return
    from pathlib import Path

    from guard.adapters.base import find_executable
    from guard.errors import GuardError

    env = dict(os.environ)
    wrapper_dirs = tuple(Path(p) for p in env.get("GUARD_WRAPPER_DIR", "").split(os.pathsep) if p)
    try:
        exe = find_executable(tool, env, wrapper_dirs)
        os.execve(exe, [exe, *args], env)
    except (GuardError, OSError):
        return   # guard.cli reports it, with its exit code
