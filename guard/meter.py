"""From adapter events to run totals: merge reports of one call, price it, write it down."""
from __future__ import annotations

from dataclasses import dataclass

from guard.ledger import Ledger
from guard.pricing import Price, Pricer
from guard.usage import Totals, UsageEvent


@dataclass
class Recorded:
    event: UsageEvent        # the merged view of the call
    price: Price
    new: bool                # first report of this call (not a merge into an earlier one)


class Meter:
    def __init__(self, run_id: str, ledger: Ledger, pricer: Pricer) -> None:
        self.run_id = run_id
        self.ledger = ledger
        self.pricer = pricer
        self.calls: dict[str, tuple[UsageEvent, Price]] = {}
        self.totals = Totals()

    def record_batch(self, events: list[UsageEvent]) -> list[Recorded]:
        """Merge, price and write in one ledger transaction; the ledger is written before
        anyone acts on the new totals."""
        out: list[Recorded] = []
        with self.ledger.transaction():
            for ev in events:
                out.append(self._record(ev))
        return out

    def _record(self, ev: UsageEvent) -> Recorded:
        prior = self.calls.get(ev.key)
        merged = prior[0].merge(ev) if prior else ev
        price = self.pricer.price(merged)
        if prior is not None:
            self.totals.add(prior[0], prior[1].usd, sign=-1)
        self.totals.add(merged, price.usd)
        self.calls[ev.key] = (merged, price)
        self.ledger.upsert_event(self.run_id, merged, price.usd, price.known)
        return Recorded(merged, price, prior is None)
