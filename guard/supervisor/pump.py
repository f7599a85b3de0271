"""The agent's terminal output, copied to the developer's terminal.

One thread, one loop: read the PTY (non-blocking, select only when it is dry), write the chunk to
the terminal, read again. On a busy machine the copy is bound by how long each wake-up waits for
a core, so the fewer threads that must wake per chunk the better: a reader and a writer thread
with a pipe between them woke two threads and made four syscalls per chunk; with both cores busy
it copied 50 MB at 40% of a direct `cat`, this loop at 78% (bench/pty_bench.py, one run).

guard's own words (the pause prompt) go out under the same lock as the agent's chunks, so they
land between two chunks, never inside one.
"""
from __future__ import annotations

import errno
import os
import select
import threading
from collections.abc import Callable

from guard.supervisor.modes import ModeTracker
from guard.supervisor.terminal import write_all

CHUNK = 1 << 16
DRY_WAIT = 0.05     # how often a dry PTY looks whether the run asked the copy to finish


class OutputPump:
    def __init__(self, master_fd: int, out_fd: int, tap: Callable[[bytes], None] | None = None,
                 on_eof: Callable[[], None] | None = None) -> None:
        """`tap` sees every byte (from the pump's thread); `on_eof` runs once the output ended."""
        self.master_fd = master_fd
        self.out_fd = out_fd
        self._tap = tap
        self.modes = ModeTracker()   # what the output turned on: restore_sequence() at exit
        self._on_eof = on_eof
        self._finishing = threading.Event()
        self._w_lock = threading.Lock()   # one writer at a time on the terminal
        self._w_open = True
        self._out_ok = True               # False once the terminal went away: output is dropped
        self.done = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="guard-pty", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def say(self, text: str) -> bool:
        """guard's own words (the pause prompt) in order with the agent's output; False once
        the output has ended (write to the terminal directly then)."""
        with self._w_lock:
            if not self._w_open:
                return False
            self._write(text.encode())
            return True

    def finish(self, timeout: float = 2.0) -> None:
        """The agent has exited: copy what is left, but do not wait for a descendant that keeps
        the PTY open without writing."""
        self._finishing.set()
        self._thread.join(timeout)

    def _write(self, data: bytes) -> None:
        if not self._out_ok:
            return
        try:
            write_all(self.out_fd, data)
        except OSError:
            self._out_ok = False   # the terminal went away: keep reading so the agent never blocks

    def _loop(self) -> None:
        fd, modes, tap, lock = self.master_fd, self.modes, self._tap, self._w_lock
        try:
            while True:
                try:
                    data = os.read(fd, CHUNK)  # non-blocking: select only when dry
                except BlockingIOError:
                    ready, _, _ = select.select([fd], [], [], DRY_WAIT)
                    if not ready and self._finishing.is_set():
                        return
                    continue
                except OSError as e:
                    if e.errno == errno.EIO:  # every slave fd closed: the agent is gone
                        return
                    raise
                if not data:
                    return
                # Every chunk of the agent's output passes here, in order, once: what watches
                # the output (adapters, trackers) is called from this one place.
                modes.feed(data)
                if tap is not None:
                    tap(data)
                with lock:
                    self._write(data)
        finally:
            with lock:
                self._w_open = False
            self.done.set()
            if self._on_eof is not None:
                self._on_eof()
