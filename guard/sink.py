"""The mailbox between adapter threads and the run loop: events, notices, halts, accuracy.
Adapters may call it from any thread; the loop drains it when the wake-up pipe is readable."""
from __future__ import annotations

import os
import threading

from guard.usage import UsageEvent


class Sink:
    """Thread-safe mailbox between adapter threads and the loop."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.events: list[UsageEvent] = []
        self.notices: list[tuple[str, str]] = []
        self.halts: list[tuple[str, str]] = []
        self.accuracy: str | None = None
        self.read_fd, self.write_fd = os.pipe()
        os.set_blocking(self.read_fd, False)
        os.set_blocking(self.write_fd, False)

    def wake(self) -> None:
        try:
            os.write(self.write_fd, b"!")
        except BlockingIOError:
            pass  # the loop is already due to wake

    def emit(self, event: UsageEvent) -> None:
        with self._lock:
            self.events.append(event)
        self.wake()

    def notice(self, key: str, message: str) -> None:
        with self._lock:
            self.notices.append((key, message))
        self.wake()

    def halt(self, ceiling: str, message: str) -> None:
        with self._lock:
            self.halts.append((ceiling, message))
        self.wake()

    def set_accuracy(self, accuracy: str) -> None:
        with self._lock:
            self.accuracy = accuracy
        self.wake()

    def take(self) -> tuple[list[UsageEvent], list[tuple[str, str]], list[tuple[str, str]], str | None]:
        try:
            while os.read(self.read_fd, 4096):
                pass
        except BlockingIOError:
            pass
        with self._lock:
            out = (self.events, self.notices, self.halts, self.accuracy)
            self.events, self.notices, self.halts, self.accuracy = [], [], [], None
        return out

    def close(self) -> None:
        for fd in (self.read_fd, self.write_fd):
            try:
                os.close(fd)
            except OSError:
                pass
