"""Shared test helpers: run guard as a user would, wait on conditions with deadlines."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

AGENTS = Path(__file__).resolve().parent / "agents"
SPENDER = str(AGENTS / "spender.py")


def wait_until(predicate: Callable[[], Any], timeout: float = 10.0, interval: float = 0.02,
               message: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message}")
        time.sleep(interval)


def guard_env(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GUARD_")}
    env["GUARD_HOME"] = str(home)
    env["XDG_CONFIG_HOME"] = str(home / "config")  # never read the developer's own config
    env["GUARD_DEVELOPER"] = "tester@example.com"
    env.update(extra)
    return env


def guard_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "guard", *args]


def run_guard(home: Path, *args: str, timeout: float = 60, cwd: Path | None = None,
              env: dict[str, str] | None = None, **kw: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(guard_cmd(*args), env=env or guard_env(home), cwd=cwd or home,
                          capture_output=True, text=True, timeout=timeout, **kw)


def runs_json(home: Path, env: dict[str, str] | None = None) -> list[dict[str, Any]]:
    out = run_guard(home, "runs", "--json", "--limit", "1000", env=env)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)  # type: ignore[no-any-return]


def last_run(home: Path, env: dict[str, str] | None = None) -> dict[str, Any]:
    runs = runs_json(home, env)
    assert runs, "no run recorded"
    return runs[0]


def pids_alive(pattern: str) -> list[int]:
    """Live agent processes whose command line mentions `pattern` (guard itself excluded)."""
    import psutil

    out = []
    for p in psutil.process_iter(["pid", "cmdline", "status"]):
        try:
            if p.info["status"] == psutil.STATUS_ZOMBIE:
                continue
            cmdline = p.info["cmdline"] or []
            if "guard" in cmdline[1:3] or any(part.endswith("/guard") for part in cmdline[:2]):
                continue  # guard itself carries the agent's arguments
            if any(pattern in part for part in cmdline):
                out.append(p.pid)
        except psutil.Error:
            continue
    return out
