"""Pricing a history's worth of events at live metering's rules, fast.

Every price comes from guard.pricing.Pricer, at the event's own timestamp. Pricer costs about
0.1 ms an event, which is most of a large import; so for each (model, UTC day) this asks Pricer
for the price of one token of each kind, checks at a million tokens of each kind that the
model's price is linear (no long-context tier, which bills a whole request at a premium once
its input passes a threshold), and then prices events as the dot product. A model that is not
linear, an unknown price or a stated cost goes to Pricer event by event.
"""
from __future__ import annotations

import dataclasses
import math
from datetime import UTC, datetime

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
_PROBE = 1_000_000


class BulkPricer:
    def __init__(self, pricer: Pricer) -> None:
        self.pricer = pricer
        self._rates: dict[tuple[str | None, str], tuple[tuple[float, ...], str] | None] = {}
        self.exact_calls = 0     # events Pricer priced one by one (for the bench)

    def price(self, ev: UsageEvent) -> Price:
        if ev.cost_usd is not None or ev.tokens == 0:
            return self.pricer.price(ev)
        day = datetime.fromtimestamp(ev.ts, UTC).date().isoformat()
        key = (ev.model, day)
        if key not in self._rates:
            self._rates[key] = self._linear_rates(ev)
        linear = self._rates[key]
        if linear is None:
            self.exact_calls += 1
            return self.pricer.price(ev)
        rates, basis = linear
        write_5m = ev.cache_write_tokens - ev.cache_write_1h_tokens
        usd = (ev.input_tokens * rates[0] + ev.output_tokens * rates[1] + write_5m * rates[2]
               + ev.cache_write_1h_tokens * rates[3] + ev.cache_read_tokens * rates[4])
        return Price(usd, True, basis)

    def _linear_rates(self, like: UsageEvent) -> tuple[tuple[float, ...], str] | None:
        rates: list[float] = []
        basis = ""
        for fields in _UNIT_EVENTS:
            zero = {"input_tokens": 0, "output_tokens": 0, "cache_write_tokens": 0,
                    "cache_write_1h_tokens": 0, "cache_read_tokens": 0}
            unit = dataclasses.replace(like, key="rate", cost_usd=None, **{**zero, **fields})
            one = self.pricer.price(unit)
            if not one.known:
                return None
            big = self.pricer.price(dataclasses.replace(unit, **{k: v * _PROBE for k, v in fields.items()}))
            if not math.isclose(big.usd, one.usd * _PROBE, rel_tol=1e-9, abs_tol=1e-12):
                return None
            rates.append(one.usd)
            basis = one.basis
        return tuple(rates), basis
