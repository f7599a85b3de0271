"""The pause prompt: what the developer typed, turned into a choice. Pure, so it is easy to test."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from guard.errors import ConfigError
from guard.units import parse_count, parse_duration, parse_usd

Choice = Literal["raise", "continue", "stop"]


@dataclass(frozen=True)
class Answer:
    choice: Choice
    amount: float | None = None


MENU = "[r]aise the ceiling, [c]ontinue past it for this run, or [s]top? "


def amount_question(kind: str) -> str:
    example = {"usd": "5 for $5", "tokens": "200k", "steps": "20", "time": "15m"}[kind]
    return f"raise by how much (e.g. {example})? "


def parse_amount(kind: str, text: str) -> float:
    """Raises ConfigError with a message fit to show at the prompt."""
    if kind == "usd":
        return parse_usd(text, "amount")
    if kind in ("tokens", "steps"):
        return float(parse_count(text, "amount"))
    return parse_duration(text, "amount")


def parse_choice(key: str) -> Choice | None:
    return {"r": "raise", "c": "continue", "s": "stop"}.get(key.strip().lower()[:1] or "?")  # type: ignore[return-value]


__all__ = ["Answer", "MENU", "amount_question", "parse_amount", "parse_choice", "ConfigError"]
