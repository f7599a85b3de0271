"""A fake agent that writes GUARD_USAGE_FILE the ways real programs do.

    rewriter.py MODE N   (MODE: append | rewrite | rewrite-all | truncate | recreate | rename |
                          same-size; N calls, each record with an id unless MODE ends in -noid;
                          each written once guard has counted the one before)
Prints the number of records it wrote on its last line.
"""
from __future__ import annotations

import json
import os
import sys
import time


def record(i: int, with_id: bool) -> str:
    rec = {"input_tokens": 1000 + i % 7, "output_tokens": 10, "model": "claude-sonnet-4-6"}
    if with_id:
        rec["id"] = f"call-{i:04d}"  # same length for every i: same-size rewrites
    return json.dumps(rec) + "\n"


def wait_counted(usage_path: str, n: int) -> None:
    """Lockstep with guard: the next version of the file is written once guard has counted this
    one (a writer that replaces the file faster than anyone reads it loses versions to anyone)."""
    state = os.path.join(os.path.dirname(usage_path), "state.json")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with open(state) as f:
                if json.load(f)["totals"]["steps"] >= n:
                    return
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.005)
    sys.exit(f"guard never counted call {n}")


def main() -> None:
    mode, n = sys.argv[1], int(sys.argv[2])
    with_id = not mode.endswith("-noid")
    mode = mode.removesuffix("-noid")
    path = os.environ["GUARD_USAGE_FILE"]
    history: list[str] = []
    for i in range(n):
        line = record(i, with_id)
        history.append(line)
        if mode == "append":
            with open(path, "a") as f:
                f.write(line)
        elif mode in ("rewrite", "same-size"):
            with open(path, "w") as f:
                f.write(line)
        elif mode == "rewrite-all":
            with open(path, "w") as f:
                f.write("".join(history))
        elif mode == "truncate":
            os.truncate(path, 0)
            with open(path, "a") as f:
                f.write(line)
        elif mode == "recreate":
            os.unlink(path)
            with open(path, "w") as f:
                f.write(line)
        elif mode == "rename":
            tmp = path + ".tmp"
            with open(tmp, "w") as f:
                f.write(line)
            os.replace(tmp, path)
        wait_counted(path, i + 1)
    print(f"wrote {n}")


if __name__ == "__main__":
    main()
