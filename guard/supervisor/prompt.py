"""The pause prompt: keys the developer types turned into an answer. No I/O of its own: it is
given a `write` callable for its echo, so tests drive it with plain strings."""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from guard.errors import GuardError
from guard.units import parse_count, parse_duration, parse_usd

Choice = Literal["raise", "continue", "stop"]

MENU = "[r]aise the ceiling, [c]ontinue past it for this run, or [s]top? "

# The agent's screen is wherever its cursor was: go to the bottom row and scroll one line, so
# the prompt starts on a line of its own below everything drawn (a full-screen agent repaints
# on resume), and clear each line before writing it.
CLEAN_LINE = "\x1b[0m\x1b[999;1H\r\n\x1b[2K"
NEXT_LINE = "\r\n\x1b[2K"
YELLOW, RESET = "\x1b[33m", "\x1b[0m"
ESC, CTRL_C = "\x1b", "\x03"


@dataclass(frozen=True)
class Answer:
    choice: Choice
    amount: float | None = None


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


class PausePrompt:
    """Menu (one key), then an amount (a line) when the developer chose to raise."""

    def __init__(self, write: Callable[[str], None]) -> None:
        self._write = write
        self._kind: str | None = None
        self._amount: str | None = None   # None: at the menu; a string: typing an amount

    def open(self, message: str, raise_kind: str | None, soft: Sequence[str] = ()) -> None:
        """`raise_kind` is usd/tokens/steps/time, or None when the ceiling cannot be raised;
        `soft` are the soft warnings of the run so far, shown above the menu."""
        self._kind = raise_kind
        self._amount = None
        warnings = "".join(f"{YELLOW}guard: warning: {w}{RESET}{NEXT_LINE}" for w in soft)
        self._write(f"{CLEAN_LINE}{warnings}guard: paused: {message}{NEXT_LINE}guard: {MENU}")

    def feed(self, text: str) -> Answer | None:
        if self._amount is None and text.startswith(ESC):
            # Esc, or a whole key sequence (an arrow key): one key, not its letters
            self._show_menu()
            return None
        for ch in text:
            answer = self._menu_key(ch) if self._amount is None else self._amount_key(ch)
            if answer is not None:
                return answer
        return None

    def _show_menu(self) -> None:
        self._write(f"{NEXT_LINE}guard: {MENU}")

    def _menu_key(self, ch: str) -> Answer | None:
        choice = parse_choice(ch) if ch.isprintable() else None
        if choice is None:
            if ch == CTRL_C or ch.isprintable():
                self._show_menu()   # a key that means nothing here: say again what does
            return None
        self._write(ch + NEXT_LINE)
        if choice != "raise":
            return Answer(choice)
        if self._kind is None:
            self._write(f"guard: this ceiling cannot be raised here{NEXT_LINE}guard: {MENU}")
            return None
        self._amount = ""
        self._write("guard: " + amount_question(self._kind))
        return None

    def _amount_key(self, ch: str) -> Answer | None:
        assert self._amount is not None and self._kind is not None
        if ch in "\r\n":
            self._write("\r\n")
            try:
                return Answer("raise", parse_amount(self._kind, self._amount))
            except GuardError as e:
                self._amount = ""
                self._write(f"guard: {e}\r\nguard: " + amount_question(self._kind))
        elif ch in "\x7f\b":
            if self._amount:
                self._amount = self._amount[:-1]
                self._write("\b \b")
        elif ch == "\x03":
            self._write("^C\r\n")
            return Answer("stop")
        elif ch.isprintable():
            self._amount += ch
            self._write(ch)
        return None
