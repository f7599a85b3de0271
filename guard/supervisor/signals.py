"""Signals as a readable fd: one `with` block installs the handlers and the wakeup pipe, and
puts everything back on the way out (asciinema's SignalFD, for a select loop)."""
from __future__ import annotations

import os
import signal
from collections.abc import Iterable
from types import TracebackType
from typing import Any


class SignalPipe:
    def __init__(self, signals: Iterable[int]) -> None:
        self._signals = tuple(signals)
        self._pending: list[int] = []
        self._old: dict[int, Any] = {}
        self.fd = -1
        self._w = -1
        self._old_wakeup = -1

    def __enter__(self) -> SignalPipe:
        self.fd, self._w = os.pipe()
        for fd in (self.fd, self._w):
            os.set_blocking(fd, False)
        self._old_wakeup = signal.set_wakeup_fd(self._w)
        for sig in self._signals:
            self._old[sig] = signal.signal(sig, self._on_signal)
        return self

    def _on_signal(self, signum: int, _frame: Any) -> None:
        self._pending.append(signum)

    def take(self) -> list[int]:
        try:
            while os.read(self.fd, 4096):
                pass
        except BlockingIOError:
            pass
        sigs, self._pending = self._pending, []
        return sigs

    @property
    def pending(self) -> bool:
        return bool(self._pending)

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        for sig, handler in self._old.items():
            signal.signal(sig, handler)
        signal.set_wakeup_fd(self._old_wakeup)
        for fd in (self.fd, self._w):
            os.close(fd)
