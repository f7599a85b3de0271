"""One Ceiling for every scope: a task's four, and developer/team/line spend per period.

Pure: a ceiling is a limit, what is used of it, and the words that describe it."""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

from guard.units import format_count, format_duration

Kind = Literal["usd", "tokens", "steps", "time"]
TASK_CEILINGS: tuple[Kind, ...] = ("usd", "tokens", "steps", "time")
SCOPE_WORDS = {"task": "task", "developer": "developer", "team": "team", "line": "budget line"}
_USED_VERB = {"usd": "spent", "tokens": "used", "steps": "taken", "time": "elapsed"}

# sums of float dollars drift: $0.1 eight times is 0.7999999999999999, which is $0.80
EPSILON = 1e-9


@dataclass(frozen=True)
class Ceiling:
    name: str                          # usd|tokens|steps|time|developer_usd|team_usd|line_usd
    limit: float
    used: float
    scope: str = "task"                # task|developer|team|line
    resets_at: float | None = None     # period ceilings: when the period ends
    soft: tuple[float, ...] = (0.75,)  # shares of the limit that warn, once each
    period: str | None = None          # day|week|month for period ceilings

    @property
    def kind(self) -> str:
        """usd, tokens, steps or time, whatever the scope."""
        return self.name.rsplit("_", 1)[-1] if self.scope != "task" else self.name

    @property
    def reached(self) -> bool:
        return round(self.used - self.limit, 9) >= 0

    @property
    def left(self) -> float:
        return max(0.0, self.limit - self.used)

    def fraction(self) -> float:
        return self.used / self.limit if self.limit > 0 else float("inf")

    def plus(self, used: float) -> Ceiling:
        return replace(self, used=self.used + used)

    def scope_words(self) -> str:
        return SCOPE_WORDS.get(self.scope, self.scope)

    def describe_limit(self) -> str:
        return format_amount(self.kind, self.limit)

    def describe_used(self) -> str:
        return f"{format_amount(self.kind, self.used)} {_USED_VERB[self.kind]}"

    def headline(self) -> str:
        """'$2.00 task ceiling reached ($2.03 spent)'"""
        return f"{self.describe_limit()} {self.scope_words()} ceiling reached ({self.describe_used()})"

    def soft_message(self) -> str:
        """'75% of the $2.00 task ceiling ($1.50 spent)': the one wording of a soft notice."""
        pct = int(self.fraction() * 100 + EPSILON * 100)
        period = f" this {self.period}" if self.period else ""
        return f"{pct}% of the {self.describe_limit()} {self.scope_words()} ceiling ({self.describe_used()}{period})"


def format_amount(kind: str, value: float) -> str:
    if kind == "usd":
        return f"${value:,.2f}" if value >= 0.01 or value == 0 else f"${value:.4f}"
    if kind == "tokens":
        return f"{format_count(value)} tokens"
    if kind == "steps":
        n = int(value)
        return f"{n} step" if n == 1 else f"{n} steps"
    return format_duration(value)
