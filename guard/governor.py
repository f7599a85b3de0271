"""Limits in, decision out. Pure: no I/O and no clock of its own (time arrives as `used`)."""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

from guard.units import format_count, format_duration

Action = Literal["ok", "warn", "pause", "stop", "kill"]
OnLimit = Literal["pause", "stop", "kill"]

TASK_CEILINGS = ("usd", "tokens", "steps", "time")
_SCOPE_WORDS = {"task": "task", "developer": "developer", "team": "team", "line": "budget line"}


@dataclass(frozen=True)
class Ceiling:
    name: str                 # usd|tokens|steps|time|developer_usd|team_usd|line_usd
    limit: float
    used: float
    scope: str = "task"       # task|developer|team|line
    resets_at: float | None = None  # period ceilings: when the period ends

    @property
    def kind(self) -> str:
        """usd, tokens, steps or time, whatever the scope."""
        return self.name.rsplit("_", 1)[-1] if self.scope != "task" else self.name

    @property
    def reached(self) -> bool:
        # sums of float dollars drift: $0.1 eight times is 0.7999999999999999, which is $0.80
        return round(self.used - self.limit, 9) >= 0

    def fraction(self) -> float:
        return self.used / self.limit if self.limit > 0 else float("inf")

    def describe_limit(self) -> str:
        return format_amount(self.kind, self.limit)

    def describe_used(self) -> str:
        verb = {"usd": "spent", "tokens": "used", "steps": "taken", "time": "elapsed"}[self.kind]
        return f"{format_amount(self.kind, self.used)} {verb}"

    def headline(self) -> str:
        """'$2.00 task ceiling reached ($2.03 spent)'"""
        return (f"{self.describe_limit()} {_SCOPE_WORDS.get(self.scope, self.scope)} ceiling reached "
                f"({self.describe_used()})")


def format_amount(kind: str, value: float) -> str:
    if kind == "usd":
        return f"${value:,.2f}" if value >= 0.01 or value == 0 else f"${value:.4f}"
    if kind == "tokens":
        return f"{format_count(value)} tokens"
    if kind == "steps":
        return f"{int(value)} steps"
    return format_duration(value)


@dataclass(frozen=True)
class Decision:
    action: Action
    ceiling: Ceiling | None = None            # the hard ceiling that was reached
    warnings: tuple[Ceiling, ...] = ()        # soft thresholds newly crossed

    def halt_message(self, step: int) -> str:
        assert self.ceiling is not None
        return f"halted at step {step}: {self.ceiling.headline()}"


@dataclass
class Policy:
    on_limit: OnLimit = "stop"
    soft_fraction: float = 0.75
    warned: set[str] = field(default_factory=set)     # ceilings whose soft notice was given
    lifted: set[str] = field(default_factory=set)     # ceilings the user chose to continue past


def decide(ceilings: Iterable[Ceiling], policy: Policy) -> Decision:
    """The first reached hard ceiling decides; soft thresholds are reported once each."""
    hard: Ceiling | None = None
    warnings: list[Ceiling] = []
    for c in ceilings:
        if c.name in policy.lifted:
            continue
        if c.reached:
            if hard is None:
                hard = c
        elif c.fraction() >= policy.soft_fraction and c.name not in policy.warned:
            warnings.append(c)
    if hard is not None:
        return Decision(policy.on_limit, hard, tuple(warnings))
    return Decision("warn" if warnings else "ok", None, tuple(warnings))


def soft_message(c: Ceiling) -> str:
    pct = int(c.fraction() * 100)
    return (f"{pct}% of the {c.describe_limit()} {_SCOPE_WORDS.get(c.scope, c.scope)} ceiling "
            f"({c.describe_used()})")
