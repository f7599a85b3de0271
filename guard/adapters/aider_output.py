"""aider's own usage report, read from its terminal output or its `.aider.chat.history.md`.

After each main-model reply aider prints

    Tokens: 12k sent, 678 received. Cost: $0.04 message, $0.04 session.

or, when the provider reported both cache fields, two lines:

    Tokens: 14k sent, 2.0k cache write, 3.0k cache hit, 678 received.
    Cost: $0.03 message, $0.03 session.

No `Cost:` part when the model has no price. Numbers are abbreviated (`678`, `2.4k`, `12k`), the
terminal copy is wrapped at COLUMNS by rich (and coloured in a PTY), and the chat-history copy is
quoted (`> Tokens: ...`, the second line of the two-line form is not). This module turns either
stream of text into `TokenReport`s, plus the markers of calls aider never counts (commit messages,
retries). Pure: no I/O, fed by whoever owns the bytes.
"""
from __future__ import annotations

import codecs
import re
import time
from collections.abc import Callable
from dataclasses import dataclass

from guard.usage import UsageEvent

_NUM = r"\d+(?:\.\d+)?k?"
_TOKENS_RE = re.compile(
    rf"Tokens: (?P<sent>{_NUM}) sent,"
    rf"(?: (?P<cw>{_NUM}) cache write,)?"
    rf"(?: (?P<ch>{_NUM}) cache hit,)?"
    rf" (?P<recv>{_NUM}) received\."
)
_COST_RE = re.compile(r"Cost: \$(?P<msg>\d+(?:\.\d+)?) message, \$(?P<sess>\d+(?:\.\d+)?) session\.")
# A report is at most 3 wrapped lines at any sane width; give up on a start that never completes.
_MAX_PENDING_LINES = 12
_MAX_PENDING_CHARS = 600

_COMMIT_RE = re.compile(r"^Commit [0-9a-f]{7,40} \S")
_RETRY_RE = re.compile(r"^Retrying in \d+(?:\.\d+)? seconds")

# ANSI: CSI sequences, OSC sequences (terminated by BEL or ST), and two-byte escapes.
_ANSI_RE = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-Z\\-_]")
# An escape sequence cut by a chunk boundary: hold it back until the rest arrives.
_ANSI_TAIL_RE = re.compile(r"\x1b(?:\[[0-?]*[ -/]*|\][^\x07\x1b]*\x1b?)?$")


def parse_count(text: str) -> int:
    """aider's `format_tokens` backwards: '678' -> 678, '2.4k' -> 2400, '12k' -> 12000."""
    if text.endswith("k"):
        return round(float(text[:-1]) * 1000)
    return int(float(text))


def format_tokens(count: int) -> str:
    """aider's own abbreviation (aider/utils.py), to compare a log figure with a printed one."""
    if count < 1000:
        return f"{count}"
    if count < 10000:
        return f"{count / 1000:.1f}k"
    return f"{round(count / 1000)}k"


@dataclass(frozen=True)
class TokenReport:
    sent: int                 # prompt tokens as aider counts them (cache writes included)
    received: int
    cache_write: int = 0
    cache_hit: int = 0
    message_cost: float | None = None   # None: no `Cost:` part (aider has no price for the model)
    session_cost: float | None = None
    sent_text: str = ""       # the figure as printed, for cross-checks against exact counts
    received_text: str = ""

    @property
    def rounded(self) -> bool:
        return self.sent_text.endswith("k") or self.received_text.endswith("k")


@dataclass(frozen=True)
class Marker:
    """A call aider makes but never counts: 'commit' (weak-model commit message), 'retry'."""

    kind: str
    text: str


Item = TokenReport | Marker


def report_event(key: str, rep: TokenReport, model: str | None, *, steps: int = 1,
                 ts: float | None = None) -> UsageEvent:
    """aider's printed report of one reply as an event: its own estimate, its own price."""
    return UsageEvent(
        key=key,
        source="aider_output",
        model=model,
        input_tokens=max(0, rep.sent - rep.cache_write),   # aider adds cache writes to "sent"
        output_tokens=rep.received,
        cache_write_tokens=rep.cache_write,
        cache_read_tokens=rep.cache_hit,
        cost_usd=rep.message_cost if rep.message_cost else None,
        steps=steps,
        estimated=True,
        ts=time.time() if ts is None else ts,
    )


def strip_ansi(text: str) -> str:
    return _ANSI_RE.sub("", text)


class ReportScanner:
    """Incremental: feed text as it comes (any chunking), get reports and markers out in order.

    quoted=True reads the chat-history file, where aider's own lines start with '> ' and
    everything else (the model's reply, the user's message) does not; quoted=False reads the
    terminal, where a report starts a line. A report that may still grow (its `Cost:` part may be
    on the next, not yet written line) is held until the next line decides, or `flush()`.
    """

    def __init__(self, quoted: bool = False, clock: Callable[[], float] = time.monotonic) -> None:
        self.quoted = quoted
        self._clock = clock
        self._line = ""                 # the current, unterminated line
        self._pending: list[str] = []   # lines of a report being assembled
        self._pending_since = 0.0

    # -- input ----------------------------------------------------------------------------

    def feed(self, text: str) -> list[Item]:
        out: list[Item] = []
        # \r alone (spinners, PTY line ends) ends a line as far as we are concerned
        text = text.replace("\r\n", "\n").replace("\r", "\n")
        data = self._line + text
        if "\x08" in data:
            data = _apply_backspaces(data)
        lines = data.split("\n")
        self._line = lines.pop()
        for line in lines:
            out += self._on_line(line)
        return out

    def flush(self, idle: float | None = None) -> list[Item]:
        """Decide a held report now: without more text it has no `Cost:` part (or a cut one).
        idle=None: the stream has ended (the unterminated last line counts as a line).
        idle=N: only if the report has waited N seconds (the terminal went quiet after it)."""
        if idle is not None:
            if not self._pending or self._clock() - self._pending_since < idle:
                return []
            pending, self._pending = self._pending, []
            return self._resolve_final(pending)
        out: list[Item] = []
        if self._line:
            line, self._line = self._line, ""
            out += self._on_line(line)
        if self._pending:
            pending, self._pending = self._pending, []
            out += self._resolve_final(pending)
        return out

    def _resolve_final(self, pending: list[str]) -> list[Item]:
        decided = _decide(pending, final=True)
        assert decided is not None
        report, used = decided
        out: list[Item] = [report] if report is not None else []
        for line in pending[used:]:
            out += self._on_line(line)
        if self._pending:   # a leftover line began another report: it has nothing more either
            rest, self._pending = self._pending, []
            out += self._resolve_final(rest)
        return out

    # -- lines ----------------------------------------------------------------------------

    def _on_line(self, raw: str) -> list[Item]:
        if self._pending:
            self._pending.append(raw)
            return self._try_pending()
        line = raw.strip()
        if self.quoted:
            if not line.startswith(">"):
                return []
            line = line[1:].strip()
        if line.startswith("Tokens:"):
            self._pending = [line]
            self._pending_since = self._clock()
            return self._try_pending()
        if _COMMIT_RE.match(line):
            return [Marker("commit", line)]
        if _RETRY_RE.match(line):
            return [Marker("retry", line)]
        return []

    def _try_pending(self) -> list[Item]:
        decided = _decide(self._pending, final=False)
        if decided is None:
            if len(self._pending) > _MAX_PENDING_LINES or sum(map(len, self._pending)) > _MAX_PENDING_CHARS:
                self._pending = []   # a 'Tokens:' that never became a report: not ours
            return []
        report, used = decided
        rest = self._pending[used:]
        self._pending = []
        out: list[Item] = [report] if report is not None else []
        for line in rest:   # lines after the report are ordinary lines again
            out += self._on_line(line)
        return out


_BACKSPACE_RE = re.compile("[^\n\x08]\x08")


def _apply_backspaces(text: str) -> str:
    """A spinner draws and erases with backspaces: keep what is left on screen."""
    while True:
        new = _BACKSPACE_RE.sub("", text)
        if new == text:
            return new.replace("\x08", "")
        text = new


def _normalize(text: str) -> str:
    return " ".join(text.split())


def _decide(lines: list[str], final: bool) -> tuple[TokenReport | None, int] | None:
    """None: cannot tell yet. Else (the report, or None when it was not one; how many of
    `lines` it used). Lines are joined with a space: rich wraps at spaces."""
    text = _normalize(" ".join(lines))
    m = _TOKENS_RE.match(text)
    if m is None:
        if "received." in text or final:
            return (None, len(lines))
        return None
    rest = text[m.end():].lstrip()
    cost = _COST_RE.match(rest)
    if cost is not None:
        return (_report(m, cost), _lines_until(lines, m.end() + 1 + cost.end()))
    if not final and (rest == "" or ("Cost:".startswith(rest) and len(rest) < 5)
                      or (rest.startswith("Cost:") and "session." not in rest and len(rest) < 80)):
        return None
    # No Cost part (an unpriced model): the report ended with its tokens; the lines after the
    # one holding "received." are not ours.
    return (_report(m, None), _lines_until(lines, m.end()))


def _lines_until(lines: list[str], chars: int) -> int:
    """The number of leading lines whose normalized join covers `chars` characters."""
    for i in range(1, len(lines) + 1):
        if len(_normalize(" ".join(lines[:i]))) >= chars:
            return i
    return len(lines)


def _report(m: re.Match[str], cost: re.Match[str] | None) -> TokenReport:
    return TokenReport(
        sent=parse_count(m["sent"]),
        received=parse_count(m["recv"]),
        cache_write=parse_count(m["cw"]) if m["cw"] else 0,
        cache_hit=parse_count(m["ch"]) if m["ch"] else 0,
        message_cost=float(cost["msg"]) if cost else None,
        session_cost=float(cost["sess"]) if cost else None,
        sent_text=m["sent"],
        received_text=m["recv"],
    )


class TerminalDecoder:
    """Bytes written to the terminal -> plain text: incremental UTF-8, ANSI escapes removed even
    when a chunk boundary cuts one in two."""

    def __init__(self) -> None:
        self._utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._held = ""

    def decode(self, data: bytes, final: bool = False) -> str:
        text = self._held + self._utf8.decode(data, final)
        self._held = ""
        if not final:
            tail = _ANSI_TAIL_RE.search(text)
            if tail is not None and tail.start() >= len(text) - 256:
                self._held = text[tail.start():]
                text = text[:tail.start()]
        return strip_ansi(text)
