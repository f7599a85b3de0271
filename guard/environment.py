"""Everything guard reads from the outside world at startup, in one object tests can build."""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO


def default_home(env: dict[str, str]) -> Path:
    if env.get("GUARD_HOME"):
        return Path(env["GUARD_HOME"]).expanduser()
    base = env.get("XDG_DATA_HOME") or str(Path(env.get("HOME", "~")).expanduser() / ".local" / "share")
    return Path(base) / "guard"


@dataclass
class Environment:
    env: dict[str, str] = field(default_factory=lambda: dict(os.environ))
    cwd: Path = field(default_factory=Path.cwd)
    stdin_fd: int = 0
    stdout_fd: int = 1
    stderr: IO[str] = field(default_factory=lambda: sys.stderr)
    stdout: IO[str] = field(default_factory=lambda: sys.stdout)

    @property
    def home(self) -> Path:
        return default_home(self.env)

    @property
    def interactive(self) -> bool:
        """A PTY for the agent only when guard really sits between a person and a terminal."""
        return os.isatty(self.stdin_fd) and os.isatty(self.stdout_fd)

    def error(self, message: str) -> None:
        self.stderr.write(f"guard: error: {message}\n")
        self.stderr.flush()

    def say(self, message: str) -> None:
        self.stderr.write(f"guard: {message}\n")
        self.stderr.flush()
