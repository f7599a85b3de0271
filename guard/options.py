"""guard's own options, as reusable click decorators (they come before the tool name)."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

LIMIT_OPTIONS: list[tuple[str, str, str]] = [
    ("--max-usd", "max_usd", "Task ceiling in USD (2.5, $10)."),
    ("--max-tokens", "max_tokens", "Task ceiling in tokens (500k, 1.5M)."),
    ("--max-steps", "max_steps", "Task ceiling in agent steps (tool calls / model calls)."),
    ("--max-time", "max_time", "Task ceiling in wall-clock time (90s, 30m, 1h)."),
    ("--task", "task", "Name of the task: its ceilings span all of its runs."),
    ("--on-limit", "on_limit", "At a hard ceiling: pause (default on a terminal), stop (default otherwise) or kill."),
    ("--soft-threshold", "soft_threshold", "Share of a ceiling that warns (default 0.75)."),
    ("--grace", "grace", "How long a halted agent may take to end by itself before signals (default 5s)."),
    ("--meter", "meter", "auto (default: proxy for claude and aider), native (the tool's own logs) or proxy (a metering proxy on 127.0.0.1)."),
    ("--unknown-price", "unknown_price", "Unknown model price: max (count at the provider's priciest) or refuse."),
    ("--prices", "prices", "A LiteLLM-style JSON/YAML price file overriding known prices."),
    ("--ledger", "ledger", "Ledger: sqlite:PATH (default under GUARD_HOME) or postgresql://..."),
    ("--developer", "developer", "Who is spending (default: git user.email, else login name)."),
    ("--team", "team", "The developer's team."),
    ("--line", "line", "Charge the run to this budget line instead of the developer."),
]

# options that take a value, for splitting guard's argv from the tool's
VALUE_OPTIONS = {flag for flag, _, _ in LIMIT_OPTIONS}


def limit_options(f: Callable[..., Any]) -> Callable[..., Any]:
    for flag, dest, help_text in reversed(LIMIT_OPTIONS):
        f = click.option(flag, dest, default=None, metavar="VALUE", help=help_text)(f)
    return f


def flag_values(kwargs: dict[str, Any]) -> dict[str, Any]:
    return {dest: kwargs.pop(dest, None) for _, dest, _ in LIMIT_OPTIONS}
