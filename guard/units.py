"""Human units for limits: `2.5`, `$2`, `500k`, `1.5M`, `90s`, `30m`, `1h`."""
from __future__ import annotations

import math
import re

from guard.errors import ConfigError

_COUNT = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:e[+-]?[0-9]+)?)\s*([kKmMgGbB]?)\s*$")
_DURATION = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*(ms|s|m|h|d)?\s*$")
_COUNT_SCALE = {"": 1, "k": 1e3, "m": 1e6, "g": 1e9, "b": 1e9}
_TIME_SCALE = {"ms": 0.001, "s": 1, None: 1, "m": 60, "h": 3600, "d": 86400}


def _positive(value: float, text: str, what: str) -> float:
    if math.isnan(value) or math.isinf(value) or value <= 0:
        raise ConfigError(f"{what}: {text!r} must be a positive number")
    return value


def parse_usd(text: str | float | int, what: str = "usd") -> float:
    if isinstance(text, bool):
        raise ConfigError(f"{what}: {text!r} is not an amount")
    if isinstance(text, (int, float)):
        return _positive(float(text), str(text), what)
    s = str(text).strip().lstrip("$")
    try:
        return _positive(float(s), str(text), what)
    except ValueError:
        raise ConfigError(f"{what}: {text!r} is not an amount (try 2.5 or $10)") from None


def parse_count(text: str | float | int, what: str = "count") -> int:
    if isinstance(text, bool):
        raise ConfigError(f"{what}: {text!r} is not a count")
    if isinstance(text, (int, float)):
        value = float(text)
    else:
        m = _COUNT.match(str(text))
        if not m:
            raise ConfigError(f"{what}: {text!r} is not a count (try 40, 500k or 1.5M)")
        value = float(m.group(1)) * _COUNT_SCALE[m.group(2).lower()]
    _positive(value, str(text), what)
    return int(round(value))


def parse_duration(text: str | float | int, what: str = "time") -> float:
    """Seconds; a bare number is seconds."""
    if isinstance(text, bool):
        raise ConfigError(f"{what}: {text!r} is not a duration")
    if isinstance(text, (int, float)):
        return _positive(float(text), str(text), what)
    m = _DURATION.match(str(text))
    if not m:
        raise ConfigError(f"{what}: {text!r} is not a duration (try 90s, 30m or 1h)")
    return _positive(float(m.group(1)) * _TIME_SCALE[m.group(2)], str(text), what)


def format_duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.0f}s"
    if seconds < 3600:
        return f"{seconds / 60:.0f}m" if seconds % 60 == 0 else f"{seconds / 60:.1f}m"
    return f"{seconds / 3600:.1f}h".replace(".0h", "h")


def format_count(n: float) -> str:
    """`950`, `12.5k`, `207k`, `1.2M`: three significant figures at most."""
    if n >= 1e6:
        return f"{n / 1e6:.1f}M".replace(".0M", "M")
    if n >= 1e5:
        return f"{n / 1e3:.0f}k"
    if n >= 1e3:
        return f"{n / 1e3:.1f}k".replace(".0k", "k")
    return f"{int(n)}"


def format_usd(usd: float) -> str:
    """`$0.08`, `$2.82`, `$1,204.50`; a non-zero amount under a cent keeps enough digits to show."""
    if usd == 0 or abs(usd) >= 0.01:
        return f"${usd:,.2f}"
    return f"${usd:.4f}"


def format_tokens(n: float) -> str:
    """`950`, `207k`, `1.2M`: what a person reads in a table; JSON and CSV keep the raw count."""
    return format_count(n)


def plural(n: float, word: str, many: str | None = None) -> str:
    """`1 step`, `2 steps`, `0 runs`."""
    shown = f"{int(n)}" if float(n).is_integer() else f"{n}"
    return f"{shown} {word if n == 1 else (many or word + 's')}"


def format_amount(kind: str, value: float) -> str:
    """An amount of a ceiling's kind: `$2.00`, `200k tokens`, `20 steps`, `15m`."""
    if kind in ("usd", "developer_usd", "team_usd", "line_usd"):
        return format_usd(value)
    if kind == "tokens":
        return f"{format_tokens(value)} tokens"
    if kind == "steps":
        return plural(value, "step")
    return format_duration(value)


CEILING_NAMES = {"usd": "USD", "tokens": "token", "steps": "step", "time": "time"}


def describe_raise(ceiling: str, amount: float) -> str:
    """`the USD ceiling by $5.00`."""
    return f"the {CEILING_NAMES.get(ceiling, ceiling)} ceiling by {format_amount(ceiling, amount)}"


def describe_approval(ceiling: str, amount: float | None) -> str:
    """`raised the USD ceiling by $5.00`, `continued past the step ceiling for the run`."""
    if amount is None:
        return f"continued past the {CEILING_NAMES.get(ceiling, ceiling)} ceiling for the run"
    return f"raised {describe_raise(ceiling, amount)}"
