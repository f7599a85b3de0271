"""A run's state as the decision core keeps it: limits, spend, reservations, pause, stop.

Pure data. `decide` never mutates a state it was given: it works on `copy()`."""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Literal

from guard.governor.ceilings import Ceiling
from guard.governor.events import Budget, RequestCost
from guard.governor.stuck import Loops, StuckRule
from guard.ledger.records import Halt
from guard.usage import Totals

OnLimit = Literal["pause", "stop", "kill"]
Phase = Literal["running", "paused", "stopping"]


@dataclass
class Reservation:
    usd: float = 0.0
    tokens: int = 0
    steps: int = 0
    cost: RequestCost | None = None     # what was asked, to re-admit it after a pause


@dataclass
class StopPlan:
    """The stop sequence still to walk: (signal or None for a wait, seconds until the next)."""

    steps: list[tuple[int | None, float]]
    deadline: float
    started: float

    @property
    def done(self) -> bool:
        return not self.steps


@dataclass
class RunState:
    limits: dict[str, float]                  # task ceilings after raises: usd|tokens|steps|time
    started_at: float
    on_limit: OnLimit = "stop"
    soft: tuple[float, ...] = (0.75,)
    interactive: bool = False
    unknown_price: str = "max"                # max | refuse
    min_output: int = 4096                    # below this allowance a request is not sent
    stuck: StuckRule | None = None            # None: stuck loops are not looked for
    named_task: bool = False
    prior: Totals = field(default_factory=Totals)      # the task's earlier runs
    prior_seconds: float = 0.0
    totals: Totals = field(default_factory=Totals)     # this run, as recorded
    budgets: tuple[Budget, ...] = ()
    # the stop sequence: a wait for the agent to end by itself (hooks, a refusing proxy) then signals
    graceful: float = 0.0
    refusal_grace: float = 0.0                # after a refusal the tool treats as final: it ends by itself
    signals: tuple[tuple[int, float], ...] = ()
    kill_signal: int = 9
    # what happened so far
    phase: Phase = "running"
    halt: Halt | None = None                  # the halt in force (None once resumed)
    halted: bool = False                      # the run ends because guard halted it
    stop: StopPlan | None = None
    lifted: set[str] = field(default_factory=set)
    warned: set[str] = field(default_factory=set)
    reserved: dict[str, Reservation] = field(default_factory=dict)
    held: dict[str, RequestCost] = field(default_factory=dict)   # request id -> what it asked
    estimated: bool = False
    priced_unknown: set[str] = field(default_factory=set)
    loops: Loops = field(default_factory=Loops)   # replaced, never changed in place, by decide

    def copy(self) -> RunState:
        return _shallow(self)

    # -- derived ----------------------------------------------------------------------------

    def in_flight(self) -> Reservation:
        r = Reservation()
        for x in self.reserved.values():
            r.usd += x.usd
            r.tokens += x.tokens
            r.steps += x.steps
        return r

    def ceilings(self, now: float, extra: Reservation | None = None) -> list[Ceiling]:
        """Every ceiling with what is used of it (plus `extra`, for admission)."""
        t, p = self.totals, self.prior
        x = extra or Reservation()
        used = {
            "usd": p.cost_usd + t.cost_usd + x.usd,
            "tokens": p.tokens + t.tokens + x.tokens,
            "steps": p.steps + t.steps + x.steps,
            "time": self.prior_seconds + max(0.0, now - self.started_at),
        }
        out = [Ceiling(k, lim, used[k], soft=self.soft) for k, lim in self.limits.items()]
        for b in self.budgets:
            out.append(Ceiling(b.name, b.limit, b.others + t.cost_usd + x.usd, b.scope.split(":", 1)[0],
                               b.resets_at, b.soft, b.period))
        return out

    def time_left(self, now: float) -> float | None:
        limit = self.limits.get("time")
        if limit is None or "time" in self.lifted or self.phase == "paused":
            return None
        return limit - (self.prior_seconds + now - self.started_at)

    def next_deadline(self, now: float) -> float | None:
        """When the host must come back even if nothing else happens."""
        times = []
        left = self.time_left(now)
        if left is not None and self.halt is None and not self.halted:
            times.append(now + max(0.0, left))
        if self.stop is not None and not self.stop.done:
            times.append(self.stop.deadline)
        return min(times) if times else None

    def budget(self, name: str) -> Budget | None:
        return next((b for b in self.budgets if b.name == name), None)


def _shallow(s: RunState) -> RunState:
    new = copy.copy(s)
    new.limits = dict(s.limits)
    new.lifted = set(s.lifted)
    new.warned = set(s.warned)
    new.reserved = dict(s.reserved)
    new.held = dict(s.held)
    new.priced_unknown = set(s.priced_unknown)
    if s.stop is not None:
        new.stop = StopPlan(list(s.stop.steps), s.stop.deadline, s.stop.started)
    return new
