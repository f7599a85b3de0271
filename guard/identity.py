"""Who is running: developer, team, machine."""
from __future__ import annotations

import getpass
import socket
import subprocess
from dataclasses import dataclass

from guard.config import Settings


@dataclass(frozen=True)
class Identity:
    developer: str
    team: str | None
    machine: str


def git_email(cwd: str) -> str | None:
    try:
        out = subprocess.run(["git", "config", "user.email"], cwd=cwd, capture_output=True,
                             text=True, timeout=2)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None


def resolve_identity(settings: Settings, cwd: str) -> Identity:
    developer = settings.developer or git_email(cwd) or _login()
    return Identity(developer, settings.team, settings.machine or socket.gethostname())


def _login() -> str:
    try:
        return getpass.getuser()
    except Exception:
        return "unknown"
