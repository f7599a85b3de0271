"""The terminal modes an agent's output turned on, and the bytes that turn exactly those off.

An agent killed mid-screen never sends its own reset: the shell is left in the alternate
screen, with a hidden cursor, mouse reporting on. A blind `reset` would also clear what the
user had before. So guard follows every mode-changing sequence as the output passes, split
across reads or not, and at exit undoes the ones still on. Pure: bytes in, bytes out.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

# DEC private modes (CSI ? N h / l) that are off by default; restoring means `l`.
ALT_SCREEN = (1049, 1047, 47)
MOUSE = (9, 1000, 1001, 1002, 1003, 1005, 1006, 1015, 1016)
OFF_BY_DEFAULT = frozenset({*ALT_SCREEN, *MOUSE,
                            1,      # DECCKM: application cursor keys
                            1004,   # focus in/out events
                            2004,   # bracketed paste
                            2026})  # synchronized output
CURSOR_VISIBLE = 25                 # on by default; restoring means `h`

# Undo order: end a synchronized update first so the rest is displayed at once; leave the
# alternate screen before showing the cursor, so the cursor appears where the shell left it.
RESTORE_ORDER = (2026, *MOUSE, 1004, 2004, 1, 1049, 1047, 47)

# Only the sequences that change a tracked mode, so colours and cursor moves (most of a TUI's
# output) are skipped by the regex engine, not dispatched one by one.
_SEQ = re.compile(rb"\x1b(?:\[(?:\?([0-9;]*)([hl])|([<=>])([0-9;:]*)u|>4(?:;([0-9]*))?m)|([=>]))")
_PARTIAL = re.compile(rb"\x1b(?:\[[<=>?]?[0-9;:]*[ -/]*)?")
# a sequence already complete at the end of a read (tracked or not) is not carried over
_COMPLETE = re.compile(rb"\x1b(?:\[[<=>?]?[0-9;:]*[ -/]*[@-~]|[^\[])")
_MAX_CARRY = 64

TITLE_PUSH = b"\x1b[22;2t"   # xterm's title stack: save the window title ...
TITLE_POP = b"\x1b[23;2t"    # ... and put it back


@dataclass
class ModeTracker:
    private: dict[int, bool] = field(default_factory=dict)  # DEC mode -> last seen set (True) / reset
    keypad_application: bool = False                        # DECKPAM (ESC =) vs DECKPNM (ESC >)
    kitty_depth: int = 0                                    # kitty keyboard flags pushed (CSI > f u)
    kitty_flags_set: bool = False                           # flags set in place (CSI = f u)
    modify_other_keys: bool = False                         # CSI > 4 ; n m
    title_pushed: bool = False                              # guard saved the title before setting one
    _carry: bytes = b""

    def feed(self, data: bytes) -> None:
        buf = self._carry + data if self._carry else data
        self._carry = b""
        if b"\x1b" not in buf:
            return
        for m in _SEQ.finditer(buf):
            modes, setting, kitty, kitty_params, other_keys, keypad = m.groups()
            if setting is not None:
                for n in modes.split(b";"):
                    if n.isdigit():
                        self.private[int(n)] = setting == b"h"
            elif kitty is not None:
                self._kitty(kitty, kitty_params)
            elif keypad is not None:
                self.keypad_application = keypad == b"="
            else:
                self.modify_other_keys = bool(other_keys) and other_keys.strip(b"0") != b""
        last = buf.rfind(b"\x1b")
        tail = buf[last:]
        if len(tail) <= _MAX_CARRY and _PARTIAL.fullmatch(tail) and not _COMPLETE.match(tail):
            self._carry = tail

    def _kitty(self, op: bytes, params: bytes) -> None:
        first = params.split(b";")[0].split(b":")[0]
        n = int(first) if first.isdigit() else 0
        if op == b">":
            self.kitty_depth += 1
        elif op == b"<":
            self.kitty_depth = max(0, self.kitty_depth - (n or 1))
        else:
            self.kitty_flags_set = n != 0

    def guard_title(self, text: str) -> bytes:
        """The bytes that set the window title to `text`, saving the user's title first."""
        push = b"" if self.title_pushed else TITLE_PUSH
        self.title_pushed = True
        clean = "".join(ch for ch in text if ch.isprintable())
        return push + b"\x1b]2;" + clean.encode() + b"\x07"

    def restore_sequence(self) -> bytes:
        """Turns off what is still on, and nothing else; empty when the agent left all as found."""
        out = []
        for mode in RESTORE_ORDER:
            if self.private.get(mode):
                out.append(b"\x1b[?%dl" % mode)
        if self.kitty_depth:
            out.append(b"\x1b[<%du" % self.kitty_depth)
        elif self.kitty_flags_set:
            out.append(b"\x1b[=0;1u")
        if self.modify_other_keys:
            out.append(b"\x1b[>4m")
        if self.keypad_application:
            out.append(b"\x1b>")
        if self.private.get(CURSOR_VISIBLE) is False:
            out.append(b"\x1b[?25h")
        if self.title_pushed:
            out.append(TITLE_POP)
        return b"".join(out)

    def reset(self) -> None:
        """After restore_sequence() was written: the terminal is as the agent found it."""
        self.private.clear()
        self.keypad_application = self.modify_other_keys = self.kitty_flags_set = self.title_pushed = False
        self.kitty_depth = 0
