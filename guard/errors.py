"""Exit statuses and domain errors; every error knows the exit code it maps to."""
from __future__ import annotations

import enum


class ExitStatus(enum.IntEnum):
    OK = 0
    USAGE = 2          # usage or config error: nothing was started
    HALTED = 124       # guard halted the agent (or refused to start it) for a ceiling
    GUARD_FAILED = 125
    NOT_EXECUTABLE = 126
    NOT_FOUND = 127


class GuardError(Exception):
    exit_status: ExitStatus = ExitStatus.GUARD_FAILED

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class UsageError(GuardError):
    exit_status = ExitStatus.USAGE


class ConfigError(UsageError):
    """A config file, env var or flag is invalid; names where."""


class AgentNotFound(GuardError):
    exit_status = ExitStatus.NOT_FOUND


class AgentNotExecutable(GuardError):
    exit_status = ExitStatus.NOT_EXECUTABLE


class Refused(GuardError):
    """A run was refused because a ceiling is already exhausted."""

    exit_status = ExitStatus.HALTED


class LedgerError(GuardError):
    exit_status = ExitStatus.GUARD_FAILED


class UnknownRun(UsageError):
    pass
