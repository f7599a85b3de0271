"""Starting the agent: in a PTY of its own (interactive) or with guard's stdio (pipes, CI),
always as leader of a new session so its whole group can be signalled at once."""
from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import termios
from dataclasses import dataclass
from pathlib import Path

from guard.errors import AgentNotExecutable, AgentNotFound
from guard.supervisor.linux import die_with_parent


@dataclass
class Child:
    pid: int
    master_fd: int | None      # the PTY's master side; None with inherited stdio
    popen: subprocess.Popen    # type: ignore[type-arg]


def _child_setup_pty() -> None:
    # runs in the child after setsid(): make the PTY slave (already on fd 0) our controlling tty
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)
    die_with_parent()


def _child_setup_plain() -> None:
    die_with_parent()


def spawn(argv: list[str], env: dict[str, str], cwd: str, use_pty: bool,
          size: tuple[int, int] | None = None) -> Child:
    master: int | None = None
    try:
        if use_pty:
            master, slave = os.openpty()
            if size:
                from guard.supervisor.terminal import set_size

                set_size(slave, *size)
            try:
                popen = subprocess.Popen(
                    argv, env=env, cwd=cwd, stdin=slave, stdout=slave, stderr=slave,
                    start_new_session=True, preexec_fn=_child_setup_pty, close_fds=True,
                )
            finally:
                os.close(slave)
            os.set_blocking(master, False)
        else:
            popen = subprocess.Popen(
                argv, env=env, cwd=cwd, start_new_session=True, preexec_fn=_child_setup_plain,
                close_fds=True,
            )
    except FileNotFoundError:
        if master is not None:
            os.close(master)
        raise AgentNotFound(f"{argv[0]}: not found") from None
    except PermissionError:
        if master is not None:
            os.close(master)
        raise AgentNotExecutable(f"{argv[0]}: permission denied") from None
    except OSError as e:
        if master is not None:
            os.close(master)
        raise AgentNotExecutable(f"{argv[0]}: cannot execute: {e.strerror}") from None
    return Child(popen.pid, master, popen)


# -S: no site-packages scan, so the sentinel is up in a fraction of guard's own start; it
# needs only guard's package, found where this one was loaded from
PACKAGE_ROOT = Path(__file__).resolve().parent.parent.parent
SENTINEL_MAIN = ("import sys; sys.path.insert(0, sys.argv.pop(1)); "
                 "from guard.supervisor.sentinel import main; main()")


def start_sentinel(pgid: int, run_id: str) -> subprocess.Popen:  # type: ignore[type-arg]
    """See guard.supervisor.sentinel: kills the agent's tree if guard dies."""
    return subprocess.Popen(
        [sys.executable, "-S", "-c", SENTINEL_MAIN, str(PACKAGE_ROOT), str(pgid), run_id, str(os.getpid())],
        stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True, close_fds=True,
    )
