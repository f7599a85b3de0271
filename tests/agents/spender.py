"""A fake agent for tests: appends usage lines to GUARD_USAGE_FILE on a schedule.

    spender.py [--lines N] [--rate PER_SEC] [--input N] [--output N] [--model M] [--cost C]
               [--ignore-signals] [--setsid-grandchild] [--ids] [--exit CODE] [--garbage]
               [--escape]   (a setsid double-forked grandchild that re-execs without GUARD_RUN_ID)
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time


def write(f, args, i: int) -> None:
    line = {"input_tokens": args.input, "output_tokens": args.output, "model": args.model}
    if args.cost is not None:
        line["cost_usd"] = args.cost
    if args.ids:
        line["id"] = f"call-{os.getpid()}-{i}"
    f.write(json.dumps(line) + "\n")
    f.flush()


def spend(args, tag: str) -> None:
    path = os.environ["GUARD_USAGE_FILE"]
    interval = 1.0 / args.rate if args.rate > 0 else 0
    with open(path, "a") as f:
        i = 0
        while args.lines < 0 or i < args.lines:
            if args.garbage and i % 3 == 1:
                f.write("{not json\n")
                f.write("\xff\xfe garbage\n")
            write(f, args, i)
            print(f"{tag} call {i}", flush=True)
            i += 1
            if interval:
                time.sleep(interval)


def escape(args: argparse.Namespace) -> None:
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            env = {k: v for k, v in os.environ.items() if k != "GUARD_RUN_ID"}
            os.execve(sys.executable, [sys.executable, __file__, "--lines", "-1", "--rate", str(args.rate or 5),
                                       "--ids", "--tag", f"{args.tag}-escapee"], env)
        os._exit(0)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--lines", type=int, default=3)
    p.add_argument("--rate", type=float, default=0)
    p.add_argument("--input", type=int, default=1000)
    p.add_argument("--output", type=int, default=100)
    p.add_argument("--model", default="claude-sonnet-4-6")
    p.add_argument("--cost", type=float, default=None)
    p.add_argument("--ids", action="store_true")
    p.add_argument("--ignore-signals", action="store_true")
    p.add_argument("--setsid-grandchild", action="store_true")
    p.add_argument("--exit", type=int, default=0)
    p.add_argument("--garbage", action="store_true")
    p.add_argument("--sleep", type=float, default=0)
    p.add_argument("--tag", default="", help="a word tests find this process by")
    p.add_argument("--escape", action="store_true")
    args = p.parse_args()
    if args.escape:
        escape(args)
    if args.ignore_signals:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)
    if args.setsid_grandchild:
        if os.fork() == 0:
            os.setsid()
            if os.fork() == 0:  # double fork: re-parented away from the agent
                spend(args, "grandchild")
                os._exit(0)
            os._exit(0)
    spend(args, "agent")
    if args.sleep:
        time.sleep(args.sleep)
    sys.exit(args.exit)


if __name__ == "__main__":
    main()
