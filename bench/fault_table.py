"""The README's fault table, measured: for each way an agent writes (or wrecks) its usage file,
the records it wrote against the records guard recorded, and how the run ended.

    python bench/fault_table.py [--calls 50]
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from _common import REPO, bench_env

REWRITER = REPO / "tests" / "agents" / "rewriter.py"

HOLE = r"""
import json, os, sys
path = os.environ["GUARD_USAGE_FILE"]
with open(path, "a") as f:
    f.write(json.dumps({"id": "a", "input_tokens": 10, "output_tokens": 1}) + "\n")
os.truncate(path, os.path.getsize(path) + (20 << 30))
with open(path, "a") as f:
    f.write("\n" + json.dumps({"id": "b", "input_tokens": 10, "output_tokens": 1}) + "\n")
import time; time.sleep(60)
"""
DEEP = r"""
import json, os
with open(os.environ["GUARD_USAGE_FILE"], "a") as f:
    f.write("[" * 1000 + "]" * 1000 + "\n")
    f.write(json.dumps({"id": "ok", "input_tokens": 5, "output_tokens": 1}) + "\n")
"""
NUMBERS = r"""
import json, os
m = "claude-sonnet-4-6"
with open(os.environ["GUARD_USAGE_FILE"], "a") as f:
    for rec in ({"id": "s", "input_tokens": "900000"}, {"id": "n", "input_tokens": -5},
                {"id": "h", "input_tokens": 1e20}, {"id": "z", "input_tokens": "NaN"}):
        f.write(json.dumps({**rec, "output_tokens": 1, "model": m}) + "\n")
"""


def run(home: Path, flags: list[str], cmd: list[str]) -> dict:
    home.mkdir(parents=True, exist_ok=True)
    env = bench_env(home)
    out = subprocess.run([sys.executable, "-m", "guard", *flags, "run", "--", *cmd], env=env, cwd=home,
                         capture_output=True, text=True, timeout=300)
    runs = json.loads(subprocess.run([sys.executable, "-m", "guard", "runs", "--json"], env=env,
                                     capture_output=True, text=True, check=True).stdout)
    r = runs[0]
    r["guard_exit"] = out.returncode
    return r


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=50)
    n = ap.parse_args().calls
    rows = []
    with tempfile.TemporaryDirectory() as d:
        root = Path(d)
        for mode in ("append", "rewrite", "same-size", "rewrite-all", "truncate", "recreate", "rename",
                     "append-noid", "rewrite-noid", "rewrite-all-noid"):
            r = run(root / mode, ["--max-usd", "100"], [sys.executable, str(REWRITER), mode, str(n)])
            rows.append((f"usage file: {mode}", n, r["usage"]["steps"], f"{r['status']}, {r['accuracy']}"))
        for name, src, flags, written in (("sparse 20 GiB file, --max-time 4s", HOLE, ["--max-time", "4s"], 2),
                                          ("line nested 1000 deep", DEEP, ["--max-usd", "5"], 1),
                                          ("string, negative, 1e20, NaN counts", NUMBERS,
                                           ["--max-usd", "100000"], 4)):
            agent = root / f"{name.split()[0]}.py"
            agent.write_text(src)
            r = run(root / name.split()[0], flags, [sys.executable, str(agent)])
            halt = r.get("halt") or {}
            rows.append((name, written, r["usage"]["steps"],
                         f"{r['status']}{' (' + halt['ceiling'] + ')' if halt else ''}, {r['accuracy']}, "
                         f"{r['usage']['input_tokens']:,} input tokens, {r['skipped_records']} skipped"))
    print(f"{'fault':40} {'written':>8} {'recorded':>9}  run")
    for fault, written, recorded, how in rows:
        print(f"{fault:40} {written:>8} {recorded:>9}  {how}")


if __name__ == "__main__":
    main()
