"""The budget seam between the proxy and the run loop: reserve a request's worst case before
forwarding it, release it once its real usage has been emitted."""
from __future__ import annotations

from typing import Protocol

from guard.errors import ExitStatus, GuardError


class BudgetRefused(GuardError):
    """A reservation does not fit. The message names the ceiling, e.g.
    "$2.00 task ceiling reached ($1.97 spent, $0.40 reserved)"; the proxy shows it to the agent."""

    exit_status = ExitStatus.HALTED


class BudgetGate(Protocol):
    """Implemented by the run loop. Thread-safe: the proxy calls it from one thread per request."""

    def reserve(self, usd: float, tokens: int) -> object:
        """Hold `usd`/`tokens` against every ceiling; return a handle or raise BudgetRefused."""
        ...

    def release(self, reservation: object) -> None:
        """Drop a hold. Called after the request's UsageEvent was emitted (so the spend is
        already in the totals and never disappears between the two)."""
        ...


class OpenGate:
    """A gate without ceilings (metering only)."""

    def reserve(self, usd: float, tokens: int) -> object:
        return None

    def release(self, reservation: object) -> None:
        return None
