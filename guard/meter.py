"""From adapter events to run totals: merge reports of one call, price it, write it down.

Memory stays bounded however long the run: the merged views of recent calls are kept in a
window; a key that fell out of it is looked up in the ledger's index instead."""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from guard.ledger import Ledger
from guard.pricing import Price, Pricer
from guard.usage import Totals, UsageEvent

WINDOW = 4096     # calls still open (several sources, placeholder counts) are recent ones


@dataclass
class Recorded:
    event: UsageEvent        # the merged view of the call
    price: Price
    new: bool                # first report of this call (not a merge into an earlier one)


class Meter:
    def __init__(self, run_id: str, ledger: Ledger, pricer: Pricer, window: int = WINDOW) -> None:
        self.run_id = run_id
        self.ledger = ledger
        self.pricer = pricer
        self.window = window
        self.calls: OrderedDict[str, tuple[UsageEvent, Price]] = OrderedDict()
        self.evicted = 0
        self.totals = Totals()

    def record_batch(self, events: list[UsageEvent]) -> list[Recorded]:
        """Merge, price and write in one ledger transaction; the ledger is written before
        anyone acts on the new totals."""
        with self.ledger.transaction():
            return [self._record(ev) for ev in events]

    def _prior(self, key: str) -> tuple[UsageEvent, Price] | None:
        hit = self.calls.get(key)
        if hit is not None:
            self.calls.move_to_end(key)
            return hit
        if not self.evicted:
            return None
        row = self.ledger.run_event(self.run_id, key)
        if row is None:
            return None
        ev, usd, known = row
        return ev, Price(usd, known, "ledger")

    def _record(self, ev: UsageEvent) -> Recorded:
        prior = self._prior(ev.key)
        merged = prior[0].merge(ev) if prior else ev
        price = self.pricer.price(merged)
        if prior is not None:
            self.totals.add(prior[0], prior[1].usd, sign=-1)
        self.totals.add(merged, price.usd)
        self.calls[ev.key] = (merged, price)
        if len(self.calls) > self.window:
            self.calls.popitem(last=False)
            self.evicted += 1
        self.ledger.upsert_event(self.run_id, merged, price.usd, price.known)
        return Recorded(merged, price, prior is None)
