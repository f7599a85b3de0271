"""What the mapping-valued config sections may hold: every key each tool section and `budgets:`
knows, checked when the file is read, so a typo (`failng:`, `developers:`) or a bad value is a
config error naming the file and key, never a ceiling silently missing.

Each checker takes (value, where) and returns the mapping unchanged: the adapters and budgets
read them as before."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from guard.errors import ConfigError
from guard.ledger.periods import PERIODS
from guard.units import parse_usd

Check = Callable[[Any, str], None]


def _bool(v: Any, where: str) -> None:
    if not isinstance(v, bool):
        raise ConfigError(f"{where}: {v!r} is not true or false")


def _text(v: Any, where: str) -> None:
    if not isinstance(v, str) or not v:
        raise ConfigError(f"{where}: expected a non-empty string, got {v!r}")


def _whole(low: int) -> Check:
    def check(v: Any, where: str) -> None:
        if isinstance(v, bool) or not isinstance(v, int) or v < low:
            raise ConfigError(f"{where}: {v!r} is not a whole number of at least {low}")
    return check


def _fraction(v: Any, where: str) -> None:
    try:
        f = float(str(v).rstrip("%")) / (100 if str(v).endswith("%") else 1)
    except ValueError:
        raise ConfigError(f"{where}: {v!r} is not a fraction (try 0.75 or 75%)") from None
    if not 0 < f <= 1:
        raise ConfigError(f"{where}: {v!r} must be between 0 and 1 (or 1% and 100%)")


def _keys(known: dict[str, Check], *, what: str = "key") -> Check:
    def check(v: Any, where: str) -> None:
        if not isinstance(v, dict):
            raise ConfigError(f"{where}: expected a mapping, got {type(v).__name__}")
        for key, value in v.items():
            if key not in known:
                raise ConfigError(f"{where}.{key}: unknown {what} (known: {', '.join(sorted(known))})")
            known[key](value, f"{where}.{key}")
    return check


def _stuck_loop(v: Any, where: str) -> None:
    if v is False or v is None:
        return
    _keys({"repeat": _whole(2), "failing": _whole(1), "enabled": _bool})(v, where)


def _usd(v: Any, where: str) -> None:
    parse_usd(v, where)


_period: Check = _keys({p: _usd for p in PERIODS}, what="period")


def _line(v: Any, where: str) -> None:
    match = _keys({"cwd": _text, "task": _text, "tool": _text})
    _keys({**{p: _usd for p in PERIODS}, "match": match})(v, where)


def _lines(v: Any, where: str) -> None:
    if not isinstance(v, dict):
        raise ConfigError(f"{where}: expected a mapping of line name to limits")
    for name, spec in v.items():
        _line(spec, f"{where}.{name}")


def _line_rules(v: Any, where: str) -> None:
    if not isinstance(v, list):
        raise ConfigError(f"{where}: expected a list of {{line: NAME, cwd|task|tool: PATTERN}}")
    rule = _keys({"line": _text, "cwd": _text, "task": _text, "tool": _text})
    for i, r in enumerate(v):
        rule(r, f"{where}[{i}]")
        if not r.get("line"):
            raise ConfigError(f"{where}[{i}]: expected {{line: NAME, cwd|task|tool: PATTERN}}")


def _soft(v: Any, where: str) -> None:
    for i, f in enumerate(v if isinstance(v, list) else [v]):
        _fraction(f, f"{where}[{i}]" if isinstance(v, list) else where)


SECTIONS: dict[str, Check] = {
    "claude": _keys({"stuck_loop": _stuck_loop, "task_budget": _bool, "graceful_print": _bool,
                     "otel": _bool, "otel_interval_ms": _whole(1)}),
    "aider": _keys({"executable": _text, "path": _text}),
    "codex": _keys({}),
    "run": _keys({}),
    "budgets": _keys({"developer": _period, "team": _period, "lines": _lines, "line_rules": _line_rules,
                      "soft": _soft, "hard": _fraction}),
    "lines": _lines,
    "notify": _keys({"webhook": _text, "command": _text}),
}


def section_parser(name: str) -> Callable[[Any, str], dict[str, Any]]:
    check = SECTIONS[name]

    def parse(v: Any, where: str) -> dict[str, Any]:
        check(v, where)
        return v  # type: ignore[no-any-return]
    return parse
