"""An interactive fake agent for PTY tests.

Prints `tty=<bool> size=<rows>x<cols>`, then reads commands line by line:
  spend N    append N usage lines (0.1 USD each) to GUARD_USAGE_FILE
  size       print the window size
  quit       exit 0
It reports SIGINT (`got SIGINT`) and SIGWINCH (`winch <rows>x<cols>`).
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import sys


def size() -> str:
    s = os.get_terminal_size(0) if os.isatty(0) else shutil.get_terminal_size()
    return f"{s.lines}x{s.columns}"


def main() -> None:
    signal.signal(signal.SIGINT, lambda *_: print("got SIGINT", flush=True))
    signal.signal(signal.SIGWINCH, lambda *_: print(f"winch {size()}", flush=True))
    print(f"tty={os.isatty(0)} size={size()}", flush=True)
    n = 0
    for line in sys.stdin:
        cmd = line.split()
        if not cmd:
            continue
        if cmd[0] == "spend":
            with open(os.environ["GUARD_USAGE_FILE"], "a") as f:
                for _ in range(int(cmd[1])):
                    n += 1
                    f.write(json.dumps({"id": f"c{n}", "input_tokens": 10, "output_tokens": 1,
                                        "cost_usd": 0.1}) + "\n")
            print(f"spent {n}", flush=True)
        elif cmd[0] == "size":
            print(f"size {size()}", flush=True)
        elif cmd[0] == "quit":
            print("bye", flush=True)
            return
        else:
            print(f"echo {' '.join(cmd)}", flush=True)


if __name__ == "__main__":
    main()
