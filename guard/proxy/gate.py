"""The budget seam between the proxy and the run: admit a request before it is forwarded (as it
is, with a lowered output allowance, held while the run is paused, or refused), settle it once
its usage has been emitted."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from guard.proxy.wire import Estimate


@dataclass(frozen=True)
class Verdict:
    forward: bool
    message: str = ""                 # why not (shown to the agent in the refusal)
    max_output: int | None = None     # forward with this output allowance instead of the asked one
    thinking_budget: int | None = None
    handle: object = None             # give it back to settle()
    dropped: bool = False             # the client went away while the request was held


class BudgetGate(Protocol):
    """Implemented by the run. Thread-safe: the proxy calls it from one thread per request."""

    def admit(self, est: Estimate, tool: str, body: bytes, client_gone: Callable[[], bool]) -> Verdict: ...

    def settle(self, handle: object) -> None:
        """The request ended and its UsageEvent (if any) was emitted."""


class OpenGate:
    """A gate without ceilings (metering only)."""

    def admit(self, est: Estimate, tool: str, body: bytes, client_gone: Callable[[], bool]) -> Verdict:
        return Verdict(True)

    def settle(self, handle: object) -> None:
        return None
