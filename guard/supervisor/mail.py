"""What the adapters and the proxy reported since the last look, written down (the meter, the
ledger) and turned into events for the decision core, in the order they must be decided."""
from __future__ import annotations

from collections.abc import Callable

from guard.governor.events import AdapterHalt, Event, PriceUnknown, Settled, Spent
from guard.ledger import Ledger, reservations
from guard.meter import Meter
from guard.sink import Mail
from guard.usage import Totals


def record(mail: Mail, meter: Meter, ledger: Ledger, run_id: str, show: Callable[[str], None]) -> list[Event]:
    out: list[Event] = []
    if mail.events:
        recorded = meter.record_batch(mail.events)   # the ledger first
        out += [PriceUnknown(r.event.model, r.price.basis) for r in recorded if not r.price.known]
        out.append(Spent(Totals().plus(meter.totals), sum(r.new for r in recorded),
                         mail.accuracy == "estimated"))
    elif mail.accuracy == "estimated":
        out.append(Spent(Totals().plus(meter.totals), 0, True))
    for rid, shared in mail.settles:   # after the events: a hold is released only once recorded
        if shared is not None:
            reservations.release(ledger, shared)
        out.append(Settled(rid))
    for key, message in mail.notices:
        if ledger.add_notice(run_id, key, message):
            show(message)
    for key, message in mail.notes:
        ledger.add_notice(run_id, key, message)
    out += mail.tools   # after the spend they came with
    out += [AdapterHalt(ceiling, message) for ceiling, message in mail.halts]
    return out
