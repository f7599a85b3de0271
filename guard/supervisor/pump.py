"""The agent's terminal output, copied to the developer's terminal.

Two threads with a pipe between them: one reads the PTY, the other writes the terminal, so on
two cores reading and writing overlap (both syscalls release the GIL). On a busy machine the
copy is bound by how long each wake-up waits for a core, not by CPU (bench/pty_bench.py: a
single-loop copy and `script` fare no better there).
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


class OutputPump:
    def __init__(self, master_fd: int, out_fd: int, tap: Callable[[bytes], None] | None = None,
                 on_eof: Callable[[], None] | None = None) -> None:
        """`tap` sees every byte (from the reader thread); `on_eof` runs once the output ended."""
        self.master_fd = master_fd
        self.out_fd = out_fd
        self._tap = tap
        self.modes = ModeTracker()   # what the output turned on: restore_sequence() at exit
        self._on_eof = on_eof
        self._pipe_r, self._pipe_w = os.pipe()
        self._finishing = threading.Event()
        self._w_lock = threading.Lock()   # the pipe's write end is closed under it, never reused
        self._w_open = True
        self.done = threading.Event()
        self._reader = threading.Thread(target=self._read_loop, name="guard-pty-read", daemon=True)
        self._writer = threading.Thread(target=self._write_loop, name="guard-pty-write", daemon=True)

    def start(self) -> None:
        self._reader.start()
        self._writer.start()

    def say(self, text: str) -> bool:
        """guard's own words (the pause prompt) in order with the agent's output; False once
        the output has ended (write to the terminal directly then)."""
        with self._w_lock:
            if not self._w_open:
                return False
            write_all(self._pipe_w, text.encode())
            return True

    def finish(self, timeout: float = 2.0) -> None:
        """The agent has exited: copy what is left, but do not wait for a descendant that keeps
        the PTY open without writing."""
        self._finishing.set()
        self._reader.join(timeout)
        self._writer.join(timeout)

    def _output(self, chunk: bytes) -> None:
        """Every chunk of the agent's output passes here, in order, once: what watches the
        output (adapters, trackers) is called from this one place."""
        self.modes.feed(chunk)
        if self._tap is not None:
            self._tap(chunk)
        write_all(self._pipe_w, chunk)

    def _read_loop(self) -> None:
        try:
            while True:
                try:
                    data = os.read(self.master_fd, CHUNK)  # non-blocking: select only when dry
                except BlockingIOError:
                    ready, _, _ = select.select([self.master_fd], [], [], 0.05)
                    if not ready and self._finishing.is_set():
                        return
                    continue
                except OSError as e:
                    if e.errno == errno.EIO:  # every slave fd closed: the agent is gone
                        return
                    raise
                if not data:
                    return
                self._output(data)
        finally:
            with self._w_lock:
                self._w_open = False
                os.close(self._pipe_w)

    def _write_loop(self) -> None:
        try:
            while True:
                data = os.read(self._pipe_r, CHUNK)
                if not data:
                    return
                try:
                    write_all(self.out_fd, data)
                except OSError:
                    pass  # the terminal went away: keep draining so the reader never blocks
        finally:
            os.close(self._pipe_r)
            self.done.set()
            if self._on_eof is not None:
                self._on_eof()
