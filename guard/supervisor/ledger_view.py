"""What a run reads from the ledger to build and refresh the decision core's state: the task's
earlier runs, its halts, and the shared developer/team/line budgets of the current periods."""
from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from guard import budgets
from guard.adapters.base import Adapter
from guard.governor.events import Answer, Budget, Event, StopAsked
from guard.governor.state import RunState
from guard.ledger import Ledger, marker
from guard.ledger.periods import format_reset
from guard.plan import RunPlan
from guard.usage import Totals

# Claude Code, Codex and the SDKs end by themselves on the proxy's refusal (402/400, not retried),
# printing their own result (`claude -p --output-format json`): they get this long before signals.
REFUSAL_GRACE = 2.0
PROMPT_GRACE = 0.5   # long enough for the refusal to show at the prompt, then guard ends the tool


def stop_grace(plan: RunPlan, adapter: Adapter) -> float:
    """How long a halted tool may take to end by itself; known once the adapter has prepared."""
    if not adapter.has_graceful_stop:
        return 0.0
    if adapter.returns_to_prompt and plan.sources.get("grace", "default") == "default":
        return min(plan.grace, PROMPT_GRACE)
    return plan.grace


def initial_state(plan: RunPlan, ledger: Ledger, task: str, run_id: str, started_at: float,
                  interactive: bool, adapter: Adapter) -> RunState:
    limits = plan.limit_values()
    prior, prior_seconds = Totals(), 0.0
    if plan.task:  # a named task spans runs: its raises and its earlier runs count
        raises = ledger.task_raises(task)
        limits = {k: v + raises.get(k, 0.0) for k, v in limits.items()}
        prior = ledger.task_totals(task, exclude_run=run_id)
        prior_seconds = ledger.task_elapsed(task, exclude_run=run_id)
    return RunState(
        limits=limits, started_at=started_at, on_limit=plan.on_limit,  # type: ignore[arg-type]
        soft=(plan.soft_threshold,), interactive=interactive, unknown_price=plan.unknown_price,
        min_output=plan.min_output_tokens, stuck=plan.stuck_loop, named_task=plan.task is not None, prior=prior,
        prior_seconds=prior_seconds,
        signals=tuple((int(sig), grace) for sig, grace in adapter.stop_sequence()),
        refusal_grace=REFUSAL_GRACE if plan.meter == "proxy" else 0.0)


def read(ledger: Ledger, identity: Any, policy: Any, run_id: str, now: float | None = None) -> tuple[Budget, ...]:
    """Every developer/team/line ceiling that charges this run, with what others committed."""
    now = time.time() if now is None else now
    out = []
    for c in budgets.period_ceilings(ledger, identity, policy, now, line=identity.line, exclude_run=run_id):
        out.append(Budget(c.name, c.scope, c.period, c.hard_limit, c.committed, c.since, c.until,
                          tuple(c.soft), "resets " + format_reset(c.until, now, c.timezone)))
    return tuple(out)


def task_halts(ledger: Ledger, task: str | None) -> dict[str, tuple[str, float]]:
    """ceiling -> (the run that halted the task, the limit it was halted at)."""
    if not task:
        return {}
    out = {}
    for ceiling, run_id in ledger.task_halts(task):
        try:
            halt = ledger.get_run(run_id).halt
        except Exception:  # noqa: BLE001 - a halt whose run is gone still holds the task
            halt = None
        out[ceiling] = (run_id, halt.limit if halt is not None else float("inf"))
    return out


def controls(ledger: Ledger, run_id: str) -> list[Event]:
    """`guard stop` / `guard resume` from another shell, as events for the core."""
    out: list[Event] = []
    for control in ledger.take_controls(run_id):
        by = control.payload.get("by", "guard resume")
        if control.action == "stop":
            out.append(StopAsked(by))
        elif control.action == "resume":
            raises = {k: float(v) for k, v in control.payload.get("raise", {}).items()}
            out.append(Answer("raise" if raises else "continue", by, raises))
    return out


def close_run(ledger: Ledger, run_id: str, calls: int, said_estimated: bool, show: Callable[[str], None],
              **fields: Any) -> None:
    """The run's last record: its accuracy from the final merged calls (a late exact report
    replaces an early estimate; a tool that said its figures are estimates stays so), and a word
    if the agent deleted its own rows meanwhile (the figures guard saw are kept)."""
    # offline, the local spool holds only part of the run: no verdict on lost rows from it
    online = getattr(ledger, "reachable", lambda: True)()
    lost = marker.run_intact(ledger, run_id, calls) if online else None
    if lost:
        ledger.add_notice(run_id, "ledger-tampered", lost)
        show(lost)
    estimated = said_estimated or ledger.run_estimated_calls(run_id) > 0
    ledger.update_run(run_id, accuracy="estimated" if estimated else "exact", **fields)
