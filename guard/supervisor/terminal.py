"""The developer's terminal: raw mode in, always restored out; window size."""
from __future__ import annotations

import array
import fcntl
import os
import termios
import tty
from collections.abc import Iterator
from contextlib import contextmanager


def get_size(fd: int) -> tuple[int, int]:
    buf = array.array("h", [0, 0, 0, 0])
    fcntl.ioctl(fd, termios.TIOCGWINSZ, buf, True)
    return buf[0], buf[1]


def set_size(fd: int, rows: int, cols: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, array.array("h", [rows, cols, 0, 0]))


class Terminal:
    """Holds the original mode so every exit path (normal, exception, signal) can restore it."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self._saved: list | None = None  # type: ignore[type-arg]

    def raw(self) -> None:
        if self._saved is None:
            self._saved = termios.tcgetattr(self.fd)
        tty.setraw(self.fd, termios.TCSAFLUSH)

    def restore(self) -> None:
        if self._saved is not None:
            try:
                termios.tcsetattr(self.fd, termios.TCSAFLUSH, self._saved)
            except termios.error:
                pass

    @contextmanager
    def raw_mode(self) -> Iterator[None]:
        self.raw()
        try:
            yield
        finally:
            self.restore()


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            n = os.write(fd, view)
        except BlockingIOError:
            import select

            select.select([], [fd], [], 1.0)
            continue
        view = view[n:]
