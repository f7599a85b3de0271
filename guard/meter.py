"""From adapter events to run totals: merge reports of one call, price it, write it down.

Memory stays bounded however long the run: the merged views of recent calls are kept in a
window; a key that fell out of it is looked up in the ledger's index instead, and only when a
fixed-size filter of the run's keys says it may have been seen (a new key, the common case,
costs no lookup)."""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from guard.ledger import Ledger
from guard.pricing import Price, Pricer
from guard.usage import Totals, UsageEvent

WINDOW = 4096        # calls still open (several sources, placeholder counts) are recent ones
PRICE_MEMO = 1024    # distinct (model, counts, stated cost, minute) prices kept
FILTER_BITS = 1 << 23  # 1 MiB: about 2% false positives (one ledger lookup each) at 1M keys
FILTER_HASHES = 4


@dataclass
class Recorded:
    event: UsageEvent        # the merged view of the call
    price: Price
    new: bool                # first report of this call (not a merge into an earlier one)


class SeenKeys:
    """A Bloom filter of keys: `maybe(key)` is False only for a key never `add`ed. Fixed size,
    so a run of any length costs the same memory; a false positive costs one ledger lookup."""

    def __init__(self, bits: int = FILTER_BITS, hashes: int = FILTER_HASHES) -> None:
        self._bits = bytearray(bits // 8)
        self._mask = bits - 1
        assert bits & self._mask == 0, "a power of two"
        self._hashes = hashes

    def _positions(self, key: str) -> list[int]:
        # hash(str) is cached on the string and stable within the process: all this filter needs
        h = hash(key) & 0xFFFFFFFFFFFFFFFF
        a, b = h & 0xFFFFFFFF, (h >> 32) | 1
        return [(a + i * b) & self._mask for i in range(self._hashes)]

    def add(self, key: str) -> None:
        bits = self._bits
        for p in self._positions(key):
            bits[p >> 3] |= 1 << (p & 7)

    def maybe(self, key: str) -> bool:
        bits = self._bits
        return all(bits[p >> 3] & (1 << (p & 7)) for p in self._positions(key))


class Meter:
    def __init__(self, run_id: str, ledger: Ledger, pricer: Pricer, window: int = WINDOW) -> None:
        self.run_id = run_id
        self.ledger = ledger
        self.pricer = pricer
        self.window = window
        self.calls: OrderedDict[str, tuple[UsageEvent, Price]] = OrderedDict()
        self.seen = SeenKeys()
        self.lookups = 0     # ledger lookups of keys outside the window (for tests and benches)
        self.totals = Totals()
        self._prices: dict[tuple[object, ...], Price] = {}

    def record_batch(self, events: list[UsageEvent]) -> list[Recorded]:
        """Merge, price and write in one ledger transaction; the ledger is written before
        anyone acts on the new totals. A key reported twice in the batch is written once."""
        with self.ledger.transaction():
            recorded = [self._record(ev) for ev in events]
            last = {r.event.key: r for r in recorded}
            self.ledger.upsert_events([(self.run_id, r.event, r.price.usd, r.price.known)
                                       for r in last.values()])
        return recorded

    def _prior(self, key: str) -> tuple[UsageEvent, Price] | None:
        hit = self.calls.get(key)
        if hit is not None:
            self.calls.move_to_end(key)
            return hit
        if not self.seen.maybe(key):
            return None
        self.lookups += 1
        row = self.ledger.run_event(self.run_id, key)
        if row is None:
            return None
        ev, usd, known = row
        return ev, Price(usd, known, "ledger")

    def _price(self, ev: UsageEvent) -> Price:
        """The pricer's answer, memoised: a run's calls repeat the same shapes, and pricing one
        costs tens of microseconds. Rates may change with the time of day: the minute is part
        of the key."""
        memo = (ev.model, ev.source, ev.input_tokens, ev.output_tokens, ev.cache_write_tokens,
                ev.cache_write_1h_tokens, ev.cache_read_tokens, ev.cost_usd, int(ev.ts // 60))
        price = self._prices.get(memo)
        if price is None:
            price = self.pricer.price(ev)
            if len(self._prices) >= PRICE_MEMO:
                self._prices.clear()
            self._prices[memo] = price
        return price

    def _record(self, ev: UsageEvent) -> Recorded:
        prior = self._prior(ev.key)
        merged = prior[0].merge(ev) if prior else ev
        price = self._price(merged)
        if prior is not None:
            self.totals.add(prior[0], prior[1].usd, sign=-1)
        else:
            self.seen.add(ev.key)
        self.totals.add(merged, price.usd)
        self.calls[ev.key] = (merged, price)
        if len(self.calls) > self.window:
            self.calls.popitem(last=False)
        return Recorded(merged, price, prior is None)
