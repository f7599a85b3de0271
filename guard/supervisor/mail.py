"""What the adapters and the proxy reported since the last look, written down (the meter, the
ledger) and turned into events for the decision core, in the order they must be decided.

A backlog (10k lines/s, or a loop that was busy) is recorded in chunks of at most CHUNK events,
each committed and then yielded as a Spent before the next chunk is read: the call that crosses
a ceiling is acted on one small commit after it was taken, not after the whole backlog."""
from __future__ import annotations

from collections.abc import Callable, Iterator

from guard.governor.events import AdapterHalt, Event, PriceUnknown, Settled, Spent
from guard.ledger import Ledger, reservations
from guard.meter import Meter
from guard.sink import Mail
from guard.usage import Totals

CHUNK = 256   # events per commit and decision: a few milliseconds of recording


def record(mail: Mail, meter: Meter, ledger: Ledger, run_id: str, show: Callable[[str], None]) -> Iterator[Event]:
    """Lazily: the caller decides on each event before the next chunk is recorded."""
    estimated = mail.accuracy == "estimated"
    for i in range(0, len(mail.events), CHUNK):
        recorded = meter.record_batch(mail.events[i:i + CHUNK])   # the ledger first
        yield from (PriceUnknown(r.event.model, r.price.basis) for r in recorded if not r.price.known)
        yield Spent(Totals().plus(meter.totals), sum(r.new for r in recorded), estimated)
    if not mail.events and estimated:
        yield Spent(Totals().plus(meter.totals), 0, True)
    for rid, shared in mail.settles:   # after the events: a hold is released only once recorded
        if shared is not None:
            reservations.release(ledger, shared)
        yield Settled(rid)
    for key, message in mail.notices:
        if ledger.add_notice(run_id, key, message):
            show(message)
    for key, message in mail.notes:
        ledger.add_notice(run_id, key, message)
    yield from mail.tools   # after the spend they came with
    yield from (AdapterHalt(ceiling, message) for ceiling, message in mail.halts)
