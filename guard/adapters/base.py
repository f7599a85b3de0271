"""The contract between the run loop and a per-tool adapter."""
from __future__ import annotations

import os
import shutil
import signal
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from guard.errors import AgentNotExecutable, AgentNotFound
from guard.tail import JsonlFollower
from guard.usage import UsageEvent


@dataclass(frozen=True)
class Remaining:
    """What is left of each active task ceiling when the run starts (None = no ceiling)."""

    usd: float | None = None
    tokens: int | None = None
    steps: int | None = None
    seconds: float | None = None


@dataclass
class LaunchContext:
    run_id: str
    tool_args: list[str]          # everything after the tool name, verbatim
    env: dict[str, str]           # the child's environment; adapters return an updated copy
    run_dir: Path                 # private scratch directory of this run (exists)
    state_path: Path              # JSON kept current by the run loop: totals, ceilings, halt (for hooks)
    cwd: Path
    started_at: float
    interactive: bool             # the agent has a PTY
    remaining: Remaining
    options: dict[str, Any] = field(default_factory=dict)  # the tool's section of the config
    wrapper_dirs: tuple[Path, ...] = ()  # directories holding guard's own wrapper scripts: skip them
    meter: str = "native"         # "proxy": the metering proxy records tokens and dollars


@dataclass
class Launch:
    argv: list[str]
    env: dict[str, str]


class EventSink(Protocol):
    """Thread-safe: adapters call it from watcher threads."""

    def emit(self, event: UsageEvent) -> None: ...

    def notice(self, key: str, message: str) -> None:
        """A one-time message to the user (shown once per key, recorded in the ledger)."""

    def halt(self, ceiling: str, message: str) -> None:
        """The adapter saw something that must stop the run (e.g. a stuck loop)."""

    def tool(self, event: Any) -> None:
        """A ToolCall or ToolResult the agent made (guard.governor.events): the decision core
        tells a stuck loop from them."""

    def set_accuracy(self, accuracy: str) -> None:
        """'exact' or 'estimated': how trustworthy this run's figures are."""


# Stop = SIGINT, grace, SIGTERM, grace, SIGKILL (the foundation's default sequence).
DEFAULT_STOP_SEQUENCE: tuple[tuple[signal.Signals, float], ...] = (
    (signal.SIGINT, 3.0),
    (signal.SIGTERM, 3.0),
    (signal.SIGKILL, 0.0),
)


class Adapter(ABC):
    name: str = "command"
    # True when on_halt() asks the tool to end by itself (hooks, a refusing proxy): the run loop
    # then waits the configured grace before sending any signal.
    has_graceful_stop: bool = False
    # True when winding down ends the tool's turn but not the tool (interactive Claude Code goes
    # back to its prompt): a default grace would only be waited out, so only a set one applies.
    returns_to_prompt: bool = False

    @abstractmethod
    def prepare(self, ctx: LaunchContext) -> Launch:
        """Return the argv and environment to exec. Must not start anything."""

    def start(self, sink: EventSink) -> None:
        """Start watching the cost signals (called right after the agent is spawned)."""

    def poll(self) -> None:
        """Read anything new now (the run loop calls it periodically and before deciding)."""

    def on_halt(self, reason: str) -> None:
        """A hard ceiling was reached: ask the tool to wind down gracefully if it can
        (hooks, a refusing proxy). The run loop then applies the stop sequence."""

    def stop_sequence(self) -> tuple[tuple[signal.Signals, float], ...]:
        return DEFAULT_STOP_SEQUENCE

    def close(self) -> None:
        """The agent has exited: read the last records and stop watchers."""

    def skipped_records(self) -> int:
        return 0

    def start_notices(self, pricer: Any) -> list[tuple[str, str]]:
        """(key, message) to tell the user before the agent's first call (e.g. an unpriced model)."""
        return []


class FollowerAdapter(Adapter):
    """An adapter whose cost signal is one JsonlFollower (set in start())."""

    _follower: JsonlFollower | None = None

    def poll(self) -> None:
        if self._follower:
            self._follower.poll()

    def close(self) -> None:
        if self._follower:
            self._follower.stop()

    def skipped_records(self) -> int:
        return self._follower.skipped.total if self._follower else 0


def find_executable(name: str, env: dict[str, str], skip_dirs: tuple[Path, ...] = ()) -> str:
    """Find `name` on the child's PATH, skipping guard's own wrapper directories and any
    script that is itself a guard wrapper, so guard never calls itself."""
    if os.sep in name:
        path = Path(name)
        try:
            found = path.exists()
        except OSError:
            found = False
        if not found:
            raise AgentNotFound(f"{name}: not found")
        if not os.access(path, os.X_OK) or path.is_dir():
            raise AgentNotExecutable(f"{name}: not executable")
        # not str(path): Path drops a leading `./`, and exec would then search PATH for the name
        return name
    skip = {_real(d) for d in skip_dirs}
    seen_non_exec: str | None = None
    for d in env.get("PATH", os.defpath).split(os.pathsep):
        if not d or _real(Path(d)) in skip:
            continue
        cand = Path(d) / name
        try:
            if not cand.is_file():
                continue
        except OSError:
            continue  # a PATH entry we may not look into is one we cannot run from
        if is_guard_wrapper(cand):
            continue
        if os.access(cand, os.X_OK):
            return str(cand)
        seen_non_exec = seen_non_exec or str(cand)
    if seen_non_exec:
        raise AgentNotExecutable(f"{seen_non_exec}: permission denied")
    raise AgentNotFound(f"{name}: command not found on PATH")


WRAPPER_MARKER = b"guard-wrapper: do not edit"


def is_guard_wrapper(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            head = f.read(512)
    except OSError:
        return False
    return WRAPPER_MARKER in head


def _real(p: Path) -> str:
    try:
        return str(p.resolve())
    except OSError:
        return str(p)


def which(name: str) -> str | None:
    return shutil.which(name)
