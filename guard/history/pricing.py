"""Pricing a history's worth of events at live metering's rules, fast.

Every price comes from guard.pricing.Pricer, at the event's own timestamp. Pricer costs about
0.1 ms an event, which would be most of a large import; so for each model and price list in force
(Pricer.price_list: an override, or genai-prices' rates of that date) this asks Pricer the price
of one token of each kind and prices events as the dot product, where Pricer
itself shows the price is linear. A model with a long-context tier (a whole request billed at a
premium once its input, caches included, passes a threshold) is linear below the threshold: it is
found from Pricer's answers once per model, checked for every kind per day, and requests at or
above it go to Pricer one by one, as do unknown prices and stated costs.
"""
from __future__ import annotations

import dataclasses
import math

from guard.pricing import Price, Pricer
from guard.usage import UsageEvent

# token kinds, as UsageEvent fields: the 5-minute write is cache_write minus its 1-hour part
_UNIT_EVENTS = (
    {"input_tokens": 1},
    {"output_tokens": 1},
    {"cache_write_tokens": 1},
    {"cache_write_tokens": 1, "cache_write_1h_tokens": 1},
    {"cache_read_tokens": 1},
)
_INPUT_KINDS = (0, 2, 3, 4)      # the kinds that count toward a request's input
_PROBE = 2_000_000               # past any context window
_ZERO = {"input_tokens": 0, "output_tokens": 0, "cache_write_tokens": 0, "cache_write_1h_tokens": 0,
         "cache_read_tokens": 0}


@dataclasses.dataclass(frozen=True)
class _Linear:
    rates: tuple[float, ...]
    basis: str
    below: float        # linear for requests whose input, caches included, is below this


class BulkPricer:
    def __init__(self, pricer: Pricer) -> None:
        self.pricer = pricer
        self._linear: dict[tuple[str | None, int], _Linear | None] = {}
        self._lists: list[object] = []   # keeps each list alive, so its id() names it
        self._thresholds: dict[str | None, int] = {}
        self.exact_calls = 0     # events Pricer priced one by one (for the bench)

    def price(self, ev: UsageEvent) -> Price:
        if ev.cost_usd is not None or ev.tokens == 0:
            return self.pricer.price(ev)
        plist = self.pricer.price_list(ev)
        if plist is None:
            self.exact_calls += 1
            return self.pricer.price(ev)
        key = (ev.model, id(plist))
        if key not in self._linear:
            self._lists.append(plist)
            self._linear[key] = self._rates(ev)
        lin = self._linear[key]
        if lin is None or ev.input_tokens + ev.cache_write_tokens + ev.cache_read_tokens >= lin.below:
            self.exact_calls += 1
            return self.pricer.price(ev)
        r = lin.rates
        write_5m = ev.cache_write_tokens - ev.cache_write_1h_tokens
        usd = (ev.input_tokens * r[0] + ev.output_tokens * r[1] + write_5m * r[2]
               + ev.cache_write_1h_tokens * r[3] + ev.cache_read_tokens * r[4])
        return Price(usd, True, lin.basis)

    def _probe(self, like: UsageEvent, fields: dict[str, int], scale: int) -> Price:
        n = {**_ZERO, **{k: v * scale for k, v in fields.items()}}
        unit = UsageEvent(key="rate", source=like.source, model=like.model, input_tokens=n["input_tokens"],
                          output_tokens=n["output_tokens"], cache_write_tokens=n["cache_write_tokens"],
                          cache_write_1h_tokens=n["cache_write_1h_tokens"],
                          cache_read_tokens=n["cache_read_tokens"], ts=like.ts)
        return self.pricer.price(unit)

    def _is_linear(self, like: UsageEvent, i: int, rate: float, scale: int) -> bool:
        usd = self._probe(like, _UNIT_EVENTS[i], scale).usd
        return math.isclose(usd, rate * scale, rel_tol=1e-9, abs_tol=1e-12)

    def _rates(self, like: UsageEvent) -> _Linear | None:
        rates: list[float] = []
        basis = ""
        for fields in _UNIT_EVENTS:
            one = self._probe(like, fields, 1)
            if not one.known:
                return None
            rates.append(one.usd)
            basis = one.basis
        if not self._is_linear(like, 1, rates[1], _PROBE):
            return None                 # output alone is not linear: not a shape this knows
        if all(self._is_linear(like, i, rates[i], _PROBE) for i in _INPUT_KINDS):
            return _Linear(tuple(rates), basis, math.inf)
        below = self._threshold(like, rates[0])
        if below <= 1 or not all(self._is_linear(like, i, rates[i], below - 1) for i in _INPUT_KINDS):
            return None
        return _Linear(tuple(rates), basis, below)

    def _threshold(self, like: UsageEvent, rate: float) -> int:
        """The least input at which the price stops being linear (bisection on Pricer's answers)."""
        if like.model not in self._thresholds:
            lo, hi = 1, _PROBE          # linear at lo, not at hi
            while hi - lo > 1:
                mid = (lo + hi) // 2
                if self._is_linear(like, 0, rate, mid):
                    lo = mid
                else:
                    hi = mid
            self._thresholds[like.model] = hi
        return self._thresholds[like.model]
