"""The decision core: `decide(state, event, now) -> (state, actions)`. Pure: no I/O, no clock.

Every decision guard takes about a run is made here; the host only carries the actions out.

Decision table (one replay test per row: tests/unit/test_decide.py):

| #  | state                 | event                          | actions                                            |
|----|-----------------------|--------------------------------|----------------------------------------------------|
| 1  | running               | Spent, no ceiling near         | -                                                  |
| 2  | running               | Spent/Tick, a soft share passed| Notify(soft), once per ceiling and threshold       |
| 3  | running, pause        | Spent/Tick, a ceiling reached  | RecordHalt(paused), Freeze, AskUser                |
| 4  | running, stop         | Spent/Tick, a ceiling reached  | RecordHalt(halted), WindDown, then the stop steps  |
| 5  | running, kill         | Spent/Tick, a ceiling reached  | RecordHalt(halted), WindDown, Signal(KILL)         |
| 6  | stopping              | Tick past the step's deadline  | Signal(next in the sequence)                       |
| 7  | stopping, >1 s on     | Spent with new calls           | Signal(next) at once: it is not winding down       |
| 8  | running               | Admit, worst case fits         | Forward as asked                                   |
| 9  | running               | Admit, fits above the floor    | Forward with a lowered output allowance            |
| 10 | running, stop/kill    | Admit, below the floor         | Refuse, RecordHalt(halted), WindDown, stop steps   |
| 11 | running, pause        | Admit, below the floor         | Hold, RecordHalt(paused), Freeze, AskUser          |
| 12 | paused                | Admit                          | Hold (joins the same pause)                        |
| 13 | stopping              | Admit                          | Refuse                                             |
| 14 | paused                | Answer raise / continue        | Approve or Grant, Resumed, Thaw, held re-admitted  |
| 15 | paused                | Answer stop / StopAsked        | RecordHalt(halted), Refuse held, stop steps (no wait) |
| 16 | running               | StopAsked                      | RecordHalt(manual), WindDown, stop steps (no wait) |
| 17 | any                   | AdapterFailed                  | halt `adapter_error` the configured way            |
| 18 | any                   | AdapterHalt                    | halt with its ceiling the configured way           |
| 19 | unknown_price: max    | PriceUnknown                   | Notify once per model                              |
| 20 | unknown_price: refuse | PriceUnknown                   | halt `unknown_price` with stop                     |
| 21 | running               | SharedRefused                  | as 10/11 for the period ceiling                    |
| 22 | paused                | ClientGone                     | the held request is dropped, never sent            |
| 23 | running               | Exited, a ceiling reached      | RecordHalt(halted): it stopped at its ceiling      |
| 24 | any                   | Spent with estimated usage     | MarkEstimated once                                 |
| 25 | running               | Budgets (others' spend)        | as 2-5 with the period ceilings                    |
| 26 | running, stuck_loop on| ToolCall, the same `repeat`x   | halt `stuck_loop` the configured way, once         |
|    |                       | in a row in one conversation   |                                                    |
| 27 | running, stuck_loop on| ToolResult, a command failed   | halt `stuck_loop` the configured way, once         |
|    |                       | `failing`x, no success between |                                                    |
| 28 | stuck_loop off, or    | ToolCall / ToolResult          | - (not counted)                                    |
|    | a halt in force       |                                |                                                    |
| 29 | any                   | LedgerUnreachable (`offline`   | halt `ledger_offline` the configured way           |
|    |                       | gave no figure: offline.py)    |                                                    |
"""
from __future__ import annotations

from dataclasses import replace

from guard.governor import stuck
from guard.governor.admission import fit
from guard.governor.ceilings import TASK_CEILINGS, Ceiling
from guard.governor.events import (
    Action,
    AdapterFailed,
    AdapterHalt,
    Admit,
    Answer,
    Approve,
    AskUser,
    Budget,
    Budgets,
    ClientGone,
    Event,
    Exited,
    Forward,
    Freeze,
    Grant,
    Hold,
    LedgerUnreachable,
    MarkEstimated,
    Notify,
    PriceUnknown,
    RecordHalt,
    Refuse,
    RequestCost,
    Resumed,
    Settled,
    SharedRefused,
    Signal,
    Spent,
    StopAsked,
    Thaw,
    Tick,
    ToolCall,
    ToolResult,
    WindDown,
)
from guard.governor.state import Reservation, RunState, StopPlan
from guard.ledger.records import Halt

# a call first seen this long after the stop began is new spending, not a response in flight
ESCALATE_AFTER = 1.0


def decide(state: RunState, event: Event, now: float) -> tuple[RunState, list[Action]]:
    s = state.copy()
    out: list[Action] = []
    handler = _HANDLERS[type(event)]
    handler(s, event, now, out)  # type: ignore[operator]
    return s, out


# -- spend, time, shared budgets ------------------------------------------------------------


def _spent(s: RunState, ev: Spent, now: float, out: list[Action]) -> None:
    s.totals = ev.totals
    if ev.estimated and not s.estimated:
        s.estimated = True
        out.append(MarkEstimated())
    if (s.stop is not None and not s.stop.done and ev.new_calls and s.signals
            and now - s.stop.started > ESCALATE_AFTER):
        _advance(s, now, out)
    _evaluate(s, now, out)


def _tick(s: RunState, ev: Tick, now: float, out: list[Action]) -> None:
    if s.stop is not None and not s.stop.done and now >= s.stop.deadline:
        _advance(s, now, out)
    _evaluate(s, now, out)


def _budgets(s: RunState, ev: Budgets, now: float, out: list[Action]) -> None:
    s.budgets = ev.budgets
    _evaluate(s, now, out)


def _live(s: RunState, now: float, extra: Reservation | None = None) -> list[Ceiling]:
    return [c for c in s.ceilings(now, extra) if c.name not in s.lifted]


def _evaluate(s: RunState, now: float, out: list[Action]) -> None:
    if s.halt is not None or s.halted:
        return
    reached: Ceiling | None = None
    for c in _live(s, now):
        if c.reached:
            reached = reached or c
            continue
        _soft(s, c, out)
    if reached is not None:
        _halt(s, now, out, _halt_for(s, reached, reached.headline()))


def _soft(s: RunState, c: Ceiling, out: list[Action]) -> None:
    crossed = [t for t in c.soft if c.fraction() >= t - 1e-12 and f"{c.name}:{t}" not in s.warned]
    if not crossed:
        return
    for t in crossed:
        s.warned.add(f"{c.name}:{t}")
    t = max(crossed)   # one notice for the highest share passed at once
    b = s.budget(c.name)
    shared = (b.scope, b.period, b.since, t) if b is not None else None
    words = c.soft_message() + (f" for {b.scope}; {b.reset_words}" if b is not None and b.reset_words else "")
    out.append(Notify(f"soft:{c.name}:{t}", words, soft=True, shared=shared))


# -- halts ----------------------------------------------------------------------------------


def _step(s: RunState) -> int:
    return s.prior.steps + s.totals.steps


def _halt_for(s: RunState, c: Ceiling, words: str, action: str | None = None) -> Halt:
    return Halt(c.name, c.limit, round(c.used, 6), action or s.on_limit, f"halted at step {_step(s)}: {words}")


def _halt(s: RunState, now: float, out: list[Action], halt: Halt, refused: bool = False) -> None:
    """Record first, then act. `refused`: the agent was just told no, in words it treats as
    final, so it gets the refusal grace to end by itself (and print its own result)."""
    s.halt = halt
    task_halt = s.named_task and halt.ceiling in TASK_CEILINGS
    if halt.action == "pause":
        s.phase = "paused"
        out += [RecordHalt(halt, "paused", task_halt), Freeze(), AskUser(halt.message, _raise_kind(halt))]
        return
    out.append(RecordHalt(halt, "halted", task_halt))
    _begin_stop(s, now, out, halt.message, kill=halt.action == "kill", wait=True,
                grace=max(s.graceful, s.refusal_grace if refused else 0.0))


def _raise_kind(halt: Halt) -> str | None:
    if halt.ceiling in TASK_CEILINGS:
        return halt.ceiling
    return "usd" if halt.ceiling.endswith("_usd") else None


def _begin_stop(s: RunState, now: float, out: list[Action], message: str, *, kill: bool, wait: bool,
                grace: float | None = None) -> None:
    """The run ends here: nothing more leaves the proxy, the tool is told why, then signals.
    `wait`: give an agent that can wind down by itself its grace first (not when a person
    asked for the stop: they want it now)."""
    s.halted = True
    if s.phase == "paused":
        out.append(Thaw())   # a frozen tree cannot wind down, nor die of SIGINT/SIGTERM
    s.phase = "stopping"
    for rid in list(s.held):
        out.append(Refuse(rid, message))
    s.held.clear()
    out.append(WindDown(message))
    if kill:
        steps: list[tuple[int | None, float]] = [(s.kill_signal, 0.5)]
    else:
        grace = s.graceful if grace is None else grace
        steps = ([(None, grace)] if wait and grace > 0 else []) + [(sig, g) for sig, g in s.signals]
    s.stop = StopPlan(steps, now, now)
    _advance(s, now, out)


def _advance(s: RunState, now: float, out: list[Action]) -> None:
    assert s.stop is not None
    if s.stop.done:
        return
    sig, wait = s.stop.steps.pop(0)
    if sig is not None:
        out.append(Signal(sig))
    s.stop.deadline = now + wait


def _adapter_failed(s: RunState, ev: AdapterFailed, now: float, out: list[Action]) -> None:
    if s.halt is None and not s.halted:
        _halt(s, now, out, Halt("adapter_error", 0, 0, s.on_limit, f"halted at step {_step(s)}: {ev.message}"))


def _adapter_halt(s: RunState, ev: AdapterHalt, now: float, out: list[Action]) -> None:
    if s.halt is None and not s.halted:
        _halt(s, now, out, Halt(ev.ceiling, 0, 0, s.on_limit, f"halted at step {_step(s)}: {ev.message}"))


def _ledger_unreachable(s: RunState, ev: LedgerUnreachable, now: float, out: list[Action]) -> None:
    if s.halt is None and not s.halted:
        _halt(s, now, out, Halt("ledger_offline", 0, 0, s.on_limit, f"halted at step {_step(s)}: {ev.message}"))


def _watching(s: RunState) -> bool:
    """Calls are looked at while the rule is on and nothing else has halted the run (a call
    seen during a pause or a stop is not the agent going round)."""
    return s.stuck is not None and not s.loops.fired and s.halt is None and not s.halted


def _tool_call(s: RunState, ev: ToolCall, now: float, out: list[Action]) -> None:
    if _watching(s):
        assert s.stuck is not None
        s.loops = s.loops.copy()
        _stuck(s, now, out, stuck.on_call(s.stuck, s.loops, ev))


def _tool_result(s: RunState, ev: ToolResult, now: float, out: list[Action]) -> None:
    if _watching(s):
        assert s.stuck is not None
        s.loops = s.loops.copy()
        _stuck(s, now, out, stuck.on_result(s.stuck, s.loops, ev))


def _stuck(s: RunState, now: float, out: list[Action], words: str | None) -> None:
    if words is not None:
        _halt(s, now, out, Halt("stuck_loop", 0, 0, s.on_limit, f"halted at step {_step(s)}: {words}"))


def _price_unknown(s: RunState, ev: PriceUnknown, now: float, out: list[Action]) -> None:
    if s.unknown_price == "refuse":
        if s.halt is None and not s.halted:
            _halt(s, now, out, Halt("unknown_price", 0, 0, "stop",
                                    f"halted at step {_step(s)}: no price known for model {ev.model!r} "
                                    "(unknown_price: refuse; add it to a prices file)"))
        return
    if ev.model in s.priced_unknown:
        return
    s.priced_unknown.add(str(ev.model))
    family = (ev.model or "").split("-")[0] or "known"
    out.append(Notify(f"unknown-price:{ev.model}",
                      f"no price known for model {ev.model!r}: counting it at the most expensive {family} "
                      f"price ({ev.basis}); set its price in a prices file"))


def _exited(s: RunState, ev: Exited, now: float, out: list[Action]) -> None:
    """An agent that stops itself at the ceiling (its own inner fence, or the last records
    arrived as it exited) was still halted by a ceiling: record it as such."""
    if s.halt is not None or s.halted:
        return
    reached = next((c for c in _live(s, now) if c.reached and c.kind != "time"), None)
    if reached is not None:
        s.halt = _halt_for(s, reached, reached.headline(), "stop")
        s.halted = True
        out.append(RecordHalt(s.halt, "halted", s.named_task and reached.name in TASK_CEILINGS))


# -- admission of proxied requests ----------------------------------------------------------


def _admit(s: RunState, ev: Admit, now: float, out: list[Action]) -> None:
    if s.halted:
        out.append(Refuse(ev.request_id, s.halt.message if s.halt else "the run is stopping"))
        return
    if s.phase == "paused":
        s.held[ev.request_id] = ev.cost
        out.append(Hold(ev.request_id))
        return
    _try_forward(s, ev.request_id, ev.cost, now, out)


def _try_forward(s: RunState, rid: str, cost: RequestCost, now: float, out: list[Action]) -> None:
    flight = s.in_flight()
    f = fit(_live(s, now, flight), cost, s.min_output, flight.usd)
    if f.ceiling is not None:
        halt = _halt_for(s, f.ceiling, f.message)
        if s.on_limit == "pause":
            s.held[rid] = cost
            out.append(Hold(rid))
        else:
            out.append(Refuse(rid, halt.message))
        _halt(s, now, out, halt, refused=True)
        return
    n = f.max_output if f.max_output is not None else cost.max_output
    s.reserved[rid] = Reservation(cost.input_usd + n * cost.usd_per_output, cost.input_tokens + n,
                                  1 if cost.step else 0, cost)
    shared = s.reserved[rid].usd if s.budgets else 0.0
    out.append(Forward(rid, f.max_output, f.thinking_budget, shared,
                       cost.max_output if f.max_output is not None else None))


def _settled(s: RunState, ev: Settled, now: float, out: list[Action]) -> None:
    s.reserved.pop(ev.request_id, None)


def _shared_refused(s: RunState, ev: SharedRefused, now: float, out: list[Action]) -> None:
    held = s.reserved.pop(ev.request_id, None)
    if s.halted or held is None or held.cost is None or not s.budgets:
        out.append(Refuse(ev.request_id, s.halt.message if s.halt else ev.message))
        return
    c = next(c for c in s.ceilings(now) if c.name == s.budgets[0].name)
    halt = _halt_for(s, c, ev.message)
    if s.on_limit == "pause":
        s.held[ev.request_id] = held.cost
        out.append(Hold(ev.request_id))
    else:
        out.append(Refuse(ev.request_id, halt.message))
    if s.halt is None:
        _halt(s, now, out, halt)


def _client_gone(s: RunState, ev: ClientGone, now: float, out: list[Action]) -> None:
    s.held.pop(ev.request_id, None)


# -- answers to a pause, stops --------------------------------------------------------------


def _answer(s: RunState, ev: Answer, now: float, out: list[Action]) -> None:
    if s.halt is None or s.phase != "paused":
        # a raise for a running run still counts for the task
        for kind, value in ev.raises.items():
            out.append(Approve(kind, value, ev.by))
            if kind in s.limits:
                s.limits[kind] += value
        if ev.raises:
            out.append(Resumed(dict(s.limits)))
        return
    halt = s.halt
    if ev.choice == "stop":
        _stop_paused(s, now, out)
        return
    raises = dict(ev.raises)
    budget = s.budget(halt.ceiling)
    if budget is not None and "usd" in raises:
        amount = raises.pop("usd")
        out.append(Grant(budget.scope, budget.period, amount, ev.by,
                         "raised while the run was paused"))
        s.budgets = tuple(b if b is not budget else _raised(b, amount) for b in s.budgets)
    for kind, value in raises.items():
        out.append(Approve(kind, value, ev.by))
        if kind in s.limits:
            s.limits[kind] += value
        else:
            s.limits[kind] = value + (halt.used if halt.ceiling == kind else 0)
    if ev.choice == "continue" or (not ev.raises):
        s.lifted.add(halt.ceiling)
        out.append(Approve(halt.ceiling, None, ev.by, "continue past the ceiling for this run"))
    s.halt = None
    s.phase = "running"
    out += [Resumed(dict(s.limits)), Thaw()]
    held, s.held = s.held, {}
    for rid, cost in held.items():
        if s.halt is None:
            _try_forward(s, rid, cost, now, out)
        else:   # the first one paused the run again: the rest wait with it
            s.held[rid] = cost
            out.append(Hold(rid))
    _evaluate(s, now, out)   # a raise too small pauses again at once


def _raised(b: Budget, amount: float) -> Budget:
    return replace(b, limit=b.limit + amount)


def _stop_paused(s: RunState, now: float, out: list[Action]) -> None:
    assert s.halt is not None
    s.halt = Halt(s.halt.ceiling, s.halt.limit, s.halt.used, "stop", s.halt.message)
    out.append(RecordHalt(s.halt, "halted", s.named_task and s.halt.ceiling in TASK_CEILINGS))
    _begin_stop(s, now, out, s.halt.message, kill=False, wait=False)


def _stop_asked(s: RunState, ev: StopAsked, now: float, out: list[Action]) -> None:
    if s.phase == "paused" and s.halt is not None:
        _stop_paused(s, now, out)
    elif not s.halted:
        s.halt = Halt("manual", 0, 0, "stop", f"stopped by {ev.by}")
        out.append(RecordHalt(s.halt, "halted"))
        _begin_stop(s, now, out, s.halt.message, kill=False, wait=False)


_HANDLERS = {
    Tick: _tick, Spent: _spent, Budgets: _budgets, AdapterFailed: _adapter_failed,
    AdapterHalt: _adapter_halt, LedgerUnreachable: _ledger_unreachable, ToolCall: _tool_call, ToolResult: _tool_result, PriceUnknown: _price_unknown,
    Admit: _admit, Settled: _settled, SharedRefused: _shared_refused, ClientGone: _client_gone, Answer: _answer,
    StopAsked: _stop_asked, Exited: _exited,
}
