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
    if n >= 1e6:
        return f"{n / 1e6:.1f}M".replace(".0M", "M")
    if n >= 1e3:
        return f"{n / 1e3:.1f}k".replace(".0k", "k")
    return f"{int(n)}"
