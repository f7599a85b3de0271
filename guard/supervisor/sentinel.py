"""A tiny watcher process: if guard itself dies (even by SIGKILL), it kills the agent's tree.

guard starts it in a session of its own with a pipe on stdin and writes the agent's process
group and every descendant pid it learns of. EOF on the pipe means guard is gone.
"""
from __future__ import annotations

import os
import signal
import sys


def main() -> None:
    pgid = int(sys.argv[1])
    pids: set[int] = set()
    buf = b""
    while True:
        try:
            chunk = os.read(0, 4096)
        except InterruptedError:
            continue
        except OSError:
            chunk = b""
        if not chunk:
            break
        buf += chunk
        *lines, buf = buf.split(b"\n")
        for line in lines:
            if line == b"done":
                return  # guard finished normally
            if line.strip().isdigit():
                pids.add(int(line))
    for target in (lambda: os.killpg(pgid, signal.SIGKILL), *[
            (lambda p=p: os.kill(p, signal.SIGKILL)) for p in pids]):
        try:
            target()
        except OSError:
            pass


if __name__ == "__main__":
    main()
