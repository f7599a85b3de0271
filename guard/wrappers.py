"""Drop-in wrappers: with their directory first on PATH, `claude ...` runs `guard claude ...`.

A wrapper is a tiny sh script carrying WRAPPER_MARKER. It execs guard with GUARD_WRAPPER_DIR set
to its own directory (appended to any already there). guard never runs a wrapper as the real
tool: find_executable skips every directory in GUARD_WRAPPER_DIR *and* every file carrying the
marker (so the same directory twice on PATH, a symlink to a wrapper, or a copy elsewhere are all
skipped), and the wrapper itself gives up after GUARD_WRAPPER_DEPTH nested calls as a last line.
"""
from __future__ import annotations

import os
import shutil
import stat
from collections.abc import Mapping, Sequence
from pathlib import Path

from guard.adapters.base import WRAPPER_MARKER, is_guard_wrapper
from guard.errors import ConfigError

TOOLS = ("claude", "aider", "codex")
MAX_DEPTH = 8

_TEMPLATE = """#!/bin/sh
# {marker}
# Drop-in wrapper installed by `guard wrappers install`: typing `{tool} ...` runs
# `guard {tool} ...` under the team's budget policy. guard finds the real `{tool}` further down
# PATH and skips this directory (GUARD_WRAPPER_DIR) and any file carrying the marker above.
# the directory of the script itself, through any symlink to it
self=$(readlink -f -- "$0" 2>/dev/null) || self=$0
dir=$(CDPATH= cd -- "$(dirname -- "$self")" && pwd -P) || exit 125
depth=${{GUARD_WRAPPER_DEPTH:-0}}
if [ "$depth" -ge {max_depth} ]; then
    echo "guard wrapper: {tool} is calling itself through guard ($depth levels); is the real {tool} on PATH?" >&2
    exit 125
fi
GUARD_WRAPPER_DEPTH=$((depth + 1))
GUARD_WRAPPER_DIR="$dir${{GUARD_WRAPPER_DIR:+:$GUARD_WRAPPER_DIR}}"
export GUARD_WRAPPER_DEPTH GUARD_WRAPPER_DIR
exec "${{GUARD_BIN:-{guard_bin}}}" {tool} "$@"
"""


def wrapper_text(tool: str, guard_bin: str = "guard") -> str:
    if not tool or "/" in tool or not tool.replace("-", "").replace("_", "").isalnum():
        raise ConfigError(f"wrapper: {tool!r} is not a tool name")
    if any(c in guard_bin for c in "\"'`$\\\n"):
        raise ConfigError(f"wrapper: guard path {guard_bin!r} has characters a shell would expand")
    return _TEMPLATE.format(marker=WRAPPER_MARKER.decode(), tool=tool, guard_bin=guard_bin,
                            max_depth=MAX_DEPTH)


def install_wrappers(directory: Path, tools: Sequence[str] = TOOLS, *, guard_bin: str | None = None,
                     force: bool = False) -> list[Path]:
    """Write one wrapper per tool into `directory`. An existing file that is not a guard wrapper
    is left alone unless `force` (it might be the real tool)."""
    directory = Path(directory).expanduser()
    directory.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    bin_path = guard_bin or default_guard_bin()
    for tool in tools:
        target = directory / tool
        if target.exists() or target.is_symlink():
            if not is_guard_wrapper(target) and not force:
                raise ConfigError(f"{target} exists and is not a guard wrapper (use --force to replace it)")
            target.unlink()
        tmp = directory / f".{tool}.guard-tmp"
        tmp.write_text(wrapper_text(tool, bin_path))
        tmp.chmod(tmp.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
        os.replace(tmp, target)
        written.append(target)
    return written


def default_guard_bin() -> str:
    """The guard that is installing the wrappers, by absolute path when found, so the wrappers
    keep working when guard is not on PATH of every shell."""
    found = shutil.which("guard")
    return os.path.abspath(found) if found else "guard"


def wrapper_dirs_from_env(env: Mapping[str, str]) -> tuple[Path, ...]:
    """The GUARD_WRAPPER_DIR list as LaunchContext.wrapper_dirs."""
    raw = env.get("GUARD_WRAPPER_DIR", "")
    return tuple(Path(p) for p in raw.split(os.pathsep) if p)


def repo_wrappers_dir() -> Path:
    return Path(__file__).resolve().parent.parent / "wrappers"
