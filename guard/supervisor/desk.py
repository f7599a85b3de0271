"""The run's side of the proxy gate: each proxied request becomes an `Admit` for the decision
core, and its proxy thread waits for the verdict -- at once for forward and refuse, for as long
as the pause lasts for a held request, unless its client hangs up first."""
from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from guard.errors import GuardError
from guard.governor.events import (
    Action,
    Admit,
    ClientGone,
    Event,
    Forward,
    Hold,
    Refuse,
    RequestCost,
    Settled,
    SharedRefused,
)
from guard.proxy.gate import Verdict
from guard.proxy.steps import is_step
from guard.proxy.wire import Estimate

HELD_POLL = 0.2      # how often a held request looks whether its client is still there
# A frozen client cannot hang up; its timers that ran out during the pause fire once it is thawed.
# A held request waits this long after being released, and is dropped if its client left.
THAW_SETTLE = 0.25

@dataclass
class _Slot:
    event: threading.Event = field(default_factory=threading.Event)
    action: Action | None = None
    held: bool = False


class RequestDesk:
    def __init__(self, apply: Callable[[Event], object], price: Callable[[Estimate, bool], RequestCost],
                 reserve_shared: Callable[[float], str | None], settle: Callable[[tuple[str, str | None]], None]) -> None:
        self._apply = apply
        self._price = price
        self._reserve_shared = reserve_shared
        self._settle = settle
        self._slots: dict[str, _Slot] = {}
        self._lock = threading.Lock()
        self._ids = itertools.count(1)   # a request id names a request within this run only

    # called by the run (under its own lock) for every request action the core decided
    def resolve(self, action: Forward | Refuse | Hold) -> None:
        with self._lock:
            slot = self._slots.get(action.request_id)
        if slot is None:
            return
        if isinstance(action, Hold):
            slot.held = True
            return
        slot.action = action
        slot.event.set()

    def admit(self, est: Estimate, tool: str, body: bytes, client_gone: Callable[[], bool]) -> Verdict:
        rid = f"r{next(self._ids)}"
        slot = _Slot()
        with self._lock:
            self._slots[rid] = slot
        try:
            try:
                cost = self._price(est, is_step(tool, est, body))
            except GuardError:
                raise
            except Exception as e:  # noqa: BLE001 -- fail closed: an unpriceable request is not sent
                return Verdict(False, f"cannot check the budget for this request ({type(e).__name__}: {e})")
            self._apply(Admit(rid, cost))
            while True:
                while not slot.event.wait(HELD_POLL):
                    if slot.held and client_gone():
                        self._apply(ClientGone(rid))
                        return Verdict(False, "the client went away while its request was held", dropped=True)
                action = slot.action
                if isinstance(action, Refuse):
                    return Verdict(False, action.message)
                assert isinstance(action, Forward)
                if slot.held:
                    time.sleep(THAW_SETTLE)
                    if client_gone():
                        self._apply(Settled(rid))
                        return Verdict(False, "the client went away while its request was held", dropped=True)
                shared = None
                if action.shared_usd > 0:
                    try:
                        shared = self._reserve_shared(action.shared_usd)
                    except GuardError as e:
                        slot.event.clear()
                        slot.action = None
                        self._apply(SharedRefused(rid, str(e).removeprefix("refused: ")))
                        continue
                return Verdict(True, max_output=action.max_output, thinking_budget=action.thinking_budget,
                               handle=(rid, shared))
        finally:
            with self._lock:
                self._slots.pop(rid, None)

    def settle(self, handle: object) -> None:
        assert isinstance(handle, tuple)
        self._settle(handle)
