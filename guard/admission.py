"""May a run start? Its task's limits after raises, and the refusal (if any) that a ceiling
already spent or a task already halted calls for. Pure apart from the ledger reads."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from guard import budgets
from guard.config import Settings
from guard.governor import Ceiling
from guard.ledger import Ledger
from guard.ledger.records import Halt
from guard.usage import Totals


@dataclass
class TaskLimits:
    """The task's four ceilings after raises, and what earlier runs of the task already used."""

    limits: dict[str, float]
    prior: Totals
    prior_seconds: float


def task_limits(settings: Settings, ledger: Ledger, task: str, run_id: str) -> TaskLimits:
    base = {"usd": settings.max_usd, "tokens": settings.max_tokens, "steps": settings.max_steps,
            "time": settings.max_time}
    if not settings.task:  # an unnamed task is this run alone
        return TaskLimits({k: float(v) for k, v in base.items() if v is not None}, Totals(), 0.0)
    raises = ledger.task_raises(task)
    return TaskLimits({k: float(v) + raises.get(k, 0.0) for k, v in base.items() if v is not None},
                      ledger.task_totals(task, exclude_run=run_id),
                      ledger.task_elapsed(task, exclude_run=run_id))


def refusal(ceilings: Sequence[Ceiling], period: Sequence[budgets.Ceiling], halted: dict[str, str],
            task: str | None, now: float) -> Halt | None:
    """The first reason not to start: a developer/team/line ceiling spent for this period (it
    says when it resets), or a task ceiling reached or halted and not raised since."""
    for p in period:
        if p.exhausted:
            return Halt(p.name, p.hard_limit, round(p.committed, 6), "refuse", f"refused: {p.refusal(now)}")
    for c in ceilings:
        if c.scope != "task" or not (c.reached or c.name in halted):
            continue
        message = f"refused: {c.headline()}"
        if task is not None:
            message += (f"; task {task!r} stays halted until its ceiling is raised "
                        f"(guard resume {halted.get(c.name, 'RUN_ID')} --raise-{c.name} AMOUNT)")
        return Halt(c.name, c.limit, round(c.used, 6), "refuse", message)
    return None
