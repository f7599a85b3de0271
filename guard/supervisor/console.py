"""The developer's terminal during a run: keys to the agent (or to the pause prompt), Ctrl-Z,
repaints, and guard's own text kept in order with the agent's output."""
from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass

from guard.supervisor.pump import OutputPump
from guard.supervisor.terminal import Terminal, get_size, set_size, write_all
from guard.supervisor.tree import ProcessTree

SUSPEND_KEY = b"\x1a"      # Ctrl-Z


@dataclass
class Console:
    stdin_fd: int
    stdout_fd: int
    terminal: Terminal | None = None
    master_fd: int | None = None       # the agent's PTY, when it has one
    pump: OutputPump | None = None
    tree: ProcessTree | None = None

    def take_terminal(self) -> tuple[int, int] | None:
        """The terminal is ours (raw once the agent runs); its size is the agent's PTY size."""
        self.terminal = Terminal(self.stdin_fd)
        try:
            return get_size(self.stdin_fd)
        except OSError:
            return None

    def start_pump(self, tap: Callable[[bytes], None] | None, on_eof: Callable[[], None]) -> None:
        if self.master_fd is not None:
            self.pump = OutputPump(self.master_fd, self.stdout_fd, tap, on_eof=on_eof)
            self.pump.start()

    def finish_pump(self) -> None:
        if self.pump is not None:
            self.pump.finish()

    def read_keys(self, paused: bool, prompt: Callable[[str], None]) -> bool:
        """Copy what was typed; False once stdin is closed."""
        try:
            data = os.read(self.stdin_fd, 1 << 14)
        except OSError:
            return False
        if not data:
            return False
        if paused:
            prompt(data.decode(errors="replace"))
        elif self.master_fd is not None:
            before, ctrl_z, after = data.partition(SUSPEND_KEY)
            if before:
                write_all(self.master_fd, before)
            if ctrl_z:
                self.suspend()
                if after:
                    write_all(self.master_fd, after)
        return True

    def suspend(self) -> None:
        """Ctrl-Z: the agent leads a session of its own, where the kernel discards a terminal
        stop, so guard does what a shell would: freeze the tree, hand the terminal back and stop
        itself (SIGTSTP: without a job-control shell above guard the kernel discards it)."""
        assert self.tree is not None and self.terminal is not None
        self.tree.stop()
        self.terminal.restore()
        os.kill(os.getpid(), signal.SIGTSTP)
        self.terminal.raw()
        self.tree.resume()
        self.repaint()

    def resize(self) -> None:
        if self.master_fd is not None:
            try:
                set_size(self.master_fd, *get_size(self.stdin_fd))
            except OSError:
                pass

    def repaint(self) -> None:
        """Full-screen agents redraw on a size change: nudge the PTY size and put it back."""
        if self.master_fd is None:
            return
        try:
            rows, cols = get_size(self.stdin_fd)
            set_size(self.master_fd, rows, max(1, cols - 1))
            time.sleep(0.02)
            set_size(self.master_fd, rows, cols)
        except OSError:
            pass

    def say(self, text: str) -> None:
        if self.pump is None or not self.pump.say(text):  # in order with the agent's output
            write_all(self.stdout_fd, text.encode())
