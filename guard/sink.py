"""The mailbox between adapter threads and the run loop: events, notices, halts, accuracy.
Adapters may call it from any thread; the loop drains it when the wake-up pipe is readable."""
from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from typing import Any

from guard.usage import UsageEvent


@dataclass
class Mail:
    events: list[UsageEvent]
    notices: list[tuple[str, str]]
    halts: list[tuple[str, str]]
    accuracy: str | None
    settles: list[tuple[str, str | None]]
    notes: list[tuple[str, str]]
    tools: list[Any]


MAX_PENDING = 4096     # events an adapter thread may be ahead of the loop before it waits
PENDING_WAIT = 1.0     # ... for at most this long: a loop that is not taking (it is closing) is not waited for


class Sink:
    """Thread-safe mailbox between adapter threads and the loop. A follower reading a big file
    (or 10k lines/s) waits while MAX_PENDING events are untaken: memory stays bounded, and the
    loop decides on lines soon after they are read rather than after a backlog."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._room = threading.Condition(self._lock)
        self._unbounded = False   # a wait timed out: the loop is not taking, do not wait again until it does
        self.events: list[UsageEvent] = []
        self.notices: list[tuple[str, str]] = []
        self.halts: list[tuple[str, str]] = []
        self.accuracy: str | None = None
        self.notes: list[tuple[str, str]] = []
        self.settles: list[tuple[str, str | None]] = []   # proxied requests done: (request id, shared reservation)
        self.tools: list[Any] = []       # ToolCall / ToolResult, for the core's stuck-loop rule
        self.read_fd, self.write_fd = os.pipe()
        os.set_blocking(self.read_fd, False)
        os.set_blocking(self.write_fd, False)
        self._woken = False   # a byte is in the pipe that take() has not drained yet

    def wake(self) -> None:
        # One byte in the pipe is enough: the loop takes everything there is at once. The flag is
        # set after the caller's append; take() clears it after draining the pipe and before
        # taking the lists, so no item is left behind without a byte in the pipe for it.
        if self._woken:
            return
        self._woken = True
        try:
            os.write(self.write_fd, b"!")
        except BlockingIOError:
            pass  # the loop is already due to wake

    def emit_many(self, events: list[UsageEvent]) -> None:
        """Several events in one batch for the loop (the proxy's, handed over every few ms)."""
        with self._lock:
            self.events.extend(events)
        self.wake()

    def emit(self, event: UsageEvent) -> None:
        with self._lock:
            if (len(self.events) >= MAX_PENDING and not self._unbounded
                    and threading.current_thread() is not threading.main_thread()):
                # never the loop's own thread: it is the one that takes
                if not self._room.wait_for(lambda: len(self.events) < MAX_PENDING, timeout=PENDING_WAIT):
                    self._unbounded = True
            self.events.append(event)
        self.wake()

    def notice(self, key: str, message: str) -> None:
        with self._lock:
            self.notices.append((key, message))
        self.wake()

    def note(self, key: str, message: str) -> None:
        """Recorded in the ledger, not shown (e.g. each request sent with a lowered allowance)."""
        with self._lock:
            self.notes.append((key, message))
        self.wake()

    def halt(self, ceiling: str, message: str) -> None:
        with self._lock:
            self.halts.append((ceiling, message))
        self.wake()

    def tool(self, event: Any) -> None:
        with self._lock:
            self.tools.append(event)
        self.wake()

    def set_accuracy(self, accuracy: str) -> None:
        with self._lock:
            self.accuracy = accuracy
        self.wake()

    def settle(self, handle: tuple[str, str | None]) -> None:
        """Called after the request's event was emitted: taken in the same batch or a later one."""
        with self._lock:
            self.settles.append(handle)
        self.wake()

    def take(self) -> Mail:
        try:
            while os.read(self.read_fd, 4096):
                pass
        except BlockingIOError:
            pass
        self._woken = False   # after the pipe is drained, before the lists are taken
        with self._lock:
            out = Mail(self.events, self.notices, self.halts, self.accuracy, self.settles, self.notes, self.tools)
            self.events, self.notices, self.halts, self.accuracy, self.settles, self.notes = [], [], [], None, [], []
            self.tools = []
            self._unbounded = False
            self._room.notify_all()
        return out

    def close(self) -> None:
        for fd in (self.read_fd, self.write_fd):
            try:
                os.close(fd)
            except OSError:
                pass
