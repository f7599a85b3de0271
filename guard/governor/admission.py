"""How much of a proxied request fits: the output allowance every applicable ceiling leaves.

A request's worst case is linear in its output allowance (`input_usd + n * usd_per_output`), so
each USD and token ceiling yields the largest `n` that fits; the smallest wins. A request that
fits as asked is sent as it is; one that fits with at least the floor is sent with a lowered
allowance; below the floor it does not fit. Pure."""
from __future__ import annotations

import math
from dataclasses import dataclass

from guard.governor.ceilings import EPSILON, Ceiling, format_amount
from guard.governor.events import RequestCost

UNBOUNDED = 1 << 62
THINKING_MIN = 1024      # Anthropic's smallest budget_tokens


@dataclass(frozen=True)
class Fit:
    max_output: int | None       # None: as asked; else the lowered allowance
    thinking_budget: int | None  # lowered budget_tokens, when thinking had to shrink
    ceiling: Ceiling | None      # the ceiling it does not fit (None when it fits)
    message: str = ""

    @property
    def fits(self) -> bool:
        return self.ceiling is None


def _output_room(c: Ceiling, cost: RequestCost) -> int:
    """The largest output allowance `c` leaves this request (negative: not even its input)."""
    left = c.limit - c.used
    if c.kind == "usd":
        room = left - cost.input_usd
        if cost.usd_per_output <= 0:
            return UNBOUNDED if room >= -EPSILON else -1
        return math.floor((room + EPSILON) / cost.usd_per_output)
    if c.kind == "tokens":
        return math.floor(left - cost.input_tokens)
    return UNBOUNDED


def _blocks(c: Ceiling, cost: RequestCost) -> bool:
    """Steps and time have no allowance to lower: the request is a step too many or too late."""
    if c.kind == "steps":
        return c.used + (1 if cost.step else 0) > c.limit + EPSILON if cost.step else c.reached
    if c.kind == "time":
        return c.reached
    return False


def fit(ceilings: list[Ceiling], cost: RequestCost, floor: int, in_flight_usd: float = 0.0) -> Fit:
    """`ceilings` carry what is used plus what is in flight; lifted ones are left out."""
    floor = min(floor, cost.max_output)
    room, binding = UNBOUNDED, None
    for c in ceilings:
        if _blocks(c, cost):
            return Fit(None, None, c, _blocked_words(c))
        r = _output_room(c, cost)
        if r < room:
            room, binding = r, c
    if room >= cost.max_output:
        return Fit(None, None, None)
    if room >= floor and binding is not None:
        return Fit(room, _thinking(cost.thinking_budget, room), None)
    assert binding is not None
    return Fit(None, None, binding, _needs_words(binding, cost, floor, in_flight_usd))


def _thinking(budget: int | None, max_output: int) -> int | None:
    """budget_tokens must stay below max_tokens and at least THINKING_MIN; the thinking type
    itself never changes (newer models reject manual thinking, and a change breaks the cache)."""
    if budget is None or budget < max_output:
        return None
    return max(THINKING_MIN, max_output - 1)


def _blocked_words(c: Ceiling) -> str:
    return c.headline()


def _needs_words(c: Ceiling, cost: RequestCost, floor: int, in_flight_usd: float) -> str:
    """'$0.50 task ceiling: $0.47 spent, the next request needs at least $0.05'"""
    if c.used - in_flight_usd >= c.limit - EPSILON:
        return c.headline()
    if c.kind == "usd":
        need = format_amount("usd", cost.input_usd + floor * cost.usd_per_output)
        spent = c.used - in_flight_usd
        flight = f", {format_amount('usd', in_flight_usd)} in flight" if in_flight_usd > EPSILON else ""
        used = f"{format_amount('usd', spent)} spent{flight}"
    else:
        need = format_amount("tokens", cost.input_tokens + floor)
        used = c.describe_used()
    return f"{c.describe_limit()} {c.scope_words()} ceiling: {used}, the next request needs at least {need}"
