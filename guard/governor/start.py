"""May a run start? Pure: the state's ceilings, and the task's earlier halts."""
from __future__ import annotations

from collections.abc import Mapping

from guard.governor.ceilings import EPSILON
from guard.governor.state import RunState
from guard.ledger.records import Halt


def refusal(state: RunState, now: float, task: str | None,
            halted: Mapping[str, tuple[str, float]]) -> Halt | None:
    """The first reason not to start: a period ceiling spent (it says when it resets), a task
    ceiling reached, or a task halted at a ceiling that has not been raised since.
    `halted`: ceiling -> (the run that halted, the limit it was halted at)."""
    for b in state.budgets:
        if b.others >= b.limit - EPSILON:
            return Halt(b.name, b.limit, round(b.others, 6), "refuse",
                        f"refused: {b.name}: {b.scope.replace(':', ' ')} has used ${b.others:.2f} of "
                        f"${b.limit:.2f} this {b.period}; {b.reset_words}".rstrip("; "))
    for c in state.ceilings(now):
        if c.scope != "task":
            continue
        mark = halted.get(c.name)
        still_halted = mark is not None and c.limit <= mark[1] + EPSILON
        if not (c.reached or still_halted):
            continue
        message = f"refused: {c.headline()}" if c.reached else (
            f"refused: the {c.describe_limit()} task ceiling halted this task ({c.describe_used()})")
        if task is not None:
            message += (f"; task {task!r} stays halted until its ceiling is raised "
                        f"(guard resume {mark[0] if mark else 'RUN_ID'} --raise-{c.name} AMOUNT)")
        return Halt(c.name, c.limit, round(c.used, 6), "refuse", message)
    return None
